"""The KV side of the running batch, as the batch state drives it: two implementations.

`PoolRunner` (pool_runner.py) is the engine's own path: a KV pool allocated at load, tokenwire
attention, per-row lengths, no padding. `DynamicBackend` is the fallback for what the pool cannot
serve (offloaded weights, encoder-decoder caches, attention the pool does not implement — see
pool_setup.py): transformers' DynamicCache, left-padded (kv_cache.BatchKV), as before engine v2.

Both follow one contract: prefill appends its prompts as the last rows; decode advances every
row by one token; `arrange(index)` makes row i continue old row index[i]; a long prompt may be
prefilled in chunks aside and joined as the next row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from .kv_cache import BatchKV, empty_batch
from .runner import CausalLMRunner


class KVBackend(Protocol):
    decode_path: str
    device: torch.device

    @property
    def rows(self) -> int: ...

    @property
    def used_tokens(self) -> int: ...

    def prefill(self, prompts: list[list[int]], extra: Mapping[str, Any] | None = None) -> torch.Tensor: ...

    def prefill_chunk(self, chunk: list[int], start: int, last: bool) -> torch.Tensor | None: ...

    def join_chunked(self) -> None: ...

    def drop_chunked(self) -> None: ...

    def decode(self, tokens: Sequence[int]) -> torch.Tensor: ...

    def arrange(self, index: Sequence[int], shared: Sequence[int] | None = None) -> None: ...

    def reset(self) -> None: ...


class DynamicBackend:
    """The fallback: transformers' DynamicCache, left-padded to one length."""

    decode_path = "dynamic_cache"

    def __init__(self, runner: CausalLMRunner) -> None:
        self.runner = runner
        self.device = runner.device
        self._kv: BatchKV = empty_batch(self.device)
        self._chunk_cache: Any = None
        self._chunk_tokens = 0
        self._lengths: list[int] = []
        """Tokens each row holds, kept on the host (reading the cache's own would sync a GPU)."""
        self._joining: BatchKV | None = None
        """Rows just prefilled, kept aside until `arrange` settles them: forked and filtered
        alone, then merged, so a join never copies the running batch's cache."""

    @property
    def rows(self) -> int:
        return self._kv.rows + (self._joining.rows if self._joining is not None else 0)

    @property
    def used_tokens(self) -> int:
        return sum(self._lengths) + self._chunk_tokens

    def prefill(self, prompts: list[list[int]], extra: Mapping[str, Any] | None = None) -> torch.Tensor:
        logits, kv = self.runner.prefill(prompts, extra)
        self._join(kv)
        self._lengths.extend(len(p) for p in prompts)
        return logits

    def _join(self, kv: BatchKV) -> None:
        if self._joining is None:
            self._joining = kv
        else:
            self._joining.merge(kv)

    def prefill_chunk(self, chunk: list[int], start: int, last: bool) -> torch.Tensor | None:
        logits, self._chunk_cache = self.runner.prefill_chunk(chunk, self._chunk_cache, start, last)
        self._chunk_tokens = start + len(chunk)
        return logits

    def join_chunked(self) -> None:
        mask = torch.ones((1, self._chunk_tokens), dtype=torch.long, device=self.device)
        self._join(BatchKV(self._chunk_cache, mask))
        self._lengths.append(self._chunk_tokens)
        self.drop_chunked()

    def drop_chunked(self) -> None:
        self._chunk_cache, self._chunk_tokens = None, 0

    def decode(self, tokens: Sequence[int]) -> torch.Tensor:
        assert self._joining is None, "prefilled rows are arranged before the next decode step"
        logits = self.runner.decode(self._kv, torch.tensor(list(tokens), dtype=torch.long))
        self._lengths = [n + 1 for n in self._lengths]
        return logits

    def arrange(self, index: Sequence[int], shared: Sequence[int] | None = None) -> None:
        self._lengths = [self._lengths[j] for j in index]
        joining, self._joining = self._joining, None
        if joining is None:
            self._kv.gather(torch.tensor(list(index), dtype=torch.long))
            return
        base = self._kv.rows  # the running rows stay as they are; the new ones fork and merge
        if list(index[:base]) != list(range(base)) or any(j < base for j in index[base:]):
            raise RuntimeError("a join may only rearrange the rows it adds")
        joining.gather(torch.tensor([j - base for j in index[base:]], dtype=torch.long))
        if joining.rows:
            self._kv.merge(joining)

    def reset(self) -> None:
        self._kv = empty_batch(self.device)
        self._joining = None
        self._lengths = []
        self.drop_chunked()
