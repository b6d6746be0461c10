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
# A [rows, words] int32 token bitmask (xgrammar's layout: token t allowed iff bit t % 32 of word
# t // 32 is set), a C-contiguous numpy array or a CPU torch tensor (viewed through .numpy()).
TokenMask = Any


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

    def step(
        self,
        logits: Logits,
        rows: Sequence[Hashable] | None = None,
        *,
        advance: bool = True,
        token_mask: TokenMask | None = None,
        mask_rows: npt.NDArray[np.bool_] | None = None,
    ) -> StepResult:
        """Selects one token per row. ``logits[i]`` belongs to ``rows[i]`` (default: every row,
        in insertion order). Zero copy: ``logits`` may be a row-strided view such as
        ``outputs.logits[:, -1, :]``. With ``advance`` (the default) each chosen token is
        appended to its row's history and the row's position moves on.

        ``token_mask`` (structured output; pipeline step 6b): int32 [B, words], xgrammar's token
        bitmask layout (``xgr.allocate_token_bitmask``), ``words >= ceil(min(vocab_size,
        logits width) / 32)``; a numpy array or a CPU torch tensor. Row i may only produce ids
        whose bit is set: disallowed ids are -inf after the edits (steps 1-6) and before the
        warpers, for greedy rows too, so the result equals the unconstrained step on logits with
        the disallowed ids set to -inf. If the edits ban every allowed id (e.g. bad_words bans
        the only one), the row falls back to the allowed ids with their unedited logits. A
        masked row that allows no id below the vocabulary limit is an error (ValueError naming
        the row). ``mask_rows`` (bool [B]): rows with False ignore their mask row and cost
        nothing extra; None masks every row. Processed logprobs describe the masked
        distribution; raw logprobs stay the model's. A masked row costs one extra dense pass."""
        keys, slots = self._slots(rows)
        n = len(keys)
        _check_rows(logits, n)
        tm, mr = _token_mask_args(token_mask, mask_rows, n, self._limit(logits))
        top_n = max((self._rows[k].params.top_logprobs for k in keys), default=0)
        token_ids = np.empty(n, np.int32)
        logprobs = np.empty(n, np.float32)
        ranks = np.empty(n, np.int32)
        top_ids = np.empty((n, top_n), np.int32)
        top_lps = np.empty((n, top_n), np.float32)
        self._core.step(logits, slots, token_ids, logprobs, ranks, top_ids, top_lps, advance, tm, mr)
        return StepResult(keys, token_ids, logprobs, ranks, top_ids, top_lps)

    def process(
        self,
        logits: Logits,
        rows: Sequence[Hashable] | None = None,
        *,
        token_mask: TokenMask | None = None,
        mask_rows: npt.NDArray[np.bool_] | None = None,
    ) -> npt.NDArray[np.float32]:
        """The distribution each row's selector would see, as float32 logits [B, V] (-inf for
        removed ids and ids beyond vocab_size): edited (and masked) logits for greedy rows,
        warped survivors for sampling rows. ``token_mask`` / ``mask_rows`` as in ``step``.
        For tests and debugging; does not advance."""
        keys, slots = self._slots(rows)
        _check_rows(logits, len(keys))
        tm, mr = _token_mask_args(token_mask, mask_rows, len(keys), self._limit(logits))
        shape = (len(keys), int(logits.shape[1]))
        out = np.empty(shape, np.float32)
        self._core.process(logits, slots, out, tm, mr)
        return out

    def _limit(self, logits: Logits) -> int:
        shape = getattr(logits, "shape", None)
        return self._vocab_size if shape is None or len(shape) != 2 else min(self._vocab_size, int(shape[1]))


def _check_rows(logits: Logits, n: int) -> None:
    shape = getattr(logits, "shape", None)
    if shape is not None and len(shape) >= 1 and shape[0] != n:
        raise ValueError(f"logits must have one row per sampled row: got {shape[0]} rows for {n}")


def _as_numpy(x: Any, name: str) -> Any:
    """A CPU torch tensor as its numpy view (zero copy); anything else unchanged."""
    if isinstance(x, np.ndarray) or not (hasattr(x, "numpy") and hasattr(x, "device")):
        return x
    if getattr(x.device, "type", str(x.device)) != "cpu":
        raise ValueError(f"{name} must be in CPU memory, got device {x.device} (copy it with .cpu() first)")
    return x.numpy()


def _token_mask_args(
    token_mask: TokenMask | None, mask_rows: Any, n: int, limit: int
) -> tuple[npt.NDArray[np.int32] | None, npt.NDArray[np.bool_] | None]:
    """Checks a step's token mask (see BatchSampler.step) against its n rows and vocabulary
    limit; returns the numpy arrays the core reads (it checks them again, and also that no
    masked row is empty)."""
    if token_mask is None:
        if mask_rows is not None:
            raise ValueError("mask_rows was given without a token_mask")
        return None, None
    tm = _as_numpy(token_mask, "token_mask")
    if not isinstance(tm, np.ndarray):
        raise TypeError(f"token_mask must be a numpy int32 array or a CPU torch int32 tensor, got {type(tm).__name__}")
    if tm.dtype != np.int32:
        raise TypeError(f"token_mask must have dtype int32 (xgrammar's token bitmask), got {tm.dtype}")
    if tm.ndim != 2 or tm.shape[0] != n:
        raise ValueError(f"token_mask must have shape [{n}, words] (one row per logits row), got {list(tm.shape)}")
    need = -(-limit // 32)
    if tm.shape[1] < need:
        raise ValueError(
            f"token_mask has {tm.shape[1]} words per row; covering the {limit} ids in use needs at least "
            f"ceil({limit} / 32) = {need}"
        )
    if not tm.flags.c_contiguous:
        raise ValueError("token_mask must be C-contiguous (np.ascontiguousarray / .contiguous())")
    if mask_rows is None:
        return tm, None
    mr = _as_numpy(mask_rows, "mask_rows")
    if not isinstance(mr, np.ndarray) or mr.dtype != np.bool_:
        raise TypeError(f"mask_rows must be a numpy bool array, got {getattr(mr, 'dtype', type(mr).__name__)}")
    if mr.shape != (n,):
        raise ValueError(f"mask_rows must have shape [{n}] (one entry per logits row), got {list(mr.shape)}")
    return tm, np.ascontiguousarray(mr)
