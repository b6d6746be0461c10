"""The fallback path's KV cache (kv_backend.DynamicBackend; the KV pool serves every model it
can): transformers' DynamicCache and attention mask, left-padded to one common length.

Rows join (their prefill cache padded on the left and concatenated along the batch), leave,
are duplicated (n > 1, beams) and follow beam parents — all through `merge` and one `gather`
of row indices per step, never re-running a prompt. Padding columns that every row has stopped
needing are trimmed after a gather, so a long-finished long prompt does not cost attention
forever.

`padded` says whether any row has left padding; while none has, the runner passes no attention
mask at all, so the model builds none each step and attention can take its mask-free kernels.

Works with transformers' DynamicCache (and an EncoderDecoderCache's self-attention part), whose
layers hold `.keys` / `.values` shaped [batch, kv_heads, seq, head_dim].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _layers(cache: Any) -> list[Any]:
    inner = getattr(cache, "self_attention_cache", cache)
    return list(inner.layers)


class BatchKV:
    """KV cache + attention mask + next position of every running row."""

    def __init__(self, cache: Any, mask: torch.Tensor) -> None:
        self.cache = cache
        self._mask = mask  # [rows, seq] long, 1 = real token
        self._unrecorded = 0
        """Columns of ones not yet appended to `_mask`: while nothing is padded, decoding needs
        no mask, so steps only count here and `mask` appends them when someone asks."""
        self.positions = mask.sum(dim=1)  # next position id of each row
        self.padded = self._has_padding()

    @property
    def mask(self) -> torch.Tensor:
        if self._unrecorded:
            ones = torch.ones((self.rows, self._unrecorded), dtype=self._mask.dtype, device=self._mask.device)
            self._mask, self._unrecorded = torch.cat([self._mask, ones], dim=1), 0
        return self._mask

    @mask.setter
    def mask(self, value: torch.Tensor) -> None:
        self._mask, self._unrecorded = value, 0

    def _has_padding(self) -> bool:
        # Padding is on the left only, so a row is padded iff its first column is (unrecorded
        # columns are ones on the right: they change nothing here).
        return self.rows > 0 and self._mask.shape[1] > 0 and not bool(self._mask[:, 0].all())

    @property
    def rows(self) -> int:
        return int(self._mask.shape[0])

    def gather(self, index: torch.Tensor) -> None:
        """Keep rows `index` in that order (drops, reorders and duplicates at once)."""
        # Decide on the host (the index is built there): a check on the GPU would stall every step.
        host = index.cpu()
        if host.numel() == self.rows and bool((host == torch.arange(self.rows)).all()):
            return
        index = host.to(self.mask.device)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        for layer in _layers(self.cache):
            if layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))
                layer.values = layer.values.index_select(0, index.to(layer.values.device))
        self._trim_left_padding()

    def _trim_left_padding(self) -> None:
        """Drop the padding columns every row has and note whether any padding is left, from
        each row's padding width, read back in one transfer (beam search gathers every step)."""
        if self.rows == 0:
            self.padded = False
            return
        widths = (self.mask.cumsum(dim=1) == 0).sum(dim=1)  # left padding of each row
        least, most = (int(w) for w in torch.stack([widths.min(), widths.max()]).tolist())
        self.padded = most > least
        if least == 0:
            return
        self.mask = self.mask[:, least:]
        for layer in _layers(self.cache):
            if layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, least:, :]
                layer.values = layer.values[:, :, least:, :]

    def merge(self, other: BatchKV) -> None:
        """Append `other`'s rows after ours, left-padding the shorter side along seq."""
        if self.rows == 0:
            self.cache, self.mask, self.positions, self.padded = other.cache, other.mask, other.positions, other.padded
            return
        length = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(other.mask, length)], dim=0)
        self.positions = torch.cat([self.positions, other.positions])
        for mine, theirs in zip(_layers(self.cache), _layers(other.cache), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, length, -2), _left_pad(theirs.keys, length, -2)], 0)
            mine.values = torch.cat([_left_pad(mine.values, length, -2), _left_pad(theirs.values, length, -2)], 0)
        self.padded = self._has_padding()

    def advance(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Attention mask (None while nothing is padded) and position ids for one more token per
        row, and record that token."""
        self._unrecorded += 1
        positions = self.positions.unsqueeze(1).clone()
        self.positions = self.positions + 1
        return (self.mask if self.padded else None), positions


def _left_pad(t: torch.Tensor, length: int, dim: int = -1) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    if dim == -1:
        return F.pad(t, (missing, 0))
    # dim -2 of a [b, h, seq, d] tensor
    return F.pad(t, (0, 0, missing, 0))


def empty_batch(device: torch.device | str = "cpu") -> BatchKV:
    return BatchKV(None, torch.zeros((0, 0), dtype=torch.long, device=device))
