"""The KV pool: every decoder layer's keys and values for every running row, allocated once.

Layout, per layer, on that layer's own device:

    keys, values: [slots, slot_tokens, kv_heads, head_dim]

One slot per running row (a sequence, a beam); slot_tokens = the model's longest prompt +
generated sequence (`Reservation.context`). This is a paged layout with one page of
`slot_tokens` per row, so the block table of a paged kernel is `[[slot]]`; attention reads a
slot in place (a strided view, no copy) as [rows, kv_heads, length, head_dim].

Why slots rather than small pages (docs/engine.md argues it in full): with the kernels the
installed torch offers (SDPA over dense K/V), pages would have to be gathered into a dense copy
for every layer of every step, and the placement plan already reserves exactly
rows × context per layer (the reservation becomes the allocation). What pages would buy —
prompt pages shared by forks and a prefix cache — is copied here instead: a fork copies its
prompt once, a beam reorder copies the rows whose parent changed, up to their length.

Rows live in slots [0, rows): the batch's row i is slot i, so a decode step reads the first
`rows` slots as one view. `arrange` keeps that so when rows leave, fork or follow beam parents.
Positions beyond a row's length hold stale (finite) data that attention masks out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoolShape:
    layers: int
    slots: int
    slot_tokens: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def bytes_per_token(self) -> int:
        """K and V of one token in one layer."""
        return 2 * self.kv_heads * self.head_dim * torch.empty((), dtype=self.dtype).element_size()


class KVPool:
    """Per-layer K/V storage plus per-slot lengths (tokens held)."""

    def __init__(self, shape: PoolShape, devices: Sequence[torch.device], scratch: bool = False) -> None:
        """`scratch`: one more slot past the rows, where the padded rows of a static-shape
        (CUDA graph) decode step write (`scratch_slot`); no row ever lives there."""
        if len(devices) != shape.layers:
            raise ValueError(f"one device per layer: got {len(devices)} for {shape.layers} layers")
        self.shape = shape
        self.scratch_slot = shape.slots if scratch else None
        dims = (shape.slots + int(scratch), shape.slot_tokens, shape.kv_heads, shape.head_dim)
        # Zeros, not empty: attention multiplies the masked positions' values by a weight of 0,
        # and 0 × a NaN left in uninitialised memory is NaN.
        self.keys = [torch.zeros(dims, dtype=shape.dtype, device=d) for d in devices]
        self.values = [torch.zeros(dims, dtype=shape.dtype, device=d) for d in devices]
        self.devices = list(devices)

    @property
    def capacity_tokens(self) -> int:
        return self.shape.slots * self.shape.slot_tokens

    def bytes_per_device(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for device in self.devices:
            label = str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"
            out[label] = out.get(label, 0) + 2 * self.keys[0].numel() * self.keys[0].element_size()
        return out

    def copy_slots(self, dst: Sequence[int], src: Sequence[int], tokens: int, start: int = 0) -> None:
        """Slot dst[i] gets positions [start, tokens) of slot src[i], all layers (positions
        before `start` are the same in both already). Sources are read before any destination
        is written, so permutations and overlaps are safe."""
        if not dst or tokens <= start:
            return
        span = slice(start, tokens)
        if len(dst) == 1:  # one row: a plain slice copy (no index tensors)
            d, s = dst[0], src[0]
            for keys, values in zip(self.keys, self.values, strict=True):
                keys[d, span].copy_(keys[s, span])
                values[d, span].copy_(values[s, span])
            return
        index: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        for keys, values in zip(self.keys, self.values, strict=True):
            if keys.device not in index:
                index[keys.device] = (
                    torch.tensor(list(dst), device=keys.device),
                    torch.tensor(list(src), device=keys.device),
                )
            d_idx, s_idx = index[keys.device]
            keys[d_idx, span] = keys[s_idx, span]  # the right side is gathered first
            values[d_idx, span] = values[s_idx, span]


def arrangement_moves(index: Sequence[int], lengths: Sequence[int]) -> tuple[list[int], list[int], int]:
    """For "row i continues old row index[i]": the slots to copy (dst, src) and how many
    tokens cover every moved row. Rows that stay in place cost nothing."""
    dst = [i for i, j in enumerate(index) if i != j]
    src = [index[i] for i in dst]
    tokens = max((lengths[j] for j in src), default=0)
    return dst, src, tokens
