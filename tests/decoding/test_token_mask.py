"""The token mask (pipeline step 6b, structured output): a masked step equals the unconstrained
step on pre-masked logits (disallowed ids at -inf); beams equal transformers'
prefix_allowed_tokens_fn; the chosen token is always allowed; errors are loud."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from tokenwire.decoding import BatchSampler, BeamParams, BeamSearch, BeamStepper, SamplingParams

V = 3000
B = 4


def _pack(allowed: np.ndarray, words: int | None = None) -> np.ndarray:
    """[rows, V] bool → [rows, words] int32 in xgrammar's layout (bit t % 32 of word t // 32)."""
    rows, v = allowed.shape
    words = words if words is not None else -(-v // 32)
    bits = np.zeros((rows, words * 32), bool)
    bits[:, :v] = allowed
    return np.packbits(bits, axis=1, bitorder="little").view("<u4").astype(np.uint32).view(np.int32).copy()


def _unpack(mask: np.ndarray, v: int) -> np.ndarray:
    return np.unpackbits(mask.view(np.uint8), axis=1, bitorder="little")[:, :v].astype(bool)


def _allowed(rng: np.random.Generator, logits: np.ndarray, kind: str) -> np.ndarray:
    rows, v = logits.shape
    if kind == "dense":
        a = rng.random((rows, v)) < 0.5
    elif kind == "sparse":
        a = rng.random((rows, v)) < 0.01
    elif kind == "single":
        a = np.zeros((rows, v), bool)
        a[np.arange(rows), rng.integers(0, v, rows)] = True
    else:  # "outside_topk": only ids ranked below the 100 best logits
        a = rng.random((rows, v)) < 0.2
        top = np.argsort(-logits, axis=1)[:, :100]
        np.put_along_axis(a, top, False, axis=1)
    a[np.arange(rows), rng.integers(0, v, rows)] = True  # never empty
    return a


def _premask(logits: torch.Tensor, allowed: np.ndarray) -> torch.Tensor:
    out = logits.clone()
    out[torch.from_numpy(~allowed)] = -float("inf")
    return out


PARAMS = {
    "greedy": SamplingParams(greedy=True, logprobs=True, top_logprobs=3),
    "greedy_edits": SamplingParams(
        greedy=True, repetition_penalty=1.4, logit_bias={5: 3.0, 17: -2.0}, bad_words_ids=[[9], [3, 4]], logprobs=True
    ),
    "temperature_top_k": SamplingParams(temperature=0.7, top_k=20, logprobs=True, top_logprobs=4),
    "top_p": SamplingParams(top_p=0.8, repetition_penalty=1.2, logprobs=True),
    "min_p": SamplingParams(min_p=0.05, temperature=1.3, logprobs=True),
    "typical_p": SamplingParams(typical_p=0.9, logit_bias={7: 2.0}, logprobs=True, top_logprobs=2),
    "everything": SamplingParams(
        temperature=0.9,
        top_k=50,
        top_p=0.95,
        min_p=0.01,
        repetition_penalty=1.3,
        frequency_penalty=0.3,
        presence_penalty=0.2,
        no_repeat_ngram_size=2,
        logit_bias={11: 4.0},
        bad_words_ids=[[8]],
        logprobs=True,
        top_logprobs=5,
    ),
    "dense_no_top_k": SamplingParams(temperature=1.1, logprobs=True),
    "raw_logprobs": SamplingParams(top_k=10, logprobs=True, top_logprobs=3, logprobs_mode="raw"),
}
KINDS = ["dense", "sparse", "single", "outside_topk"]


def _sampler(params: SamplingParams, seed: int, rows: int = B) -> BatchSampler:
    s = BatchSampler(V, num_threads=2)
    for b in range(rows):
        s.add(b, SamplingParams(**{**params.__dict__, "seed": seed * 10 + b}), [3, 4, 5, 9, 11, 3, 4])
    return s


def _assert_same(a: object, b: object) -> None:
    for name in ("token_ids", "logprobs", "ranks", "top_token_ids", "top_logprobs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(PARAMS))
def test_masked_step_equals_premasked_logits(name: str, kind: str, dtype: torch.dtype) -> None:
    params = PARAMS[name]
    for seed in range(3):
        rng = np.random.default_rng(zlib.crc32(f"{name}{kind}{seed}".encode()))
        masked, ref = _sampler(params, seed), _sampler(params, seed)
        for _ in range(3):  # several steps: the history (penalties, n-grams) moves on
            logits = torch.from_numpy(rng.normal(0, 3, (B, V)).astype(np.float32)).to(dtype)
            allowed = _allowed(rng, logits.float().numpy(), kind)
            mask = _pack(allowed)
            pre = _premask(logits, allowed)
            np.testing.assert_array_equal(masked.process(logits, token_mask=mask), ref.process(pre))
            got, want = masked.step(logits, token_mask=mask), ref.step(pre)
            if params.logprobs_mode == "raw":  # raw: the model's distribution, not the masked one
                np.testing.assert_array_equal(got.token_ids, want.token_ids)
                raw = torch.log_softmax(logits.float(), -1).numpy()
                np.testing.assert_allclose(got.logprobs, raw[np.arange(B), got.token_ids], atol=1e-5)
            else:
                _assert_same(got, want)
            assert allowed[np.arange(B), got.token_ids].all()


def test_unmasked_rows_mixed_with_masked_rows() -> None:
    params = PARAMS["everything"]
    rng = np.random.default_rng(5)
    masked, ref = _sampler(params, 1), _sampler(params, 1)
    for _ in range(4):
        logits = torch.from_numpy(rng.normal(0, 3, (B, V)).astype(np.float32))
        allowed = _allowed(rng, logits.numpy(), "sparse")
        allowed[1] = False  # an inactive row's mask row is never read, even an empty one
        rows = np.array([True, False, True, False])
        pre = logits.clone()
        pre[rows] = _premask(logits, allowed)[rows]
        got = masked.step(logits, token_mask=_pack(allowed), mask_rows=rows)
        _assert_same(got, ref.step(pre))
        # and an unconstrained step (token_mask=None) still equals a plain step
        _assert_same(masked.step(logits, advance=False), ref.step(logits, advance=False))


def test_torch_int32_mask_and_wider_masks_are_accepted() -> None:
    rng = np.random.default_rng(6)
    logits = torch.from_numpy(rng.normal(0, 3, (B, V + 5)).astype(np.float32))  # model wider than vocab
    allowed = _allowed(rng, logits.numpy()[:, :V], "sparse")
    s = _sampler(PARAMS["greedy"], 0)
    a = s.step(logits, token_mask=torch.from_numpy(_pack(allowed, words=200)), advance=False)
    b = s.step(_premask(logits[:, :V], allowed), advance=False)
    _assert_same(a, b)


def test_fallback_when_the_edits_ban_every_allowed_token() -> None:
    x = np.array([[1.0, 5.0, 3.0, 4.0, 2.0]], np.float32)
    allowed = np.array([[False, False, True, False, True]])
    for greedy in (True, False):
        s = BatchSampler(5)
        s.add("r", SamplingParams(greedy=greedy, seed=1, bad_words_ids=[[2], [4]], logprobs=True), [0])
        r = s.step(x, token_mask=_pack(allowed))
        # the edits give way: the allowed ids with their unedited logits (3 and 2)
        probs = torch.softmax(torch.tensor([3.0, 2.0]), -1)
        assert r.token_ids[0] in (2, 4)
        want = probs[0 if r.token_ids[0] == 2 else 1].log().item()
        assert r.logprobs[0] == pytest.approx(want, abs=1e-6)
        if greedy:
            assert r.token_ids[0] == 2
    # bad_words bans the only allowed id: it is produced anyway
    s = BatchSampler(5)
    s.add("r", SamplingParams(greedy=True, bad_words_ids=[[3]], logprobs=True), [0])
    r = s.step(x, token_mask=_pack(np.array([[False, False, False, True, False]])))
    assert r.token_ids[0] == 3 and r.logprobs[0] == 0.0


def test_errors() -> None:
    s = _sampler(PARAMS["greedy"], 0, rows=2)
    x = np.random.default_rng(7).normal(size=(2, V)).astype(np.float32)
    ok = _pack(np.ones((2, V), bool))
    empty = ok.copy()
    empty[1] = 0
    with pytest.raises(ValueError, match="row 1 allows no token"):
        s.step(x, token_mask=empty)
    assert s.generated(0) == 0 and s.generated(1) == 0  # checked before any row moved
    s.step(x, token_mask=empty, mask_rows=np.array([True, False]), advance=False)  # inactive: fine
    beyond = np.zeros((2, 200), np.int32)
    beyond[:, 100] = 1  # only id 3200, beyond the vocabulary
    with pytest.raises(ValueError, match="row 0 allows no token id below 3000"):
        s.step(x, token_mask=beyond)
    with pytest.raises(TypeError, match="dtype int32"):
        s.step(x, token_mask=ok.astype(np.int64))
    with pytest.raises(ValueError, match="needs at least ceil"):
        s.step(x, token_mask=ok[:, :50].copy())
    with pytest.raises(ValueError, match="one row per logits row"):
        s.step(x, token_mask=ok[:1])
    with pytest.raises(ValueError, match="C-contiguous"):
        s.step(x, token_mask=np.asfortranarray(ok))
    with pytest.raises(TypeError, match="numpy int32 array"):
        s.step(x, token_mask=ok.tolist())
    with pytest.raises(TypeError, match="mask_rows must be a numpy bool array"):
        s.step(x, token_mask=ok, mask_rows=np.array([1, 0]))
    with pytest.raises(ValueError, match="mask_rows must have shape"):
        s.step(x, token_mask=ok, mask_rows=np.array([True]))
    with pytest.raises(ValueError, match="without a token_mask"):
        s.step(x, mask_rows=np.array([True, True]))
    with pytest.raises(ValueError, match="row 1 allows no token"):
        s.process(x, token_mask=empty)
    # the core checks too (the C++ boundary, bypassing the Python checks)
    slots = np.array([0, 1], np.int32)
    outs = [np.empty(2, np.int32), np.empty(2, np.float32), np.empty(2, np.int32)]
    tops = [np.empty((2, 0), np.int32), np.empty((2, 0), np.float32)]
    with pytest.raises(ValueError, match=r"needs at least ceil\(3000 / 32\) = 94"):
        s._core.step(x, slots, *outs, *tops, False, ok[:, :93].copy(), None)
    with pytest.raises(TypeError, match="dtype int32"):
        s._core.step(x, slots, *outs, *tops, False, ok.view(np.float32), None)
    with pytest.raises(ValueError, match="token_mask has 1 rows"):
        s._core.step(x, slots, *outs, *tops, False, ok[:1].copy(), None)
    with pytest.raises(ValueError, match="row 1 allows no token"):
        s._core.step(x, slots, *outs, *tops, False, empty, None)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    vocab=st.integers(1, 300),
    density=st.floats(0.0, 1.0),
    greedy=st.booleans(),
    top_k=st.integers(0, 5),
    ban=st.booleans(),
)
def test_the_chosen_token_is_always_allowed(
    seed: int, vocab: int, density: float, greedy: bool, top_k: int, ban: bool
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 4, (3, vocab + 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = -np.inf
    allowed = rng.random((3, vocab)) < density
    allowed[np.arange(3), rng.integers(0, vocab, 3)] = True
    bad = [[int(t)] for t in np.nonzero(allowed[0])[0][:3]] if ban else []
    s = BatchSampler(vocab)
    for b in range(3):
        s.add(b, SamplingParams(greedy=greedy, top_k=top_k, seed=seed + b, bad_words_ids=bad), [0])
    for _ in range(3):
        r = s.step(x, token_mask=_pack(allowed))
        assert allowed[np.arange(3), r.token_ids].all()


# ---- beam search -------------------------------------------------------------------------

BV, PAD, EOS = 1000, 0, 2


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=BV,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=EOS,
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(8.0)
    return m


def _allowed_after(seq: list[int], density: float) -> np.ndarray:
    """A deterministic allow-list for a prefix (a stand-in for a grammar state); EOS allowed."""
    rng = np.random.default_rng(zlib.crc32(np.asarray(seq, np.int64).tobytes()))
    a = rng.random(BV) < density
    a[EOS] = True
    return a


@pytest.mark.parametrize(
    "cfg",
    [
        dict(num_beams=4, length_penalty=1.0, early_stopping=False, num_return_sequences=2),
        dict(num_beams=3, length_penalty=0.5, early_stopping=True, num_return_sequences=3, repetition_penalty=1.5),
        dict(num_beams=2, length_penalty=2.0, early_stopping="never", num_return_sequences=2, no_repeat_ngram_size=2),
    ],
    ids=["0", "1", "2"],
)
def test_beam_search_equals_transformers_prefix_allowed_tokens(model: LlamaForCausalLM, cfg: dict[str, object]) -> None:
    density = 0.3
    g = torch.Generator().manual_seed(len(str(cfg)))
    prompts = torch.randint(3, BV, (2, 6), generator=g)
    max_new = 8

    def allowed_fn(batch_id: int, ids: torch.Tensor) -> list[int]:
        return np.nonzero(_allowed_after(ids.tolist(), density))[0].tolist()

    with torch.no_grad():
        hf = model.generate(
            prompts,
            do_sample=False,
            max_new_tokens=max_new,
            pad_token_id=PAD,
            eos_token_id=EOS,
            output_scores=True,
            return_dict_in_generate=True,
            prefix_allowed_tokens_fn=allowed_fn,
            **cfg,
        )  # type: ignore[arg-type]
    params = BeamParams(max_new_tokens=max_new, eos_token_ids=[EOS], **cfg)  # type: ignore[arg-type]
    searches = [BeamSearch(params, p.tolist(), BV) for p in prompts]
    seqs = [[p.tolist()] for p in prompts]
    stepper = BeamStepper(num_threads=2)
    while not all(s.done for s in searches):
        live = [i for i, s in enumerate(searches) if not s.done]
        batch = [row for i in live for row in seqs[i]]
        mask = _pack(np.stack([_allowed_after(row, density) for row in batch]))
        with torch.no_grad():
            logits = model(torch.tensor(batch)).logits[:, -1, :]
        for i, stp in zip(live, stepper.step([searches[i] for i in live], logits, token_mask=mask), strict=True):
            for p, t in zip(stp.parents, stp.tokens, strict=True):
                assert _allowed_after(seqs[i][int(p)], density)[int(t)]
            seqs[i] = [seqs[i][int(p)] + [int(t)] for p, t in zip(stp.parents, stp.tokens, strict=True)]
    n = int(cfg["num_return_sequences"])  # type: ignore[call-overload]
    for b, s in enumerate(searches):
        for r, h in enumerate(s.hypotheses()):
            want = hf.sequences[b * n + r, prompts.shape[1] :].tolist()
            assert want[: len(h.token_ids)] == h.token_ids, f"prompt {b}, hypothesis {r}"
            assert h.score == pytest.approx(float(hf.sequences_scores[b * n + r]), rel=1e-6, abs=1e-5)


def test_beam_mask_rows_fallback_and_errors() -> None:
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.normal(0, 3, (2, V)).astype(np.float32))
    allowed = _allowed(rng, x.numpy(), "outside_topk")
    stepper = BeamStepper()
    a = BeamSearch(BeamParams(num_beams=3, max_new_tokens=4), [1, 2], V)
    b = BeamSearch(BeamParams(num_beams=2, max_new_tokens=4), [1, 2], V)
    steps = stepper.step([a, b], x, token_mask=_pack(allowed), mask_rows=np.array([True, False]))
    assert allowed[0, steps[0].tokens].all()
    log_probs = torch.log_softmax(x, -1)
    # a: the best allowed ids by the row's own log_softmax (not renormalised over the mask)
    want = torch.topk(_premask(log_probs, allowed)[0], 3)
    assert steps[0].tokens.tolist() == want.indices.tolist()
    assert steps[1].tokens.tolist() == torch.topk(log_probs[1], 2).indices.tolist()  # unmasked
    # BeamSearch.step takes the mask too; bad_words banning the only allowed id falls back to it
    c = BeamSearch(BeamParams(num_beams=1, max_new_tokens=2, bad_words_ids=[[7]]), [1], V)
    only7 = np.zeros((1, V), bool)
    only7[0, 7] = True
    assert c.step(x[:1], token_mask=_pack(only7)).tokens.tolist() == [7]
    d = BeamSearch(BeamParams(num_beams=2, max_new_tokens=2), [1], V)
    with pytest.raises(ValueError, match="row 0 allows no token"):
        d.step(x[:1], token_mask=np.zeros((1, 94), np.int32))
    with pytest.raises(ValueError, match="one row per logits row"):
        d.step(x[:1], token_mask=np.zeros((2, 94), np.int32))
    with pytest.raises(ValueError, match="needs at least"):
        d.step(x[:1], token_mask=np.zeros((1, 93), np.int32))
    assert d.generated == 0


# ---- a real xgrammar bitmask ---------------------------------------------------------------


def test_xgrammar_bitmask(tmp_path: Path) -> None:
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoConfig, AutoTokenizer

    from tokenwire.models.demo import build_demo_model

    path = build_demo_model("tiny-llama", tmp_path)
    tok = AutoTokenizer.from_pretrained(path)
    vocab = AutoConfig.from_pretrained(path).vocab_size
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(schema))
    matcher = xgr.GrammarMatcher(compiled)
    bm = xgr.allocate_token_bitmask(1, info.vocab_size)
    s = BatchSampler(len(tok))
    s.add("r", SamplingParams(temperature=1.5, seed=3, logprobs=True), [])
    rng = np.random.default_rng(10)
    for _ in range(6):
        if matcher.is_terminated():
            break
        matcher.fill_next_token_bitmask(bm)
        mask = bm.numpy()
        logits = rng.normal(0, 3, (1, vocab)).astype(np.float32)
        t = int(s.step(logits, token_mask=mask).token_ids[0])
        assert _unpack(mask, vocab)[0, t], f"token {t} is not allowed by the grammar"
        assert matcher.accept_token(t)
