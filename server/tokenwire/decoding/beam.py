"""Beam search bookkeeping per request, stepped one request at a time or batched."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import tokenwire._core as _core
from tokenwire.decoding.params import BeamParams
from tokenwire.decoding.sampler import Logits, TokenMask, _token_mask_args


@dataclass(frozen=True)
class BeamStep:
    """parents[j]: which row of this step's logits beam j continues (reorder / expand the KV
    cache with it: ``cache.reorder_cache(parents)``); tokens[j]: the token beam j appends.
    done: the search has finished; call ``hypotheses()`` and stop feeding it."""

    parents: npt.NDArray[np.int32]
    tokens: npt.NDArray[np.int32]
    done: bool


@dataclass(frozen=True)
class Hypothesis:
    token_ids: list[int]  # generated tokens, EOS included
    score: float  # sum of log-probs / len(token_ids) ** length_penalty
    finished: bool  # False: a running beam returned because the search was stopped early


class BeamSearch:
    """One request's beam search, transformers-exact (see BeamParams).

    Feed it, per step, the logits of its live rows: ONE row before the first step (all beams
    share the prompt, so prefill once), then ``num_beams`` rows in the order of the previous
    step's ``tokens``. ``rows_expected`` says which.
    """

    def __init__(self, params: BeamParams, prompt_ids: Sequence[int], vocab_size: int) -> None:
        params.validate_for_vocab(vocab_size)
        self.params = params
        self._vocab_size = vocab_size
        self._core = _core.BeamSearch(params.to_core(), list(prompt_ids), vocab_size)

    @property
    def rows_expected(self) -> int:
        return int(self._core.rows_expected)

    @property
    def done(self) -> bool:
        return bool(self._core.done)

    @property
    def generated(self) -> int:
        return int(self._core.generated)

    @property
    def num_beams(self) -> int:
        return self.params.num_beams

    def step(
        self,
        logits: Logits,
        *,
        token_mask: TokenMask | None = None,
        mask_rows: npt.NDArray[np.bool_] | None = None,
    ) -> BeamStep:
        """One step; ``token_mask`` / ``mask_rows`` as in ``BeamStepper.step``."""
        return _default_stepper().step([self], logits, token_mask=token_mask, mask_rows=mask_rows)[0]

    def hypotheses(self) -> list[Hypothesis]:
        """Best first, at most num_return_sequences."""
        return [Hypothesis(list(t), float(s), bool(f)) for t, s, f in self._core.hypotheses()]


class BeamStepper:
    """Steps many BeamSearch objects in one native call, requests spread over threads."""

    def __init__(self, *, num_threads: int = 1) -> None:
        self._core = _core.BeamStepper(num_threads)

    def step(
        self,
        searches: Sequence[BeamSearch],
        logits: Logits,
        *,
        token_mask: TokenMask | None = None,
        mask_rows: npt.NDArray[np.bool_] | None = None,
    ) -> list[BeamStep]:
        """``logits`` rows: each search's ``rows_expected`` rows, concatenated in order.

        ``token_mask`` (structured output): int32 [rows, words], xgrammar's token bitmask, one
        row per logits row in the same order (a beam's row is its grammar state's mask). It
        applies to each beam's log-probs after the edits, as transformers'
        ``prefix_allowed_tokens_fn`` does: disallowed ids are -inf, allowed ones keep their
        log-prob (no renormalisation), so no beam extends with a disallowed id; EOS ends a
        hypothesis as before. If the edits ban every allowed id of a row, that row falls back
        to the allowed ids' unedited log-probs. ``mask_rows`` (bool [rows]): False rows are
        unconstrained; None masks every row. Errors as in ``BatchSampler.step``."""
        n = sum(s.num_beams for s in searches)
        rows = sum(s.rows_expected for s in searches)
        shape = getattr(logits, "shape", None)
        width = int(shape[1]) if shape is not None and len(shape) == 2 else None
        # One words count for all rows: enough for the widest vocabulary limit among the searches.
        limit = max((s._vocab_size if width is None else min(s._vocab_size, width) for s in searches), default=0)
        tm, mr = _token_mask_args(token_mask, mask_rows, rows, limit)
        parents = np.empty(n, np.int32)
        tokens = np.empty(n, np.int32)
        self._core.step([s._core for s in searches], logits, parents, tokens, tm, mr)
        out, at = [], 0
        for s in searches:
            out.append(BeamStep(parents[at : at + s.num_beams], tokens[at : at + s.num_beams], s.done))
            at += s.num_beams
        return out


_local = threading.local()


def _default_stepper() -> BeamStepper:
    stepper: BeamStepper | None = getattr(_local, "stepper", None)
    if stepper is None:
        stepper = _local.stepper = BeamStepper()
    return stepper
