"""The Generate engine: one scheduler per causal LM, decoding every running request together.

    servicer ──submit──▶ Scheduler (its own thread)            ◀── cancel / deadline flags
                           │ admit waiting requests (batched prefill, KV rows merged in)
                           │ one decode forward for all rows → logits [rows, vocab]
                           │ ONE core call: next tokens, beam parents, logprobs
                           │ gather the KV rows (drop finished, follow beam parents)
                           ▼
                 per-request TokenStream (detokenize, stop strings) ──▶ asyncio queue ──▶ client
"""
