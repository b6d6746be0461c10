"""What the scheduler sends back: per-sequence deltas, a request's end, failures — and the
per-model metrics that go with them. Runs on the scheduler thread; events reach the event loop
through the Outbox, one wake-up per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..decoding import StepResult
from ..observability import metrics
from .batch_state import BeamGroup, SampleRow
from .request import Failed, Finished, FinishReason, GenerationRequest, Outbox, SequenceDelta, TokenInfo
from .sequence import SequenceOutput, beam_sequence

STEP_PHASES = ("prefill", "prefill_chunk", "forward", "select")


class ModelMetrics:
    """This model's children of the process-wide metrics (label lookups done once)."""

    def __init__(self, name: str) -> None:
        self.queue = metrics.QUEUE_SECONDS.labels(name)
        self.ttft = metrics.TTFT_SECONDS.labels(name)
        self.itl = metrics.ITL_SECONDS.labels(name)
        self.batch_rows = metrics.BATCH_ROWS.labels(name)
        self.step = {phase: metrics.STEP_SECONDS.labels(name, phase) for phase in STEP_PHASES}
        self.prompt_tokens = metrics.PROMPT_TOKENS.labels(name)
        self.generated_tokens = metrics.GENERATED_TOKENS.labels(name)
        self.active = metrics.ACTIVE_REQUESTS.labels(name)
        self.waiting = metrics.WAITING_REQUESTS.labels(name)
        self.finish_reasons = {r: metrics.FINISH_REASONS.labels(name, r.value) for r in FinishReason}
        self.kv_used = metrics.KV_CACHE_TOKENS.labels(name, "used")
        self.kv_capacity = metrics.KV_CACHE_TOKENS.labels(name, "capacity")


@dataclass
class _Progress:
    """How many of a request's sequences are still open, and tokens generated so far."""

    open_sequences: int
    completion_tokens: int = 0


class Emitter:
    def __init__(self, tokenizer: Any, model_metrics: ModelMetrics) -> None:
        self._tokenizer = tokenizer
        self.metrics = model_metrics
        self.outbox = Outbox()
        self._progress: dict[int, _Progress] = {}

    @property
    def active_requests(self) -> int:
        return len(self._progress)

    def started(self, request: GenerationRequest) -> None:
        self._progress[request.id] = _Progress(request.params.n)

    def sample(self, m: SampleRow, token: int, result: StepResult, k: int, now: float) -> bool:
        """Row k of `result` chose `token` for `m`: send it; True when the sequence goes on."""
        info = self._token_info(result, k, token) if m.request.params.logprobs else None
        delta = m.output.push(token, info)
        if m.request.first_token_at is None:
            m.request.first_token_at = now
            self.metrics.ttft.observe(now - m.request.arrival)
        if m.last_token_at is not None:
            self.metrics.itl.observe(now - m.last_token_at)
        m.last_token_at = now
        self._progress[m.request.id].completion_tokens += 1
        if m.output.finished:
            self.end_sequence(m.request, delta)
            return False
        self.outbox.put(m.request, delta)
        return True

    def close(self, m: SampleRow | BeamGroup, reason: FinishReason) -> None:
        """A member leaves before it finished by itself (cancelled, out of time, beams done)."""
        request = m.request
        if isinstance(m, SampleRow):
            if not m.output.finished:
                self.end_sequence(request, m.output.stop(reason))
            return
        for i, hyp in enumerate(m.search.hypotheses()):
            delta = beam_sequence(i, hyp.token_ids, hyp.score, hyp.finished, request.params, self._tokenizer)
            if not hyp.finished:
                delta.finish_reason = reason
            self._progress[request.id].completion_tokens += len(hyp.token_ids)
            self.end_sequence(request, delta)

    def unstarted(self, request: GenerationRequest) -> None:
        """End a request that never joined the batch (cancelled or out of time first)."""
        self.started(request)
        reason = FinishReason.CANCELLED if request.cancelled else FinishReason.TIME_LIMIT
        for i in range(request.params.n):
            self.end_sequence(request, SequenceOutput(i, request.params, self._tokenizer).stop(reason))

    def end_sequence(self, request: GenerationRequest, delta: SequenceDelta) -> None:
        self.outbox.put(request, delta)
        if delta.finish_reason is not None:
            self.metrics.finish_reasons[delta.finish_reason].inc()
        progress = self._progress[request.id]
        progress.open_sequences -= 1
        if progress.open_sequences == 0:
            del self._progress[request.id]
            self.outbox.put(request, Finished(len(request.params.prompt_ids), progress.completion_tokens))

    def fail(self, request: GenerationRequest, error: BaseException) -> None:
        self.outbox.put(request, Failed(error))
        self._progress.pop(request.id, None)

    def flush(self) -> None:
        self.outbox.flush()

    def _token_info(self, result: StepResult, k: int, token: int) -> TokenInfo:
        decode = self._tokenizer.decode
        top = [
            (int(t), decode([int(t)]), float(lp))
            for t, lp in zip(result.top_token_ids[k], result.top_logprobs[k], strict=True)
            if t >= 0
        ]
        return TokenInfo(token, decode([token]), float(result.logprobs[k]), int(result.ranks[k]), top)
