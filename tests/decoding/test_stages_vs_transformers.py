"""Each stage (and a whole chain) equals transformers' LogitsProcessor on random logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from transformers.generation import logits_process as lp

from tokenwire.decoding import BatchSampler, SamplingParams

V = 3000
B = 4
PROMPT_LEN = 12
GEN_LEN = 5


def _history(b: int, rng: np.random.Generator) -> list[int]:
    return [int(t) for t in rng.integers(0, 40, PROMPT_LEN + GEN_LEN)]  # small range: repeats happen


def _run(params: SamplingParams, hf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    histories = [_history(b, rng) for b in range(B)]
    logits = torch.from_numpy(rng.normal(0.0, 3.0, (B, V)).astype(np.float32)).to(dtype)
    s = BatchSampler(V)
    for b, h in enumerate(histories):
        s.add(b, params, h[:PROMPT_LEN])
        s.append(b, h[PROMPT_LEN:])
    ours = s.process(logits)
    want = hf(torch.tensor(histories), logits.float()).numpy()
    _assert_same_survivors(ours, want, logits.float().numpy())
    finite = ~np.isneginf(want) & ~np.isneginf(ours)
    np.testing.assert_allclose(ours[finite], want[finite], rtol=1e-5, atol=1e-5)


def _assert_same_survivors(ours: np.ndarray, want: np.ndarray, logits: np.ndarray) -> None:
    """Same surviving ids, except that where a cut falls inside a group of tied logits (common
    in bfloat16) torch's unstable sort picks which tied ids survive: there only the count and
    the tied value must agree."""
    for b in range(ours.shape[0]):
        kept_ours, kept_want = ~np.isneginf(ours[b]), ~np.isneginf(want[b])
        differ = np.nonzero(kept_ours != kept_want)[0]
        if len(differ) == 0:
            continue
        assert kept_ours.sum() == kept_want.sum(), f"row {b}: {kept_ours.sum()} vs {kept_want.sum()} survivors"
        assert len(set(logits[b, differ].tolist())) == 1, f"row {b}: ids {differ.tolist()} differ"


CASES: list[tuple[str, SamplingParams, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
    (
        "repetition",
        SamplingParams(repetition_penalty=1.3),
        lambda ids, x: lp.RepetitionPenaltyLogitsProcessor(1.3)(ids, x),
    ),
    (
        "no_repeat_ngram",
        SamplingParams(no_repeat_ngram_size=2),
        lambda ids, x: lp.NoRepeatNGramLogitsProcessor(2)(ids, x),
    ),
    (
        "bad_words",
        SamplingParams(bad_words_ids=[[7], [3, 9], [1, 2, 5]], eos_token_ids=[0]),
        lambda ids, x: lp.NoBadWordsLogitsProcessor([[7], [3, 9], [1, 2, 5]], eos_token_id=0)(ids, x),
    ),
    (
        "min_new_tokens",
        SamplingParams(min_new_tokens=10, eos_token_ids=[4, 11]),
        lambda ids, x: lp.MinNewTokensLengthLogitsProcessor(PROMPT_LEN, 10, [4, 11])(ids, x),
    ),
    (
        "logit_bias",
        SamplingParams(logit_bias={5: 3.0, 17: -2.5}),
        lambda ids, x: lp.SequenceBiasLogitsProcessor({(5,): 3.0, (17,): -2.5})(ids, x),
    ),
    ("temperature", SamplingParams(temperature=0.7), lambda ids, x: lp.TemperatureLogitsWarper(0.7)(ids, x)),
    ("top_k", SamplingParams(top_k=50), lambda ids, x: lp.TopKLogitsWarper(50)(ids, x)),
    ("top_p", SamplingParams(top_p=0.9), lambda ids, x: lp.TopPLogitsWarper(0.9)(ids, x)),
    ("top_p_dense", SamplingParams(top_p=0.3), lambda ids, x: lp.TopPLogitsWarper(0.3)(ids, x)),
    ("min_p", SamplingParams(min_p=0.05), lambda ids, x: lp.MinPLogitsWarper(0.05)(ids, x)),
    ("typical", SamplingParams(typical_p=0.8), lambda ids, x: lp.TypicalLogitsWarper(0.8)(ids, x)),
    (
        "greedy_is_edits_only",
        SamplingParams(temperature=0.0, top_k=3, repetition_penalty=1.2),
        lambda ids, x: lp.RepetitionPenaltyLogitsProcessor(1.2)(ids, x),
    ),
    (
        "chain",
        SamplingParams(
            repetition_penalty=1.1,
            no_repeat_ngram_size=3,
            temperature=0.8,
            top_k=50,
            top_p=0.9,
            min_p=0.02,
            typical_p=0.95,
        ),
        lambda ids, x: lp.LogitsProcessorList(
            [
                lp.RepetitionPenaltyLogitsProcessor(1.1),
                lp.NoRepeatNGramLogitsProcessor(3),
                lp.TemperatureLogitsWarper(0.8),
                lp.TopKLogitsWarper(50),
                lp.TopPLogitsWarper(0.9),
                lp.MinPLogitsWarper(0.02),
                lp.TypicalLogitsWarper(0.95),
            ]
        )(ids, x),
    ),
]


@pytest.mark.parametrize(("name", "params", "hf"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_stage_equals_transformers(
    name: str, params: SamplingParams, hf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dtype: torch.dtype
) -> None:
    _run(params, hf, dtype)


def test_vocabulary_guard_with_a_wider_output_layer() -> None:
    s = BatchSampler(32000)
    s.add("g", SamplingParams(temperature=0.0), [])
    s.add("t", SamplingParams(top_k=5, seed=1), [])
    s.add("d", SamplingParams(seed=2), [])
    logits = torch.randn(3, 32064)
    logits[:, 32000:] = 100.0  # padding ids the tokenizer does not have, made irresistible
    for _ in range(20):
        assert (s.step(logits, advance=False).token_ids < 32000).all()
    assert np.isneginf(s.process(logits)[:, 32000:]).all()
