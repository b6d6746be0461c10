"""The Generate engine: one scheduler per causal LM, decoding every running request together.

    servicer ──submit──▶ Admission (queue; waits for free KV rows)  ◀── cancel / deadline flags
                           │
                         Scheduler (its own thread)
                           │ prefill admitted prompts packed in one forward → their rows in the KV pool
                           │ one decode forward for all rows (tokenwire attention reads the pool in place)
                           │ ONE core call: next tokens, beam parents, logprobs
                           │ BatchState keeps the rows that go on (beam children copy what changed)
                           ▼
                 Emitter: per-sequence deltas (detokenized, stop strings) ──Outbox──▶ event loop ──▶ client

docs/engine.md describes the batch state, the KV pool and the fallback path.
"""
