"""Beam search equals transformers' generate(num_beams=...) on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tokenwire.decoding import BeamParams, BeamSearch, BeamStepper

V = 1000
WIDE_V = 50257
PAD = 0


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(8.0)  # peakier distributions: beams diverge and EOS gets chosen
    return m


@pytest.fixture(scope="module")
def wide_model() -> LlamaForCausalLM:
    """GPT-2's vocabulary size: 49 whole 1024-entry blocks of the core's row pass and a ragged tail."""
    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=WIDE_V,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(12.0)  # peakier distributions
    return m


def _eos_for(model: LlamaForCausalLM, prompts: torch.Tensor) -> int:
    """A token the beams will actually produce: greedy's third token of the first prompt."""
    with torch.no_grad():
        out = model.generate(
            prompts[:1], do_sample=False, max_new_tokens=3, min_new_tokens=3, pad_token_id=PAD, eos_token_id=None
        )
    return int(out[0, -1])


def _ours(model: LlamaForCausalLM, prompts: torch.Tensor, params: BeamParams) -> list[list[tuple[list[int], float]]]:
    searches = [BeamSearch(params, p.tolist(), model.config.vocab_size) for p in prompts]
    seqs = [[p.tolist()] for p in prompts]  # live rows per search
    stepper = BeamStepper(num_threads=2)
    while not all(s.done for s in searches):
        live = [i for i, s in enumerate(searches) if not s.done]
        batch = [row for i in live for row in seqs[i]]
        with torch.no_grad():
            logits = model(torch.tensor(batch)).logits[:, -1, :]  # a strided view, passed as is
        for i, st in zip(live, stepper.step([searches[i] for i in live], logits), strict=True):
            seqs[i] = [seqs[i][int(p)] + [int(t)] for p, t in zip(st.parents, st.tokens, strict=True)]
    return [[(h.token_ids, h.score) for h in s.hypotheses()] for s in searches]


CONFIGS = [
    dict(num_beams=4, length_penalty=1.0, early_stopping=False, num_return_sequences=2),
    dict(num_beams=3, length_penalty=0.5, early_stopping=True, num_return_sequences=3),
    dict(num_beams=4, length_penalty=2.0, early_stopping="never", num_return_sequences=4),
    dict(num_beams=2, length_penalty=-1.0, early_stopping=False, num_return_sequences=1),
    dict(num_beams=5, length_penalty=1.0, early_stopping="never", num_return_sequences=2),
    dict(
        num_beams=3,
        length_penalty=1.0,
        early_stopping=False,
        num_return_sequences=2,
        repetition_penalty=1.5,
        no_repeat_ngram_size=2,
    ),
]


def _check_against_transformers(model: LlamaForCausalLM, cfg: dict[str, object]) -> None:
    g = torch.Generator().manual_seed(len(str(cfg)))
    prompts = torch.randint(3, min(V, model.config.vocab_size), (2, 6), generator=g)
    eos = _eos_for(model, prompts)
    max_new = 10
    with torch.no_grad():
        hf = model.generate(
            prompts,
            do_sample=False,
            max_new_tokens=max_new,
            pad_token_id=PAD,
            eos_token_id=eos,
            output_scores=True,
            return_dict_in_generate=True,
            **cfg,
        )  # type: ignore[arg-type]
    params = BeamParams(max_new_tokens=max_new, eos_token_ids=[eos], **cfg)  # type: ignore[arg-type]
    ours = _ours(model, prompts, params)
    n = int(cfg["num_return_sequences"])  # type: ignore[call-overload]
    for b in range(len(prompts)):
        for r in range(n):
            tokens, score = ours[b][r]
            want = hf.sequences[b * n + r, prompts.shape[1] :].tolist()
            assert want[: len(tokens)] == tokens, f"prompt {b}, hypothesis {r}"
            fill = PAD or eos  # transformers fills with `pad_token_id or eos`: 0 is falsy
            assert all(t == fill for t in want[len(tokens) :])
            # float32 scores: length_penalty < 0 multiplies them into the hundreds, where one ulp is 3e-5
            assert score == pytest.approx(float(hf.sequences_scores[b * n + r]), rel=1e-6, abs=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_beam_search_equals_transformers(model: LlamaForCausalLM, cfg: dict[str, object]) -> None:
    _check_against_transformers(model, cfg)


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2], CONFIGS[5]], ids=["0", "2", "5"])
def test_beam_search_equals_transformers_wide_vocabulary(wide_model: LlamaForCausalLM, cfg: dict[str, object]) -> None:
    _check_against_transformers(wide_model, cfg)


def test_beam_log_probs_match_log_softmax() -> None:
    """One step from a shared prompt: the running scores are log_softmax values, as exact as
    float32 output allows (the row's log-sum-exp itself is good to ~2e-7; torch's float32
    log_softmax, summing in float, is off by up to ~3e-6 on these rows)."""
    for vocab in (32000, 50257, 128256):
        g = torch.Generator().manual_seed(vocab)
        for scale in (1.0, 3.0, 12.0, -1.0):
            x = torch.randn(1, vocab, generator=g) * abs(scale)
            if scale < 0:  # whole stretches of the row far below the top (skipped), some -inf
                x[0, 1000:20000] -= 60.0
                x[0, 30000:30100] = -float("inf")
            s = BeamSearch(BeamParams(num_beams=4, max_new_tokens=5), [1, 2], vocab)
            st = s.step(x)
            want_vals, want_ids = torch.topk(torch.log_softmax(x[0], -1), 4)
            assert st.tokens.tolist() == want_ids.tolist()
            s2 = BeamSearch(BeamParams(num_beams=4, max_new_tokens=1, num_return_sequences=4), [1, 2], vocab)
            s2.step(x)
            scores = [h.score for h in s2.hypotheses()]
            exact = torch.log_softmax(x[0].double(), -1)[want_ids].tolist()
            assert scores == pytest.approx(exact, abs=1e-6), (vocab, scale)
            assert scores == pytest.approx(want_vals.tolist(), abs=1e-5), (vocab, scale)


def test_cut_short_search_returns_running_beams(model: LlamaForCausalLM) -> None:
    s = BeamSearch(BeamParams(num_beams=2, max_new_tokens=50, num_return_sequences=2), [5, 6, 7], V)
    st = s.step(torch.randn(1, V))
    assert st.parents.tolist() == [0, 0] and not st.done
    s.step(torch.randn(2, V))
    hyps = s.hypotheses()
    assert len(hyps) == 2 and not hyps[0].finished and len(hyps[0].token_ids) == 2
    with pytest.raises(ValueError, match="expect 2"):
        s.step(torch.randn(3, V))
    assert np.isfinite(hyps[0].score)
