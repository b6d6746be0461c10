"""Static-shape decode steps, captured as CUDA graphs (issue 14, first cut).

A decode step launched op by op from Python is bound by the host on a GPU (a 1B model's step is
a few hundred small kernels). Every fast server captures it as CUDA graphs, one per batch-size
bucket; so does this:

- **Buckets** 1, 2, 4, 8, then steps of 8 up to the pool's rows (`bucket_sizes`). A batch of
  `rows` runs in the smallest bucket ≥ rows; padded rows write their K/V to the pool's scratch
  slot and read slot rows they do not own (finite data, discarded outputs).
- **Static buffers**: one int64 tensor [3, bucket] (input ids, positions, write slots) filled
  from the host in one copy per step; the length mask is computed from it inside the graph.
  Attention reads each row's slot over a fixed span, `read_tokens` = the slot's length (the
  graph cannot change shapes): more KV traffic than the eager path, which reads only up to the
  longest row; length buckets would bound it (not yet).
- **Output**: float32 logits [bucket, vocab] in a static buffer; the core reads the first
  `rows` (through `HostLogits`, as on the eager path). Sampling stays on the host, in the C++ core.
- **Capture at load**, largest bucket first, all sharing one memory pool; each bucket is
  replayed once against its eager run (`graphs_equal_eager`); any failure (a kernel that cannot
  be captured, bitsandbytes say) turns graphs off for the model and says why.

On the CPU the same static-shape step runs eagerly (`StaticDecode.run` without a graph): the
tests check it against the dynamic path there, so what a GPU captures is the code the CPU tested.
Prefill and chunks stay eager.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from .attention import BATCH_KEYWORD, StepBatch
from .kv_pool import KVPool
from .logits_check import relative_error, tolerance

log = logging.getLogger(__name__)

GRAPH_ROW_STEP = 8
"""Buckets past 8 rows grow by this many rows (vLLM's and SGLang's spacing)."""


def bucket_sizes(max_rows: int) -> tuple[int, ...]:
    small = [b for b in (1, 2, 4) if b < max_rows]
    return tuple(small + list(range(GRAPH_ROW_STEP, max_rows, GRAPH_ROW_STEP)) + [max_rows])


class StaticDecode:
    """One bucket's decode step with static shapes: its buffers, and on CUDA its graph."""

    def __init__(
        self,
        model: Any,
        pool: KVPool,
        layer_of: dict[int, int],
        device: torch.device,
        bucket: int,
        logits_to_keep: bool,
    ) -> None:
        assert pool.scratch_slot is not None, "static decode steps need the pool's scratch slot"
        self.scratch: int = pool.scratch_slot
        self.model, self.pool, self.layer_of, self.device = model, pool, layer_of, device
        self.bucket = bucket
        self.read_tokens = pool.shape.slot_tokens
        self._logits_to_keep = logits_to_keep
        self.inputs = torch.zeros((3, bucket), dtype=torch.long, device=device)  # ids, positions, slots
        self._host = torch.zeros((3, bucket), dtype=torch.long, pin_memory=device.type == "cuda")
        self._span = torch.arange(self.read_tokens, device=device)
        self.logits: torch.Tensor | None = None
        self.graph: Any = None

    def load(self, tokens: Sequence[int], lengths: Sequence[int]) -> None:
        """This step's rows (len(tokens) ≤ bucket); the rest are padding."""
        rows = len(tokens)
        host = self._host
        host[0, :rows] = torch.as_tensor(tokens, dtype=torch.long)
        host[1, :rows] = torch.as_tensor(lengths, dtype=torch.long)
        host[2, :rows] = torch.arange(rows)
        host[0, rows:] = 0
        host[1, rows:] = 0
        host[2, rows:] = self.scratch
        self.inputs.copy_(host, non_blocking=True)

    def _forward(self) -> torch.Tensor:
        ids, positions, slots = self.inputs[0], self.inputs[1], self.inputs[2]
        batch = StepBatch(self.pool, self.layer_of, "decode", rows=self.bucket)
        mask = (self._span[None, :] <= positions[:, None])[:, None, None, :]
        batch._on[self.device] = {"rows": slots, "positions": positions, "length": self.read_tokens, "mask": mask}
        kwargs: dict[str, Any] = {
            "input_ids": ids.view(-1, 1),
            "position_ids": positions.view(-1, 1),
            "use_cache": False,
            BATCH_KEYWORD: batch,
        }
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out: torch.Tensor = self.model(**kwargs).logits[:, -1, :].float()
        return out

    @torch.inference_mode()
    def run(self) -> torch.Tensor:
        """Logits [bucket, vocab] of the loaded rows: the graph's replay, or the eager step."""
        if self.graph is not None:
            self.graph.replay()
            assert self.logits is not None
            return self.logits
        return self._forward()

    @torch.inference_mode()
    def capture(self, pool_handle: Any) -> None:
        """Warm up on a side stream, then capture (CUDA only)."""
        stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool_handle):
            self.logits = self._forward()
        self.graph = graph


class DecodeGraphs:
    """The buckets of one model, captured (CUDA) or eager (CPU tests)."""

    def __init__(self, steps: list[StaticDecode]) -> None:
        self.steps = sorted(steps, key=lambda s: s.bucket)

    @property
    def buckets(self) -> tuple[int, ...]:
        return tuple(s.bucket for s in self.steps)

    def pick(self, rows: int) -> StaticDecode | None:
        for step in self.steps:
            if step.bucket >= rows:
                return step
        return None


def build(
    model: Any,
    pool: KVPool,
    layer_of: dict[int, int],
    device: torch.device,
    max_rows: int,
    logits_to_keep: bool,
    capture: bool,
) -> DecodeGraphs:
    """Every bucket up to `max_rows`; with `capture`, as CUDA graphs checked against their
    eager run (raises when a bucket cannot be captured or replays differently)."""
    steps = [StaticDecode(model, pool, layer_of, device, b, logits_to_keep) for b in bucket_sizes(max_rows)]
    if capture:
        handle = torch.cuda.graph_pool_handle()
        for step in sorted(steps, key=lambda s: -s.bucket):  # largest first: the others reuse its memory
            step.load([0] * step.bucket, [0] * step.bucket)  # padding only: writes go to the scratch slot
            step.capture(handle)
            _check_replay(step)
    return DecodeGraphs(steps)


def _check_replay(step: StaticDecode) -> None:
    """The graph's logits equal the eager step's on the same inputs (rows at position 0,
    writing only the scratch slot, so the check disturbs no row)."""
    rows = step.bucket
    step.load([(7 * i + 3) % 100 for i in range(rows)], [0] * rows)
    step._host[2, :] = step.scratch  # every write to the scratch slot
    step.inputs.copy_(step._host)
    replayed = step.run().clone()
    graph, step.graph = step.graph, None
    try:
        eager = step.run()
    finally:
        step.graph = graph
    err = relative_error(replayed, eager)
    if err > tolerance(step.pool.shape.dtype):
        raise RuntimeError(f"bucket {rows}: replayed logits differ from eager (relative error {err:.2e})")
