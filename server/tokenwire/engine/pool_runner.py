"""Forward passes over the KV pool: the pool path's side of the batch (its rows' lengths).

Row i of the batch is pool slot i. Prefill appends rows after the running ones; `arrange` keeps
rows in a new order (drops, forks, beam parents) by copying only the slots whose content
changes; a long prompt prefilled in chunks builds up in the last slot (the admission keeps it
free) until it joins.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .attention import BATCH_KEYWORD, StepBatch
from .decode_graphs import DecodeGraphs
from .kv_pool import KVPool, arrangement_moves
from .runner import HostLogits, execution_device


class PoolRunner:
    decode_path = "kv_pool"

    def __init__(self, model: torch.nn.Module, pool: KVPool, layer_of: dict[int, int]) -> None:
        self.model = model
        self.pool = pool
        self.layer_of = layer_of
        self.device = execution_device(model)
        params = inspect.signature(model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in params
        self._host = HostLogits()
        self.lengths: list[int] = []
        """Tokens each row holds in its slot (= the position of its next token)."""
        self.chunk_tokens = 0
        """Tokens of the long prompt being prefilled in chunks (in the staging slot)."""
        self._written = [0] * pool.shape.slots
        """Per slot, how far data may lie from rows that held it before (recorded when a row
        leaves or is replaced, not every step: a slot's current row has written `lengths`)."""
        self.graphs: DecodeGraphs | None = None
        """Static-shape decode steps per batch bucket (CUDA graphs on a GPU); None: eager steps."""

    @property
    def logits_to_keep(self) -> bool:
        return self._logits_to_keep

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def staging_slot(self) -> int:
        return self.pool.shape.slots - 1

    @property
    def used_tokens(self) -> int:
        return sum(self.lengths) + self.chunk_tokens

    def _forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        batch: StepBatch,
        keep: int | torch.Tensor,
        extra: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": ids, "position_ids": positions, "use_cache": False, BATCH_KEYWORD: batch}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = keep
        for key, value in (extra or {}).items():
            kwargs[key] = value.to(self.device) if isinstance(value, torch.Tensor) else value
        logits: torch.Tensor = self.model(**kwargs).logits
        if not self._logits_to_keep:  # the model computed every position: keep the asked ones
            logits = logits[:, -keep:] if isinstance(keep, int) else logits[:, keep]
        return logits

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], extra: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Prompts → their last-position logits [len(prompts), vocab]; they become rows
        rows..rows+len(prompts)-1, in that order."""
        base = self.rows
        self._check_rows(base + len(prompts))
        flat = [t for p in prompts for t in p]
        positions = [i for p in prompts for i in range(len(p))]
        ends, at = [], 0
        for p in prompts:
            at += len(p)
            ends.append(at - 1)
        batch = StepBatch(
            self.pool,
            self.layer_of,
            "prefill",
            lengths=[len(p) for p in prompts],
            slots=list(range(base, base + len(prompts))),
        )
        ids = torch.tensor([flat], dtype=torch.long, device=self.device)
        pos = torch.tensor([positions], dtype=torch.long, device=self.device)
        keep = torch.tensor(ends, dtype=torch.long)  # on the CPU: it indexes the last layer's device
        logits = self._host(self._forward(ids, pos, batch, keep, extra)[0])
        for slot, p in enumerate(prompts, start=base):
            self._occupy(slot, len(p), len(p))
        self.lengths.extend(len(p) for p in prompts)
        return logits

    @torch.inference_mode()
    def prefill_chunk(self, chunk: list[int], start: int, last: bool) -> torch.Tensor | None:
        """Tokens [start, start + len(chunk)) of the long prompt, into the staging slot; the
        last position's logits when `last`."""
        batch = StepBatch(
            self.pool, self.layer_of, "chunk", lengths=[len(chunk)], slots=[self.staging_slot], start=start
        )
        ids = torch.tensor([chunk], dtype=torch.long, device=self.device)
        pos = torch.arange(start, start + len(chunk), device=self.device).unsqueeze(0)
        logits = self._forward(ids, pos, batch, 1)
        self.chunk_tokens = start + len(chunk)
        self._written[self.staging_slot] = max(self._written[self.staging_slot], self.chunk_tokens)
        return self._host(logits[:, -1, :]) if last else None

    def join_chunked(self) -> None:
        """The chunked prompt becomes the next row."""
        row = self.rows
        self._check_rows(row + 1, chunk_pending=False)
        if row != self.staging_slot:
            self.pool.copy_slots([row], [self.staging_slot], self.chunk_tokens)
        self._occupy(row, self.chunk_tokens, self.chunk_tokens)  # (in place too: an earlier, longer
        # prompt may have left data past this one in the staging slot)
        self.lengths.append(self.chunk_tokens)
        self.chunk_tokens = 0

    def drop_chunked(self) -> None:
        self.chunk_tokens = 0

    @torch.inference_mode()
    def decode(self, tokens: Sequence[int]) -> torch.Tensor:
        """One token per row → next logits [rows, vocab]: a bucket's static step (a CUDA graph
        replay on a GPU) when one fits, else an eager step shaped to the batch."""
        static = self.graphs.pick(self.rows) if self.graphs is not None else None
        if static is not None:
            static.load(tokens, self.lengths)
            logits = static.run()[: self.rows]
        else:
            batch = StepBatch(self.pool, self.layer_of, "decode", rows=self.rows, positions=list(self.lengths))
            ids = torch.tensor(tokens, dtype=torch.long, device=self.device).view(-1, 1)
            pos = torch.tensor(self.lengths, dtype=torch.long, device=self.device).view(-1, 1)
            logits = self._forward(ids, pos, batch, 1)[:, -1, :]
        self.lengths = [n + 1 for n in self.lengths]
        return self._host(logits)

    def arrange(self, index: Sequence[int], shared: Sequence[int] | None = None) -> None:
        """Row i continues old row index[i] (rows dropped, reordered, duplicated at once).
        `shared[i]`: leading tokens row i's slot holds already, the same as its source's (a beam
        following a sibling shares their prompt); only the rest is copied."""
        self._check_rows(len(index))
        old = self.lengths
        for slot in range(len(index), len(old)):  # rows leaving the end: remember what they wrote
            self._written[slot] = max(self._written[slot], old[slot])
        if list(index) == list(range(len(index))):  # the common step: nothing moves
            self.lengths = old[: len(index)]
            return
        dst, src, tokens = arrangement_moves(index, old)
        start = min((shared[i] for i in dst), default=0) if shared is not None else 0
        self.pool.copy_slots(dst, src, tokens, start)
        self.lengths = [old[j] for j in index]
        for slot in dst:
            self._occupy(slot, self.lengths[slot], max(tokens, old[slot] if slot < len(old) else 0))

    def _occupy(self, slot: int, length: int, written: int) -> None:
        """Slot `slot` now holds a row of `length` tokens, data written up to `written`. Data
        beyond the row's length is masked out by attention, but a masked position still enters
        the products with weight 0, and 0 × a NaN or inf some earlier row left there (an fp16
        overflow) is NaN: such leftovers are zeroed when a slot changes hands (rare, bounded)."""
        stale = max(self._written[slot], written)
        if stale > length:
            for keys, values in zip(self.pool.keys, self.pool.values, strict=True):
                keys[slot, length:stale].zero_()
                values[slot, length:stale].zero_()
        self._written[slot] = length

    def _check_rows(self, rows: int, chunk_pending: bool | None = None) -> None:
        """Loud, on the host: rows past the pool (or onto the slot a chunked prompt is building
        up in) would be a device-side assert on a GPU, which ends the process's CUDA context."""
        pending = self.chunk_tokens > 0 if chunk_pending is None else chunk_pending
        limit = self.staging_slot if pending else self.pool.shape.slots
        if rows > limit:
            raise RuntimeError(f"{rows} rows exceed the KV pool's {limit} free slots")

    def reset(self) -> None:
        for slot, n in enumerate(self.lengths):  # the data stays in the slots: remember how far
            self._written[slot] = max(self._written[slot], n)
        self.lengths = []
        self.chunk_tokens = 0
