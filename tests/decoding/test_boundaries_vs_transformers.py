"""Issue 19: thresholds exactly on a boundary, and EOS listed as a bad word, against
transformers' own processors on the same float32 inputs.

The core decides top-p, min-p and typical-p with transformers' float32 arithmetic (float32
probabilities, a float32 cumsum, the float32 value of transformers' threshold expression), with
the probabilities correctly rounded. torch's vectorised float32 softmax is itself a few ulps off
the correctly rounded value (and differs between CPU instruction sets and CUDA), so the property
tests run transformers' warpers with softmax / log_softmax computed in float64 and rounded to
float32: every other step (sort, cumsum, comparison, min_tokens_to_keep) is transformers' code.
See docs/exactness.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from transformers.generation import logits_process as lp

from tokenwire.decoding import BatchSampler, BeamParams, BeamSearch, SamplingParams

_real_softmax = torch.softmax
_real_log_softmax = torch.nn.functional.log_softmax


def _cr_softmax(x: torch.Tensor, dim: int = -1, **_: object) -> torch.Tensor:
    return _real_softmax(x.double(), dim).float()


def _cr_log_softmax(x: torch.Tensor, dim: int = -1, **_: object) -> torch.Tensor:
    return _real_log_softmax(x.double(), dim).float()


@contextlib.contextmanager
def _correctly_rounded_softmax() -> Iterator[None]:
    with (
        mock.patch.object(torch.Tensor, "softmax", _cr_softmax),
        mock.patch.object(torch, "softmax", _cr_softmax),
        mock.patch.object(torch.nn.functional, "log_softmax", _cr_log_softmax),
    ):
        yield


def _ours(params: SamplingParams, logits: np.ndarray, history: list[int] | None = None) -> np.ndarray:
    row = np.asarray(logits, np.float32).reshape(1, -1)
    s = BatchSampler(row.shape[1])
    s.add(0, params, history or [])
    return s.process(row)[0]


def _theirs(
    proc: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: np.ndarray, history: list[int] | None = None
) -> np.ndarray:
    ids = torch.tensor([history or [0]])
    return proc(ids, torch.from_numpy(np.asarray(logits, np.float32).reshape(1, -1)))[0].numpy()


def _assert_same_survivors(ours: np.ndarray, want: np.ndarray, logits: np.ndarray) -> None:
    """Same surviving ids; where a cut falls inside a group of tied logits, torch's sort order
    within the group is not specified, so there only the count and the tied value must agree."""
    kept_ours, kept_want = ~np.isneginf(ours), ~np.isneginf(want)
    differ = np.nonzero(kept_ours != kept_want)[0]
    if len(differ) == 0:
        return
    assert kept_ours.sum() == kept_want.sum(), f"kept {np.nonzero(kept_ours)[0]} vs {np.nonzero(kept_want)[0]}"
    assert len(set(logits[differ].tolist())) == 1, f"ids {differ.tolist()} differ"


# ---- the two defects of the issue, against transformers' classes as they are -----------------------


def test_top_p_at_an_exact_mass_boundary() -> None:
    """transformers' own TopPLogitsWarper test rows: 0.1 + 0.1 is 1 - 0.8 in float32."""
    for probs in ([0.3, 0.1, 0.1, 0.5], [0.15, 0.3, 0.3, 0.25]):
        logits = np.log(np.array(probs, np.float32))
        want = _theirs(lp.TopPLogitsWarper(0.8), logits)
        ours = _ours(SamplingParams(top_p=0.8, seed=0), logits)
        assert np.array_equal(np.isneginf(ours), np.isneginf(want)), (probs, ours, want)
    logits = np.log(np.array([0.3, 0.1, 0.1, 0.5], np.float32))
    assert np.nonzero(~np.isneginf(_ours(SamplingParams(top_p=0.8, seed=0), logits)))[0].tolist() == [0, 3]


def test_typical_and_min_p_on_transformers_test_rows() -> None:
    for probs in ([0.97, 0.01, 0.01, 0.01], [0.4, 0.2, 0.2, 0.2]):
        logits = np.log(np.array(probs, np.float32))
        want = _theirs(lp.TypicalLogitsWarper(0.5), logits)
        assert np.array_equal(np.isneginf(_ours(SamplingParams(typical_p=0.5, seed=0), logits)), np.isneginf(want))
    for probs in ([0.9, 0.09, 0.009, 0.001], [0.5, 0.25, 0.125, 0.125], [0.4, 0.2, 0.2, 0.2]):
        logits = np.log(np.array(probs, np.float32))
        for min_p in (0.1, 0.5, 0.25, 1.0):
            with _correctly_rounded_softmax():
                want = _theirs(lp.MinPLogitsWarper(min_p), logits)
            ours = _ours(SamplingParams(min_p=min_p, seed=0), logits)
            assert np.array_equal(np.isneginf(ours), np.isneginf(want)), (probs, min_p)


def test_min_p_where_torch_softmax_is_two_ulps_low() -> None:
    """The documented difference (docs/exactness.md): torch's float32 softmax of
    log([0.9, 0.09, 0.009, 0.001]) gives 0.08999999 for 0.09 (the correctly rounded value is
    0.09000000), so transformers' min_p 0.1 removes id 1 (p < 0.1 × 0.9) and the core keeps it."""
    logits = np.log(np.array([0.9, 0.09, 0.009, 0.001], np.float32))
    ours = _ours(SamplingParams(min_p=0.1, seed=0), logits)
    assert (~np.isneginf(ours)).tolist() == [True, True, False, False]
    with _correctly_rounded_softmax():
        assert (~np.isneginf(_theirs(lp.MinPLogitsWarper(0.1), logits))).tolist() == [True, True, False, False]


def test_eos_listed_as_a_bad_word_is_not_banned() -> None:
    """NoBadWords drops a one-id bad word equal to an EOS id; a longer word ending in EOS stays."""
    logits = np.arange(8, dtype=np.float32)
    words = [[4], [2], [6, 4], [1, 5]]
    for history in ([1, 3], [3, 6], [6, 1]):
        want = _theirs(lp.NoBadWordsLogitsProcessor(words, eos_token_id=[4, 7]), logits, history)
        for params in (
            SamplingParams(bad_words_ids=words, eos_token_ids=[4, 7], seed=0),
            SamplingParams(bad_words_ids=words, eos_token_ids=[4, 7], temperature=0.0),
        ):
            np.testing.assert_array_equal(_ours(params, logits, history), want)
    # greedy step: EOS, the largest logit, is chosen although [4] is listed
    s = BatchSampler(8)
    s.add("g", SamplingParams(bad_words_ids=[[4]], eos_token_ids=[4], temperature=0.0), [1])
    row = np.zeros((1, 8), np.float32)
    row[0, 4] = 5.0
    assert s.step(row).token_ids.tolist() == [4]


def test_beam_search_ends_on_eos_listed_as_a_bad_word() -> None:
    vocab, eos = 16, 4
    row = np.zeros((1, vocab), np.float32)
    row[0, eos], row[0, 9] = 6.0, 1.0
    params = BeamParams(num_beams=2, max_new_tokens=4, eos_token_ids=[eos], bad_words_ids=[[eos], [9, 9]])
    s = BeamSearch(params, [1, 2], vocab)
    while not s.done:
        s.step(np.repeat(row, s.rows_expected, 0))
    best = s.hypotheses()[0]
    assert best.token_ids == [eos] and best.finished


# ---- property tests: thresholds placed exactly on float32 boundaries --------------------------------

_probs = st.lists(st.integers(1, 12), min_size=2, max_size=10).map(lambda w: np.array(w, np.float64) / sum(w))
_free = st.lists(st.floats(-6.0, 6.0, width=32), min_size=2, max_size=10).map(lambda v: np.array(v, np.float64))
_rows = st.one_of(_probs.map(np.log), _free).map(lambda x: x.astype(np.float32))
_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _f32_probs(logits: np.ndarray) -> np.ndarray:
    return _cr_softmax(torch.from_numpy(logits)).numpy()


def _near(x: float) -> list[float]:
    return [np.nextafter(x, -np.inf), x, np.nextafter(x, np.inf)]


@_SETTINGS
@given(_rows, st.data())
def test_top_p_on_cumulative_mass_boundaries(logits: np.ndarray, data: st.DataObject) -> None:
    cum = np.cumsum(np.sort(_f32_probs(logits)).astype(np.float64)).astype(np.float32)  # torch's CPU cumsum
    j = data.draw(st.integers(0, len(cum) - 1))
    for top_p in _near(1.0 - float(cum[j])) + [1.0 - float(np.float32(cum[j]) * np.float32(1 + 2**-23))]:
        assume(0.0 < top_p < 1.0)
        with _correctly_rounded_softmax():
            want = _theirs(lp.TopPLogitsWarper(top_p), logits)
        _assert_same_survivors(_ours(SamplingParams(top_p=top_p, seed=0), logits), want, logits)


@_SETTINGS
@given(_rows, st.data())
def test_min_p_on_probability_ratio_boundaries(logits: np.ndarray, data: st.DataObject) -> None:
    p = _f32_probs(logits)
    i = data.draw(st.integers(0, len(p) - 1))
    assume(p[i] > 0)
    for min_p in _near(float(p[i]) / float(p.max())):
        assume(0.0 < min_p <= 1.0)
        with _correctly_rounded_softmax():
            want = _theirs(lp.MinPLogitsWarper(min_p), logits)
        _assert_same_survivors(_ours(SamplingParams(min_p=min_p, seed=0), logits), want, logits)


@_SETTINGS
@given(_rows, st.data())
def test_typical_p_on_cumulative_mass_boundaries(logits: np.ndarray, data: st.DataObject) -> None:
    x = torch.from_numpy(logits)
    normalized = _cr_log_softmax(x)
    ent = -(normalized * torch.exp(normalized)).nansum()
    keys = torch.abs(-normalized - ent)
    # The entropy is a float32 sum in torch's own SIMD order of torch's own exp: the core's
    # (correctly rounded terms, summed in double) can differ in the last bits. Keys that differ
    # by less than that can swap; such rows say nothing about the mass boundary, so skip them.
    distinct = torch.unique(keys[torch.isfinite(keys)])
    slack = 8 * float(np.spacing(np.float32(abs(float(ent)) + 1.0)))
    assume(bool((distinct.diff() > slack).all()) if len(distinct) > 1 else True)
    order = torch.sort(keys).indices
    cum = _cr_softmax(x[order]).cumsum(-1)
    j = data.draw(st.integers(0, len(cum) - 1))
    for mass in _near(float(cum[j])):
        assume(0.0 < mass < 1.0)
        with _correctly_rounded_softmax():
            want = _theirs(lp.TypicalLogitsWarper(mass), logits)
        _assert_same_survivors(_ours(SamplingParams(typical_p=mass, seed=0), logits), want, logits)


@pytest.mark.parametrize("top_p", [0.1, 0.3, 0.5, 0.8, 0.9, 0.95])
def test_top_p_exact_on_uniform_rows(top_p: float) -> None:
    """Rows of equal logits (and -inf): torch's own softmax is exact there (1/n), so these
    boundaries hold against the unpatched warper too."""
    for n in (2, 3, 4, 5, 8, 10, 20):
        logits = np.zeros(n + 2, np.float32)
        logits[-2:] = -np.inf
        want = _theirs(lp.TopPLogitsWarper(top_p), logits)
        _assert_same_survivors(_ours(SamplingParams(top_p=top_p, seed=0), logits), want, logits)
