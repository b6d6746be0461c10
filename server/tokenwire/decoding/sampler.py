"""BatchSampler: one call per decode step for every sampled / greedy row of a batch."""

from __future__ import annotations

import secrets
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import tokenwire._core as _core
from tokenwire.decoding.errors import InvalidParameter
from tokenwire.decoding.params import SamplingParams

Logits = Any  # a [rows, vocab] numpy array or torch CPU tensor: float32, bfloat16 or float16


@dataclass(frozen=True)
class StepResult:
    """One step's outputs, row i belonging to ``rows[i]``.

    token_ids: [B] int32, always < the sampler's vocab_size.
    logprobs: [B] float32, NaN for rows that asked for neither logprobs nor top_logprobs.
    ranks: [B] int32, 1-based rank of the chosen token in the same distribution; 0 if not asked.
    top_token_ids / top_logprobs: [B, N], N = the largest top_logprobs in the batch; best first,
        padded with -1 / NaN beyond a row's own top_logprobs.
    """

    rows: tuple[Hashable, ...]
    token_ids: npt.NDArray[np.int32]
    logprobs: npt.NDArray[np.float32]
    ranks: npt.NDArray[np.int32]
    top_token_ids: npt.NDArray[np.int32]
    top_logprobs: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class _Row:
    slot: int
    params: SamplingParams
    seed: int
    stream: int


class BatchSampler:
    """Per-row state (parameters, prompt + generated history, seed, position) for the rows
    of a running batch, and the step that samples them all in one native call.

    Rows are keyed by any hashable (a request id, or (request id, completion index)). Rows
    may be added and removed between steps; each step names the rows of its logits in order,
    so the batch may also be reordered freely. A row's tokens depend on its own parameters,
    history, seed and stream only. Not for concurrent use from several threads (calls are
    serialised in the core anyway); the step itself releases the GIL.
    """

    def __init__(self, vocab_size: int, *, num_threads: int = 1) -> None:
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise InvalidParameter("vocab_size", f"vocab_size must be >= 1, got {vocab_size!r}")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise InvalidParameter("num_threads", f"num_threads must be >= 1, got {num_threads!r}")
        self._core = _core.BatchSampler(vocab_size, num_threads)
        self._rows: dict[Hashable, _Row] = {}
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        """The tokenizer's size: no id at or beyond it is ever produced."""
        return self._vocab_size

    @property
    def num_threads(self) -> int:
        return int(self._core.num_threads)

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise InvalidParameter("num_threads", f"num_threads must be >= 1, got {n!r}")
        self._core.num_threads = n

    def add(self, key: Hashable, params: SamplingParams, prompt_ids: Sequence[int], *, stream: int = 0) -> int:
        """Adds a row; returns its seed (the given one, or a random one when params.seed is None).

        ``stream`` separates the completions of one request that share a seed (n > 1).
        """
        if key in self._rows:
            raise KeyError(f"row {key!r} is already in the batch")
        params.validate_for_vocab(self._vocab_size)
        if not 0 <= stream < 2**32:
            raise InvalidParameter("stream", f"stream must be in [0, 2**32), got {stream!r}")
        seed = secrets.randbits(63) if params.seed is None else params.seed
        slot = self._core.add(params.to_core(seed=seed, stream=stream), list(prompt_ids))
        self._rows[key] = _Row(slot, params, seed, stream)
        return seed

    def remove(self, key: Hashable) -> None:
        self._core.remove(self._rows.pop(key).slot)

    def append(self, key: Hashable, token_ids: Sequence[int]) -> None:
        """Records tokens the caller chose itself (they count as generated: history, position)."""
        self._core.append(self._rows[key].slot, list(token_ids))

    def generated(self, key: Hashable) -> int:
        """Tokens generated so far for the row (its RNG position)."""
        return int(self._core.generated(self._rows[key].slot))

    def stages(self, key: Hashable) -> list[str]:
        """The row's chain, in pipeline order (neutral stages are absent)."""
        return list(self._core.stage_names(self._rows[key].slot))

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._rows)

    def _slots(self, rows: Sequence[Hashable] | None) -> tuple[tuple[Hashable, ...], npt.NDArray[np.int32]]:
        keys = tuple(self._rows) if rows is None else tuple(rows)
        try:
            slots = np.fromiter((self._rows[k].slot for k in keys), dtype=np.int32, count=len(keys))
        except KeyError as e:
            raise KeyError(f"row {e.args[0]!r} is not in the batch") from None
        return keys, slots

    def step(self, logits: Logits, rows: Sequence[Hashable] | None = None, *, advance: bool = True) -> StepResult:
        """Selects one token per row. ``logits[i]`` belongs to ``rows[i]`` (default: every row,
        in insertion order). Zero copy: ``logits`` may be a row-strided view such as
        ``outputs.logits[:, -1, :]``. With ``advance`` (the default) each chosen token is
        appended to its row's history and the row's position moves on."""
        keys, slots = self._slots(rows)
        n = len(keys)
        _check_rows(logits, n)
        top_n = max((self._rows[k].params.top_logprobs for k in keys), default=0)
        token_ids = np.empty(n, np.int32)
        logprobs = np.empty(n, np.float32)
        ranks = np.empty(n, np.int32)
        top_ids = np.empty((n, top_n), np.int32)
        top_lps = np.empty((n, top_n), np.float32)
        self._core.step(logits, slots, token_ids, logprobs, ranks, top_ids, top_lps, advance)
        return StepResult(keys, token_ids, logprobs, ranks, top_ids, top_lps)

    def process(self, logits: Logits, rows: Sequence[Hashable] | None = None) -> npt.NDArray[np.float32]:
        """The distribution each row's selector would see, as float32 logits [B, V] (-inf for
        removed ids and ids beyond vocab_size): edited logits for greedy rows, warped
        survivors for sampling rows. For tests and debugging; does not advance."""
        keys, slots = self._slots(rows)
        _check_rows(logits, len(keys))
        shape = (len(keys), int(logits.shape[1]))
        out = np.empty(shape, np.float32)
        self._core.process(logits, slots, out)
        return out


def _check_rows(logits: Logits, n: int) -> None:
    shape = getattr(logits, "shape", None)
    if shape is not None and len(shape) >= 1 and shape[0] != n:
        raise ValueError(f"logits must have one row per sampled row: got {shape[0]} rows for {n}")
