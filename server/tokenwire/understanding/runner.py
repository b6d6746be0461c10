"""Per-model batching glue: rows of concurrent requests → one padded forward → each row's result.

One ``EncoderRunner`` per loaded module, so fill-mask and next-sentence rows for a
BertForPreTraining (one module serving both tasks) share batches and one forward serves both
heads. Rows are right-padded (in groups of similar length, see ``length_groups``): with an
attention mask and absolute positions, padding changes no real position's output beyond float
rounding, so a batched row equals the row run alone.
Each row carries a ``select`` callable that runs on the model thread right after the forward
(softmax, top-k): only small results cross back to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from ..engine.batcher import BatchLimits, DynamicBatcher
from ..models.loader import LoadedModel
from ..tasks import Task
from .heads import EncoderHeads, Needs, RowOutputs

R = TypeVar("R")


# A gathered batch is cut into forwards of similar lengths once padding would exceed this
# share of a forward's tokens, but never into forwards smaller than MIN_GROUP_TOKENS, below
# which matrix products lose more efficiency than the padding costs (on CPUs, where an
# encoder's time grows with the padded tokens; a GPU barely notices either). These values
# were the best of a few tried on a BERT-base shape, 32 mixed-length rows, 2 CPU cores.
MAX_PADDING_SHARE = 0.3
MIN_GROUP_TOKENS = 384


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Row indices in groups of similar length (shortest first), per the limits above."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        padded_now = lengths[current[-1]] * len(current) if current else 0
        padded_with = n * (len(current) + 1)
        if current and padded_now >= MIN_GROUP_TOKENS and padded_with - (real + n) > MAX_PADDING_SHARE * padded_with:
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class EncoderRow(Generic[R]):
    """One sequence to run, what to read from it, and how to reduce that on the model thread."""

    input_ids: Sequence[int]
    token_type_ids: Sequence[int] | None
    needs: Needs
    select: Callable[[RowOutputs], R] = field(compare=False)


class EncoderRunner:
    """A DynamicBatcher in front of one module (limits from the model's registry entry)."""

    def __init__(self, model: LoadedModel, module: torch.nn.Module) -> None:
        self.model = model
        self.module = module
        self._heads = EncoderHeads(module)
        tokenizer = model.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._use_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        spec = model.spec
        self.batcher: DynamicBatcher[EncoderRow[Any], Any] = DynamicBatcher(
            spec.name,
            self._run_batch,
            BatchLimits(
                max_batch_size=spec.max_batch_size,
                max_batch_tokens=spec.max_batch_tokens,
                max_wait_ms=spec.max_wait_ms,
                max_queue=spec.max_queue,
            ),
            cost=lambda row: len(row.input_ids),
        )
        self.largest_batch = 0
        """Most rows one forward has carried (tests and benchmarks read it)."""

    async def submit(self, row: EncoderRow[R]) -> R:
        """Run `row` in the next batch; its `select` result (or the batch's error)."""
        result: R = await self.batcher.submit(row)
        return result

    def _collate(self, rows: Sequence[EncoderRow[Any]]) -> tuple[dict[str, torch.Tensor], list[int]]:
        lengths = [len(r.input_ids) for r in rows]
        width = max(lengths)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = lengths[i]
            ids[i, :n] = torch.as_tensor(row.input_ids, dtype=torch.long)
            mask[i, :n] = 1
            if row.token_type_ids is not None:
                types[i, :n] = torch.as_tensor(row.token_type_ids, dtype=torch.long)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self._use_token_types:
            inputs["token_type_ids"] = types
        return inputs, lengths

    def _run_batch(self, rows: Sequence[EncoderRow[Any]]) -> list[Any]:
        """On the model's worker thread: padded forwards by length group, each row's select."""
        self.largest_batch = max(self.largest_batch, len(rows))
        results: list[Any] = [None] * len(rows)
        for group in length_groups([len(r.input_ids) for r in rows]):
            members = [rows[i] for i in group]
            inputs, lengths = self._collate(members)
            outputs = self._heads(inputs, lengths, [r.needs for r in members])
            with torch.inference_mode():
                for i, row, out in zip(group, members, outputs, strict=True):
                    results[i] = row.select(out)
        return results

    def close(self) -> None:
        self.batcher.close()


class EncoderRunners:
    """The runners of every model, made on first use and closed on shutdown."""

    def __init__(self) -> None:
        self._runners: dict[tuple[str, int], EncoderRunner] = {}
        self._lock = threading.Lock()

    def get(self, model: LoadedModel, task: Task) -> EncoderRunner:
        module = model.modules[task]
        key = (model.spec.name, id(module))
        with self._lock:
            runner = self._runners.get(key)
            if runner is None or runner.model is not model or runner.module is not module:
                runner = EncoderRunner(model, module)
                self._runners[key] = runner
            return runner

    def runners(self) -> list[EncoderRunner]:
        with self._lock:
            return list(self._runners.values())

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()
