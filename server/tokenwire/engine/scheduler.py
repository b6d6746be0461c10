"""Per-model scheduler: iteration-level (continuous) batching on its own thread.

One iteration:
  1. reap    — requests cancelled by their client or past their deadline leave the batch;
  2. admit   — waiting requests join while KV rows are free (admission.py): ONE batched prefill
               for all of them, their first token chosen from its logits, their rows forked for
               n samples / beams. A prompt longer than `prefill_chunk_tokens` is prefilled
               instead a chunk per iteration, and joins after its last chunk, so running streams
               keep getting a token every iteration. A prefill that fails fails its own
               requests only;
  3. decode  — ONE forward for every running row → logits [rows, vocab] on the host → the core:
               one BatchSampler call for the sampled/greedy rows and one BeamStepper call for
               every beam search → new tokens, beam parents → the batch state keeps the rows
               that go on (beam children copy their parent's KV where it changed).

The parts: `admission.py` (the queue and who joins), `batch_state.py` (the running rows, their
KV, their sampler rows: the only owner of row numbers), `emission.py` (deltas, ends, failures,
metrics). This file runs the steps: forwards, the core call, error containment.

The KV lives in the model's KV pool (pool_setup.py picks it at load) or, for what the pool
cannot serve, transformers' DynamicCache (kv_backend.py); GetModelInfo reports which.

The asyncio event loop never runs any of this: requests arrive through `submit` (thread-safe)
and leave as events posted back to their loop.
"""

from __future__ import annotations

import logging
import threading
import time

import torch

from ..decoding.beam import BeamStep
from ..errors import ResourceExhausted, Unavailable
from ..models.loader import LoadedModel
from ..tasks import Task
from . import attention
from .admission import Admission, Capacity
from .batch_state import BatchState, BeamGroup, Member, SampleRow, spans
from .constraint_masks import MaskFiller, StepMasks, accept, constrained, follow_beams
from .decode_info import DecodeInfo
from .defaults import GenerationDefaults, generation_defaults
from .emission import Emitter, ModelMetrics
from .kv_backend import DynamicBackend, KVBackend
from .pool_setup import open_pool
from .request import FinishReason, GenerationRequest
from .runner import CausalLMRunner

log = logging.getLogger(__name__)

BURST_GAP_S = 0.001
BURST_LIMIT_S = 0.005
"""An idle model waits for a burst of arrivals (requests less than 1 ms apart, 5 ms at most)
before its first prefill (admission.settle)."""


class _ChunkedPrefill:
    """A long prompt being prefilled a chunk per iteration, aside from the batch."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.done = 0
        """Prompt tokens already prefilled."""


class Scheduler:
    def __init__(self, model: LoadedModel, task: Task = Task.GENERATE, *, core_threads: int = 1) -> None:
        """`task`: which of the model's modules decodes (GENERATE, or MULTIMODAL_CHAT for a
        LLaVA-style model whose language model sits behind a vision tower)."""
        self.model = model
        self.spec = model.spec
        module = model.modules[task]
        self.defaults: GenerationDefaults = generation_defaults(module, model.spec.name)
        kv, self.decode_info, capacity = _open_kv(model, module)
        self.max_rows = capacity.rows
        self.state = BatchState(kv, model.vocab_size, model.tokenizer, core_threads=core_threads)
        self._masks = MaskFiller(core_threads)
        self.admission = Admission(model.spec, capacity)
        self._metrics = ModelMetrics(model.spec.name)
        self._metrics.kv_capacity.set(self.decode_info.kv_capacity_tokens)
        self._emit = Emitter(model.tokenizer, self._metrics)  # the scheduler thread's only
        self._chunked: _ChunkedPrefill | None = None
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{model.spec.name}", daemon=True)
        self._thread.start()

    # --- called from the event loop -------------------------------------------------------

    def submit(self, request: GenerationRequest) -> None:
        self.admission.submit(request)

    def close(self) -> None:
        self.admission.close()
        self._thread.join(timeout=30)

    # --- the scheduler thread -------------------------------------------------------------

    @property
    def running_rows(self) -> int:
        """Rows decoding, plus those the long prompt being prefilled in chunks will take."""
        return self.state.rows + (self._chunked.request.params.rows if self._chunked is not None else 0)

    def _busy(self) -> bool:
        return bool(self.state.members) or self._chunked is not None

    def _run(self) -> None:
        while self.admission.wait(self._busy):
            if not self._busy():
                self.admission.settle(BURST_GAP_S, BURST_LIMIT_S)
            admitted: list[GenerationRequest] = []
            self._observe_load()
            try:
                self._reap(time.monotonic())
                admitted = self._admit(time.monotonic())
                if admitted:
                    self._prefill(admitted)
                    self._emit.flush()  # first tokens go out before the next forward pass
                if self._chunked is not None:
                    self._prefill_next_chunk()
                if self.state.members:
                    self._decode()
            except Exception as exc:  # a failing batch fails its requests, never the server
                try:
                    self._fail_everything(exc, admitted)
                finally:
                    self._emit.flush()  # the failures reach their clients whatever happens next
            self._observe_load()  # before the step's events go out: a client that saw its
            self._emit.flush()  # request end and reads the gauges next sees the rows freed
        try:
            self._fail_everything(Unavailable(f"model {self.spec.name!r} is shutting down"), self.admission.drain())
        finally:
            self._emit.flush()
            self._masks.close()

    def _observe_load(self) -> None:
        self._metrics.waiting.set(self.admission.waiting)
        self._metrics.active.set(self._emit.active_requests + (self._chunked is not None))
        self._metrics.kv_used.set(self.state.kv.used_tokens)

    def _reap(self, now: float) -> None:
        """Drop rows of requests whose client left or whose time is up."""
        chunked = self._chunked
        if chunked is not None and (chunked.request.cancelled or chunked.request.expired(now)):
            self._chunked = None
            self.state.kv.drop_chunked()
            self._emit.unstarted(chunked.request)
        for m in self.state.remove(lambda m: m.request.cancelled or m.request.expired(now)):
            self._emit.close(m, FinishReason.CANCELLED if m.request.cancelled else FinishReason.TIME_LIMIT)

    def _admit(self, now: float) -> list[GenerationRequest]:
        taken = self.admission.take(now, self.max_rows - self.running_rows, self._chunked is None)
        for request in taken.ended:
            self._emit.unstarted(request)
        if taken.chunked is not None:
            self._chunked = _ChunkedPrefill(taken.chunked)
            self._note_admitted(taken.chunked, now)
        for request in taken.batch:
            self._note_admitted(request, now)
        return taken.batch

    def _note_admitted(self, request: GenerationRequest, now: float) -> None:
        request.admitted_at = now
        self._metrics.queue.observe(now - request.arrival)
        self._metrics.prompt_tokens.inc(len(request.params.prompt_ids))

    # --- prefill ----------------------------------------------------------------------------

    def _prefill(self, requests: list[GenerationRequest]) -> None:
        """Text-only prompts share one batched prefill; prompts with extra inputs (images)
        are prefilled one by one. All join the running batch; a prefill that fails (out of
        memory on a big prompt, say) fails its own requests only."""
        plain = [r for r in requests if r.params.prefill_inputs is None]
        groups = ([(plain, None)] if plain else []) + [
            ([r], r.params.prefill_inputs) for r in requests if r.params.prefill_inputs is not None
        ]
        for group, extra in groups:
            started = time.perf_counter()
            try:
                logits = self.state.prefill([r.params.prompt_ids for r in group], extra)
            except Exception as exc:  # the running batch is untouched: only these requests fail
                self._fail_unjoined(group, exc)
                for request in group:
                    requests.remove(request)  # failed already; not again if the step fails later
                continue
            self._metrics.step["prefill"].observe(time.perf_counter() - started)
            self._join(group, logits)

    def _prefill_next_chunk(self) -> None:
        """Run the next chunk of the long prompt; after its last, it joins the batch."""
        job = self._chunked
        assert job is not None
        prompt = job.request.params.prompt_ids
        end = min(len(prompt), job.done + self.admission.chunk_tokens)
        last = end == len(prompt)
        started = time.perf_counter()
        try:
            logits = self.state.kv.prefill_chunk(prompt[job.done : end], job.done, last)
        except Exception as exc:  # e.g. out of memory on a huge prompt: it fails alone
            self._chunked = None
            self.state.kv.drop_chunked()
            self._fail_unjoined([job.request], exc)
            return
        self._metrics.step["prefill_chunk"].observe(time.perf_counter() - started)
        job.done = end
        if last:
            assert logits is not None
            self.state.kv.join_chunked()
            # Still `_chunked` while it joins: if joining fails, _fail_everything finds it there.
            self._join([job.request], logits)
            self._chunked = None
            self._emit.flush()

    def _join(self, requests: list[GenerationRequest], logits: torch.Tensor) -> None:
        """`requests` were just prefilled (their rows last, one each): choose their first
        tokens and join the members that go on."""
        members: list[Member] = []
        prompt_rows: list[int] = []
        for j, request in enumerate(requests):
            self._emit.started(request)
            new = self.state.new_members(request)
            members.extend(new)
            prompt_rows.extend([j] * len(new))  # n > 1: every sample starts from the prompt's row
        if prompt_rows != list(range(len(requests))):
            logits = logits.index_select(0, torch.tensor(prompt_rows, dtype=torch.long, device=logits.device))
        masks = self._masks.fill(members) if constrained(members) else None
        running, keep, tokens = self._select(logits, members, masks)
        self.state.join(running, [prompt_rows[k] for k in keep], tokens, prompts=len(requests))

    # --- decode -----------------------------------------------------------------------------

    def _decode(self) -> None:
        self._metrics.batch_rows.observe(self.state.rows)
        started = time.perf_counter()
        # Constrained rows' bitmasks are filled during the forward (BatchState tracks whether any).
        pending = self._masks.start(self.state.members) if self.state.constrained else None
        try:
            logits = self.state.decode()
        finally:
            masks = pending.result() if pending is not None else None
        self._metrics.step["forward"].observe(time.perf_counter() - started)
        self.steps += 1
        running, keep, tokens = self._select(logits, self.state.members, masks)
        self.state.advance(running, keep, tokens)

    def _select(
        self, logits: torch.Tensor, members: list[Member], masks: StepMasks | None = None
    ) -> tuple[list[Member], list[int], list[int]]:
        """The core on `logits` (rows in `members` order): tokens emitted; returns the members
        that go on, the rows they continue and their next input tokens."""
        started = time.perf_counter()
        laid_out = list(spans(members))
        samples = [(row, m) for row, m in laid_out if isinstance(m, SampleRow)]
        groups = [(row, m) for row, m in laid_out if isinstance(m, BeamGroup)]
        keep: list[int] = []
        tokens: list[int] = []
        running: list[Member] = []
        go_on: dict[int, tuple[int, int]] = {}  # id(member) → (row, token)
        if samples:
            token_mask, mask_rows = masks.samples if masks is not None else (None, None)
            result = self.state.sampler.step(
                _rows(logits, [r for r, _ in samples]),
                [m.key for _, m in samples],
                token_mask=token_mask,
                mask_rows=mask_rows,
            )
            chosen = result.token_ids.tolist()
            now = time.monotonic()
            self._metrics.generated_tokens.inc(len(chosen))
            for k, (row, sample) in enumerate(samples):
                if sample.matcher is not None:
                    accept(sample.matcher, chosen[k], f"request {sample.request.id}")
                if self._emit.sample(sample, chosen[k], result, k, now):
                    go_on[id(sample)] = (row, chosen[k])
                else:
                    self.state.release(sample)
        beam_steps: dict[int, tuple[int, BeamStep]] = {}
        if groups:
            beam_rows = [r + k for r, g in groups for k in range(g.rows)]
            token_mask, mask_rows = masks.beams if masks is not None else (None, None)
            steps = self.state.beams.step(
                [g.search for _, g in groups], _rows(logits, beam_rows), token_mask=token_mask, mask_rows=mask_rows
            )
            self._metrics.generated_tokens.inc(sum(len(s.tokens) for s in steps))
            for (row, group), step in zip(groups, steps, strict=True):
                if step.done:
                    self._emit.close(group, FinishReason.LENGTH)
                else:
                    follow_beams(group, step)
                    beam_steps[id(group)] = (row, step)
        for _, m in laid_out:  # members keep their order: rows move only when they must
            if id(m) in go_on:
                keep.append(go_on[id(m)][0])
                tokens.append(go_on[id(m)][1])
                running.append(m)
            elif id(m) in beam_steps:
                first, step = beam_steps[id(m)]
                keep.extend(first + int(p) for p in step.parents)
                tokens.extend(int(t) for t in step.tokens)
                running.append(m)
        self._metrics.step["select"].observe(time.perf_counter() - started)
        return running, keep, tokens

    # --- failures ---------------------------------------------------------------------------

    def _client_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, torch.OutOfMemoryError):
            return ResourceExhausted(
                f"model {self.spec.name!r} ran out of memory on this batch; retry with a shorter prompt or fewer tokens"
            )
        return exc

    def _fail_unjoined(self, requests: list[GenerationRequest], exc: BaseException) -> None:
        """A prefill failed before its requests joined the batch: fail them, keep the batch."""
        log.error(
            "model %s: prefill failed; failing %d new request(s), the running batch goes on",
            self.spec.name,
            len(requests),
            exc_info=exc,
        )
        error = self._client_error(exc)
        for request in requests:
            self._emit.fail(request, error)
        self._release_cached_memory()

    def _release_cached_memory(self) -> None:
        if torch.cuda.is_available():
            try:
                torch.cuda.empty_cache()
            except Exception:  # a device in an error state: the requests are failed already
                log.exception("model %s: could not release cached GPU memory", self.spec.name)

    def _fail_everything(self, exc: BaseException, admitted: list[GenerationRequest]) -> None:
        """A forward or core call failed: fail the requests it involved, reset the batch."""
        members = self.state.clear()
        chunked = [self._chunked.request] if self._chunked is not None else []
        self._chunked = None
        requests = {r.id: r for r in [m.request for m in members] + admitted + chunked}
        if not isinstance(exc, Unavailable):
            log.error(
                "model %s: decoding step failed; failing %d request(s)", self.spec.name, len(requests), exc_info=exc
            )
        error = self._client_error(exc)
        for request in requests.values():
            self._emit.fail(request, error)
        self._release_cached_memory()


def _open_kv(model: LoadedModel, module: torch.nn.Module) -> tuple[KVBackend, DecodeInfo, Capacity]:
    """The model's KV pool when it can decode on one, else the DynamicCache fallback."""
    choice = open_pool(model, module)
    if choice.runner is not None:
        shape = choice.runner.pool.shape
        graphs = choice.runner.graphs
        captured = graphs is not None and all(step.graph is not None for step in graphs.steps)
        info = DecodeInfo(
            "kv_pool",
            attention.kernel_name(),
            kv_capacity_tokens=choice.runner.pool.capacity_tokens,
            kv_slots=shape.slots,
            kv_slot_tokens=shape.slot_tokens,
            kv_bytes_per_device=choice.runner.pool.bytes_per_device(),
            cuda_graphs=captured,
            cuda_graph_batch_sizes=graphs.buckets if captured and graphs else (),
            cuda_graphs_reason=choice.graphs_reason,
        )
        log.info(
            "model %s: KV pool of %d rows × %d tokens (%s), attention %s, CUDA graphs %s",
            model.spec.name,
            shape.slots,
            shape.slot_tokens,
            ", ".join(f"{d} {n / 2**20:.1f} MiB" for d, n in info.kv_bytes_per_device.items()),
            info.attention_backend,
            info.cuda_graph_batch_sizes or f"off ({info.cuda_graphs_reason or 'CPU'})",
        )
        return choice.runner, info, Capacity(shape.slots, shape.slot_tokens)
    pad = model.special_token_ids.get("pad") or model.special_token_ids.get("eos") or [0]
    impl = getattr(module.config, "_attn_implementation", None) or "eager"
    log.info("model %s: decoding with DynamicCache (%s)", model.spec.name, choice.reason)
    info = DecodeInfo("dynamic_cache", f"transformers:{impl}", fallback_reason=choice.reason)
    return DynamicBackend(CausalLMRunner(module, pad[0])), info, Capacity(model.spec.max_batch_size, None)


def _rows(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """logits[rows]: a zero-copy slice when the rows are contiguous, else a copy."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return logits[rows[0] : rows[0] + len(rows)]
    return logits.index_select(0, torch.tensor(rows, dtype=torch.long, device=logits.device))
