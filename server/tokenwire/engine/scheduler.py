"""Per-model scheduler: iteration-level (continuous) batching on its own thread.

One iteration:
  1. reap    — requests cancelled by their client or past their deadline leave the batch
               (their KV rows are dropped before the next forward);
  2. admit   — waiting requests join while rows are free: ONE batched prefill for all of them,
               their first token selected, their KV rows expanded (n samples, beams) and merged
               into the running batch. A prompt longer than `prefill_chunk_tokens` is
               prefilled instead in chunks of that many tokens, one chunk per iteration, and
               joins the batch after its last chunk: running streams keep getting a token
               every iteration instead of stalling for a whole long prefill. One such prompt
               at a time; shorter prompts may pass a long one waiting for its turn (queue
               order otherwise). A prefill that fails fails its own requests only;
  3. decode  — ONE forward for every running row → logits [rows, vocab] on the host → the core:
               one BatchSampler call for the sampled/greedy rows and one BeamStepper call for
               every beam search → new tokens, beam parents → one KV gather that drops finished
               rows and follows beam parents at once.
Rows are kept sampler-rows-first so the sampler reads a zero-copy slice of the logits.

The asyncio event loop never runs any of this: requests arrive through `submit` (thread-safe)
and leave as events posted back to their loop.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..decoding import BatchSampler, BeamSearch, BeamStepper, StepResult
from ..errors import ResourceExhausted, Unavailable
from ..models.loader import LoadedModel
from ..observability import metrics
from ..tasks import Task
from .defaults import GenerationDefaults, generation_defaults
from .kv_cache import BatchKV, empty_batch
from .params import Method
from .request import Failed, Finished, FinishReason, GenerationRequest, Outbox, TokenInfo
from .runner import CausalLMRunner
from .sequence import SequenceOutput, beam_sequence

log = logging.getLogger(__name__)


@dataclass
class _Progress:
    """How many of a request's sequences are still open, and tokens generated so far."""

    open_sequences: int
    completion_tokens: int = 0


@dataclass
class SampleRow:
    request: GenerationRequest
    key: tuple[int, int]
    output: SequenceOutput
    last_token_at: float | None = None


@dataclass
class BeamGroup:
    request: GenerationRequest
    search: BeamSearch

    @property
    def rows(self) -> int:
        return self.search.rows_expected


Member = SampleRow | BeamGroup


@dataclass
class _ChunkedPrefill:
    """A long prompt being prefilled a chunk per iteration; its cache grows until it joins."""

    request: GenerationRequest
    done: int = 0
    """Prompt tokens already in `cache`."""
    cache: Any = None


class _ModelMetrics:
    """This model's children of the process-wide metrics (label lookups done once)."""

    def __init__(self, name: str) -> None:
        self.queue = metrics.QUEUE_SECONDS.labels(name)
        self.ttft = metrics.TTFT_SECONDS.labels(name)
        self.itl = metrics.ITL_SECONDS.labels(name)
        self.batch_rows = metrics.BATCH_ROWS.labels(name)
        self.step = {phase: metrics.STEP_SECONDS.labels(name, phase)
                     for phase in ("prefill", "prefill_chunk", "forward", "select")}
        self.prompt_tokens = metrics.PROMPT_TOKENS.labels(name)
        self.generated_tokens = metrics.GENERATED_TOKENS.labels(name)
        self.active = metrics.ACTIVE_REQUESTS.labels(name)
        self.waiting = metrics.WAITING_REQUESTS.labels(name)
        self.finish_reasons = {r: metrics.FINISH_REASONS.labels(name, r.value) for r in FinishReason}


class Scheduler:
    def __init__(self, model: LoadedModel, task: Task = Task.GENERATE, *, core_threads: int = 1) -> None:
        """`task`: which of the model's modules decodes (GENERATE, or MULTIMODAL_CHAT for a
        LLaVA-style model whose language model sits behind a vision tower)."""
        self.model = model
        self.spec = model.spec
        module = model.modules[task]
        self.defaults: GenerationDefaults = generation_defaults(module, model.spec.name)
        pad = model.special_token_ids.get("pad") or model.special_token_ids.get("eos") or [0]
        self.runner = CausalLMRunner(module, pad[0])
        self.sampler = BatchSampler(model.vocab_size, num_threads=core_threads)
        self.beams = BeamStepper(num_threads=core_threads)
        self.max_rows = model.spec.max_batch_size
        self._waiting: deque[GenerationRequest] = deque()
        self._outbox = Outbox()  # written and flushed by the scheduler thread only
        self._chunk = model.spec.prefill_chunk_tokens
        self._chunked: _ChunkedPrefill | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._members: list[Member] = []
        self._progress: dict[int, _Progress] = {}
        self._kv: BatchKV = empty_batch(self.runner.device)
        self._next_tokens = torch.empty(0, dtype=torch.long)
        self.steps = 0
        self._metrics = _ModelMetrics(model.spec.name)
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{model.spec.name}", daemon=True)
        self._thread.start()

    # --- called from the event loop -------------------------------------------------------

    def submit(self, request: GenerationRequest) -> None:
        with self._cond:
            if self._closed:
                raise Unavailable(f"model {self.spec.name!r} is shutting down")
            if len(self._waiting) >= self.spec.max_queue:
                raise ResourceExhausted(f"model {self.spec.name!r} has {len(self._waiting)} requests "
                                        f"waiting (max_queue); retry later")
            self._waiting.append(request)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    @property
    def running_rows(self) -> int:
        """Rows decoding, plus those a long prompt being prefilled in chunks will take."""
        pending = self._chunked.request.params.rows if self._chunked is not None else 0
        return sum(self._rows_of(m) for m in self._members) + pending

    # --- the scheduler thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._members and self._chunked is None:
                    self._cond.wait()
                if self._closed:
                    break
            admitted: list[GenerationRequest] = []
            self._metrics.waiting.set(len(self._waiting))
            self._metrics.active.set(len(self._progress) + (self._chunked is not None))
            try:
                self._reap(time.monotonic())
                admitted = self._admit(time.monotonic())
                if admitted:
                    self._prefill(admitted)
                    self._outbox.flush()  # first tokens go out before the next forward pass
                if self._chunked is not None:
                    self._prefill_next_chunk()
                if self._members:
                    self._decode()
            except Exception as exc:  # a failing batch fails its requests, never the server
                try:
                    self._fail_everything(exc, admitted)
                finally:
                    self._outbox.flush()  # the failures reach their clients whatever happens next
            self._outbox.flush()
            self._metrics.waiting.set(len(self._waiting))
            self._metrics.active.set(len(self._progress) + (self._chunked is not None))
        try:
            self._fail_everything(Unavailable(f"model {self.spec.name!r} is shutting down"), list(self._waiting))
        finally:
            self._outbox.flush()

    @staticmethod
    def _rows_of(member: Member) -> int:
        return member.rows if isinstance(member, BeamGroup) else 1

    def _reap(self, now: float) -> None:
        """Drop rows of requests whose client left or whose time is up."""
        chunked = self._chunked
        if chunked is not None and (chunked.request.cancelled or chunked.request.expired(now)):
            self._chunked = None
            self._end_unstarted(chunked.request)
        gone = {m.request.id for m in self._members if m.request.cancelled or m.request.expired(now)}
        if not gone:
            return
        keep: list[int] = []
        members: list[Member] = []
        row = 0
        for m in self._members:
            rows = self._rows_of(m)
            if m.request.id in gone:
                self._close_member(m, FinishReason.CANCELLED if m.request.cancelled else FinishReason.TIME_LIMIT)
            else:
                keep.extend(range(row, row + rows))
                members.append(m)
            row += rows
        index = torch.tensor(keep, dtype=torch.long)
        self._kv.gather(index)
        self._next_tokens = self._next_tokens.index_select(0, index)
        self._members = members

    def _close_member(self, m: Member, reason: FinishReason) -> None:
        request = m.request
        if isinstance(m, SampleRow):
            self.sampler.remove(m.key)
            if not m.output.finished:
                self._emit_sequence_end(request, m.output.stop(reason))
        else:
            for i, hyp in enumerate(m.search.hypotheses()):
                delta = beam_sequence(i, hyp.token_ids, hyp.score, hyp.finished, request.params, self.model.tokenizer)
                if not hyp.finished:
                    delta.finish_reason = reason
                self._progress[request.id].completion_tokens += len(hyp.token_ids)
                self._emit_sequence_end(request, delta)

    def _emit_sequence_end(self, request: GenerationRequest, delta: Any) -> None:
        self._outbox.put(request, delta)
        if delta.finish_reason is not None:
            self._metrics.finish_reasons[delta.finish_reason].inc()
        progress = self._progress[request.id]
        progress.open_sequences -= 1
        if progress.open_sequences == 0:
            del self._progress[request.id]
            self._outbox.put(request, Finished(len(request.params.prompt_ids), progress.completion_tokens))

    def _admit(self, now: float) -> list[GenerationRequest]:
        free = self.max_rows - self.running_rows
        admitted: list[GenerationRequest] = []
        with self._cond:
            i = 0  # queue order, except that shorter prompts may pass a long one waiting for the chunk slot
            while i < len(self._waiting):
                request = self._waiting[i]
                if request.cancelled or request.expired(now):
                    del self._waiting[i]
                    self._end_unstarted(request)
                    continue
                if request.params.rows > free:
                    break
                if self._chunk and request.params.prefill_inputs is None and len(request.params.prompt_ids) > self._chunk:
                    if self._chunked is not None:
                        i += 1  # one long prompt at a time: this one is next, once that one has joined
                        continue
                    del self._waiting[i]
                    self._chunked = _ChunkedPrefill(request)
                    free -= request.params.rows
                    self._note_admitted(request, now)
                    continue
                # Prefill token budget: the padded prompt tokens of one batched prefill stay
                # within max_batch_tokens (the first request always goes), which bounds the
                # prefill's activation memory (see models/placement.py).
                width = max([len(request.params.prompt_ids)] + [len(r.params.prompt_ids) for r in admitted])
                if admitted and width * (len(admitted) + 1) > self.spec.max_batch_tokens:
                    break
                free -= request.params.rows
                del self._waiting[i]
                admitted.append(request)
                self._note_admitted(request, now)
        return admitted

    def _note_admitted(self, request: GenerationRequest, now: float) -> None:
        request.admitted_at = now
        self._metrics.queue.observe(now - request.arrival)
        self._metrics.prompt_tokens.inc(len(request.params.prompt_ids))

    def _end_unstarted(self, request: GenerationRequest) -> None:
        """End a request that never joined the batch (cancelled or out of time first)."""
        self._progress[request.id] = _Progress(request.params.n)
        reason = FinishReason.CANCELLED if request.cancelled else FinishReason.TIME_LIMIT
        for i in range(request.params.n):
            self._emit_sequence_end(request, SequenceOutput(i, request.params, self.model.tokenizer).stop(reason))

    def _prefill_next_chunk(self) -> None:
        """Run the next chunk of the long prompt; after its last, it joins the batch."""
        job = self._chunked
        assert job is not None
        prompt = job.request.params.prompt_ids
        end = min(len(prompt), job.done + self._chunk)
        last = end == len(prompt)
        started = time.perf_counter()
        try:
            logits, job.cache = self.runner.prefill_chunk(prompt[job.done:end], job.cache, job.done, last)
        except Exception as exc:  # e.g. out of memory on a huge prompt: it fails alone
            self._chunked = None
            self._fail_unjoined([job.request], exc)
            return
        self._metrics.step["prefill_chunk"].observe(time.perf_counter() - started)
        job.done = end
        if last:
            assert logits is not None
            mask = torch.ones((1, end), dtype=torch.long, device=self.runner.device)
            # Still `_chunked` while it joins: if joining fails, _fail_everything finds it there.
            self._prefill_group([job.request], logits, BatchKV(job.cache, mask))
            self._chunked = None
            self._outbox.flush()

    def _prefill(self, requests: list[GenerationRequest]) -> None:
        """Text-only prompts share one batched prefill; prompts with extra inputs (images)
        are prefilled one by one. All join the running batch; a prefill that fails (out of
        memory on a big prompt, say) fails its own requests only."""
        plain = [r for r in requests if r.params.prefill_inputs is None]
        groups = ([(plain, None)] if plain else []) + [([r], r.params.prefill_inputs) for r in requests
                                                        if r.params.prefill_inputs is not None]
        for group, extra in groups:
            started = time.perf_counter()
            try:
                logits, kv = self.runner.prefill([r.params.prompt_ids for r in group], extra)
            except Exception as exc:  # the running batch is untouched: only these requests fail
                self._fail_unjoined(group, exc)
                for request in group:
                    requests.remove(request)  # failed already; not again if the step fails later
                continue
            self._metrics.step["prefill"].observe(time.perf_counter() - started)
            self._prefill_group(group, logits, kv)

    def _prefill_group(self, requests: list[GenerationRequest], logits: torch.Tensor, kv: BatchKV) -> None:
        members: list[Member] = []
        source_rows: list[int] = []
        for j, request in enumerate(requests):
            p = request.params
            self._progress[request.id] = _Progress(p.n)
            if p.method is Method.BEAM:
                assert p.beam is not None
                members.append(BeamGroup(request, BeamSearch(p.beam, p.prompt_ids, self.model.vocab_size)))
                source_rows.append(j)
                continue
            # One seed per request; its n sequences are streams 0..n-1 under it.
            sampling = p.sampling if p.sampling.seed is not None else replace(p.sampling, seed=secrets.randbits(63))
            request.seed = sampling.seed
            for i in range(p.n):
                key = (request.id, i)
                self.sampler.add(key, sampling, p.prompt_ids, stream=i)
                members.append(SampleRow(request, key, SequenceOutput(i, p, self.model.tokenizer)))
                source_rows.append(j)
        if source_rows != list(range(len(requests))):  # n > 1: one logits/KV row per sequence
            index = torch.tensor(source_rows, dtype=torch.long)
            logits = logits.index_select(0, index.to(logits.device))
            kv.gather(index)
        members, keep, tokens = self._select(logits, members)
        kv.gather(keep)
        self._kv.merge(kv)
        self._members.extend(members)
        self._next_tokens = torch.cat([self._next_tokens, tokens])

    def _decode(self) -> None:
        self._metrics.batch_rows.observe(self._kv.rows)
        started = time.perf_counter()
        logits = self.runner.decode(self._kv, self._next_tokens)
        self._metrics.step["forward"].observe(time.perf_counter() - started)
        self.steps += 1
        self._members, keep, self._next_tokens = self._select(logits, self._members)
        self._kv.gather(keep)

    def _select(self, logits: torch.Tensor, members: list[Member]) -> tuple[list[Member], torch.Tensor, torch.Tensor]:
        started = time.perf_counter()
        try:
            return self._select_rows(logits, members)
        finally:
            self._metrics.step["select"].observe(time.perf_counter() - started)

    def _select_rows(self, logits: torch.Tensor, members: list[Member]) -> tuple[list[Member], torch.Tensor, torch.Tensor]:
        """Run the core on `logits` (rows in `members` order); emit tokens; return the members
        still running (sampler rows first), the KV rows they continue, and their next tokens."""
        samples: list[tuple[int, SampleRow]] = []
        groups: list[tuple[int, BeamGroup]] = []
        row = 0
        for m in members:
            if isinstance(m, SampleRow):
                samples.append((row, m))
            else:
                groups.append((row, m))
            row += self._rows_of(m)
        keep: list[int] = []
        tokens: list[int] = []
        running: list[Member] = []
        if samples:
            result = self.sampler.step(_rows(logits, [r for r, _ in samples]), [m.key for _, m in samples])
            self._emit_samples(samples, result, keep, tokens, running)
        if groups:
            beam_rows = [r + k for r, g in groups for k in range(g.rows)]
            steps = self.beams.step([g.search for _, g in groups], _rows(logits, beam_rows))
            self._metrics.generated_tokens.inc(sum(len(s.tokens) for s in steps))
            for (first, group), step in zip(groups, steps):
                if step.done:
                    self._close_member(group, FinishReason.LENGTH)
                    continue
                keep.extend(first + int(p) for p in step.parents)
                tokens.extend(int(t) for t in step.tokens)
                running.append(group)
        return running, torch.tensor(keep, dtype=torch.long), torch.tensor(tokens, dtype=torch.long)

    def _emit_samples(self, samples: list[tuple[int, SampleRow]], result: StepResult,
                      keep: list[int], tokens: list[int], running: list[Member]) -> None:
        token_ids = result.token_ids.tolist()
        now = time.monotonic()
        self._metrics.generated_tokens.inc(len(token_ids))
        for k, (row, m) in enumerate(samples):
            token = token_ids[k]
            info = self._token_info(result, k, token) if m.request.params.logprobs else None
            delta = m.output.push(token, info)
            if m.request.first_token_at is None:
                m.request.first_token_at = now
                self._metrics.ttft.observe(now - m.request.arrival)
            if m.last_token_at is not None:
                self._metrics.itl.observe(now - m.last_token_at)
            m.last_token_at = now
            self._progress[m.request.id].completion_tokens += 1
            if m.output.finished:
                self.sampler.remove(m.key)
                self._emit_sequence_end(m.request, delta)
            else:
                self._outbox.put(m.request, delta)
                keep.append(row)
                tokens.append(token)
                running.append(m)

    def _token_info(self, result: StepResult, k: int, token: int) -> TokenInfo:
        decode = self.model.tokenizer.decode
        top = [(int(t), decode([int(t)]), float(lp))
               for t, lp in zip(result.top_token_ids[k], result.top_logprobs[k]) if t >= 0]
        return TokenInfo(token, decode([token]), float(result.logprobs[k]), int(result.ranks[k]), top)

    def _client_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, torch.OutOfMemoryError):
            return ResourceExhausted(f"model {self.spec.name!r} ran out of memory on this batch; "
                                     "retry with a shorter prompt or fewer tokens")
        return exc

    def _fail_unjoined(self, requests: list[GenerationRequest], exc: BaseException) -> None:
        """A prefill failed before its requests joined the batch: fail them, keep the batch."""
        log.error("model %s: prefill failed; failing %d new request(s), the running batch goes on",
                  self.spec.name, len(requests), exc_info=exc)
        error = self._client_error(exc)
        for request in requests:
            self._outbox.put(request, Failed(error))
            self._progress.pop(request.id, None)
        self._release_cached_memory()

    def _release_cached_memory(self) -> None:
        if torch.cuda.is_available():
            try:
                torch.cuda.empty_cache()
            except Exception:  # a device in an error state: the requests are failed already
                log.exception("model %s: could not release cached GPU memory", self.spec.name)

    def _fail_everything(self, exc: BaseException, admitted: list[GenerationRequest]) -> None:
        """A forward or core call failed: fail the requests it involved, reset the batch."""
        if not isinstance(exc, Unavailable):
            log.error("model %s: decoding step failed; failing %d running request(s)",
                      self.spec.name, len({m.request.id for m in self._members}) + len(admitted) + (self._chunked is not None),
                      exc_info=exc)
        error = self._client_error(exc)
        seen: set[int] = set()
        chunked = [self._chunked.request] if self._chunked is not None else []
        self._chunked = None
        for request in [m.request for m in self._members] + admitted + chunked:
            if request.id not in seen:
                seen.add(request.id)
                self._outbox.put(request, Failed(error))
                self._progress.pop(request.id, None)
        for key in list(self.sampler):
            self.sampler.remove(key)
        self._members = []
        self._kv = empty_batch(self.runner.device)
        self._next_tokens = torch.empty(0, dtype=torch.long)
        self._release_cached_memory()


def _rows(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """logits[rows]: a zero-copy slice when the rows are contiguous, else a copy."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return logits[rows[0]:rows[0] + len(rows)]
    return logits.index_select(0, torch.tensor(rows, dtype=torch.long, device=logits.device))
