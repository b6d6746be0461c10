"""Sampling: frequencies, seeds, log-probabilities and the array boundary."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tokenwire.decoding import BatchSampler, SamplingParams


def _chi_square_ok(counts: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    support = probs > 0
    assert counts[~support].sum() == 0, "sampled an id the processed distribution excludes"
    expected = probs[support] * n
    stat = float(((counts[support] - expected) ** 2 / expected).sum())
    df = int(support.sum()) - 1
    return stat, df + 5.0 * np.sqrt(2.0 * df)  # ~p < 1e-4 for these df: fixed seeds, not flaky


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7, top_k=12, top_p=0.9),
        SamplingParams(min_p=0.02),
        SamplingParams(typical_p=0.9),
        SamplingParams(temperature=1.3, repetition_penalty=1.5),
    ],
    ids=["topk_topp", "min_p", "typical", "dense"],
)
def test_frequencies_match_the_processed_distribution(params: SamplingParams) -> None:
    V, N = 30, 40000
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (1, V)).astype(np.float32)
    s = BatchSampler(V)
    for i in range(N):
        s.add(i, SamplingParams(**{**params.__dict__, "seed": i}), [3, 4])
    probs = torch.softmax(torch.from_numpy(s.process(np.broadcast_to(logits, (1, V)), rows=[0])[0]), -1).numpy()
    tokens = s.step(np.broadcast_to(logits, (N, V))).token_ids  # one row, zero copy, N seeds
    stat, limit = _chi_square_ok(np.bincount(tokens, minlength=V), probs)
    assert stat < limit
    # and along positions of one seed
    one = BatchSampler(V)
    one.add("r", SamplingParams(**{**params.__dict__, "seed": 7, "repetition_penalty": 1.0}), [])
    probs1 = torch.softmax(torch.from_numpy(one.process(logits)[0]), -1).numpy()
    seq = [int(one.step(logits).token_ids[0]) for _ in range(N // 4)]
    stat, limit = _chi_square_ok(np.bincount(seq, minlength=V), probs1)
    assert stat < limit


def test_same_seed_same_tokens_at_any_batch_position_size_and_thread_count() -> None:
    V, steps = 5000, 12
    rng = np.random.default_rng(2)
    stream = rng.normal(0, 2, (steps, V)).astype(np.float32)
    mine = SamplingParams(temperature=0.9, top_p=0.95, top_k=100, seed=1234, repetition_penalty=1.1)

    def run(batch: int, pos: int, threads: int, dtype: torch.dtype = torch.float32) -> list[int]:
        s = BatchSampler(V, num_threads=threads)
        for i in range(batch):
            s.add(i, mine if i == pos else SamplingParams(seed=100 + i, top_k=5), [1, 2, 3])
        out = []
        for t in range(steps):
            x = torch.from_numpy(rng.normal(0, 2, (batch, V)).astype(np.float32))
            x[pos] = torch.from_numpy(stream[t])
            out.append(int(s.step(x.to(dtype)).token_ids[pos]))
        return out

    ref = run(1, 0, 1)
    assert run(8, 5, 1) == ref
    assert run(8, 2, 2) == ref
    assert run(33, 31, 2) == ref


def test_rows_join_leave_and_reorder() -> None:
    V = 100
    s = BatchSampler(V)
    s.add("a", SamplingParams(seed=1), [1])
    s.add("b", SamplingParams(seed=2), [1])
    x = np.random.default_rng(3).normal(size=(2, V)).astype(np.float32)
    first = s.step(x, rows=["a", "b"]).token_ids
    s.remove("a")
    s.add("c", SamplingParams(seed=1), [1])
    again = s.step(x[::-1].copy(), rows=["b", "c"])  # c is a fresh a: position 0, same seed
    assert again.rows == ("b", "c")
    assert again.token_ids[1] == first[0]
    assert s.generated("b") == 2 and s.generated("c") == 1
    with pytest.raises(KeyError, match="'a' is not in the batch"):
        s.step(x, rows=["a", "b"])


def test_logprobs_processed_and_raw_match_torch() -> None:
    V = 2000
    x = torch.randn(3, V) * 3
    s = BatchSampler(V)
    s.add("p", SamplingParams(top_k=40, temperature=0.8, seed=3, logprobs=True, top_logprobs=5), [])
    s.add("g", SamplingParams(temperature=0, repetition_penalty=1.2, logprobs=True, top_logprobs=3), [7, 8])
    s.add("r", SamplingParams(top_k=40, seed=3, logprobs=True, top_logprobs=4, logprobs_mode="raw"), [])
    processed = torch.from_numpy(s.process(x))
    r = s.step(x)
    for i in range(2):
        ref = torch.log_softmax(processed[i], -1)
        assert r.logprobs[i] == pytest.approx(ref[r.token_ids[i]].item(), abs=1e-5)
        assert r.ranks[i] == 1 + int((processed[i] > processed[i, r.token_ids[i]]).sum())
        n = 5 if i == 0 else 3
        top = torch.topk(ref, n)
        assert r.top_token_ids[i, :n].tolist() == top.indices.tolist()
        np.testing.assert_allclose(r.top_logprobs[i, :n], top.values.numpy(), atol=1e-5)
        assert (r.top_token_ids[i, n:] == -1).all() and np.isnan(r.top_logprobs[i, n:]).all()
    raw = torch.log_softmax(x[2], -1)
    assert r.logprobs[2] == pytest.approx(raw[r.token_ids[2]].item(), abs=1e-5)
    assert r.ranks[2] == 1 + int((x[2] > x[2, r.token_ids[2]]).sum())
    assert r.top_token_ids[2, :4].tolist() == torch.topk(raw, 4).indices.tolist()


def test_logprobs_not_asked_are_nan() -> None:
    s = BatchSampler(10)
    s.add("a", SamplingParams(seed=1), [])
    r = s.step(np.zeros((1, 10), np.float32))
    assert np.isnan(r.logprobs[0]) and r.ranks[0] == 0 and r.top_token_ids.shape == (1, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zero_copy_views_of_torch_and_numpy(dtype: torch.dtype) -> None:
    V = 3000
    s = BatchSampler(V)
    for i in range(3):
        s.add(i, SamplingParams(temperature=0), [])
    hidden = torch.randn(3, 4, V).to(dtype)  # [batch, seq, vocab], like a model's output
    last = hidden[:, -1, :]  # row-strided view, no copy
    assert not last.is_contiguous()
    want = last.float().argmax(-1).tolist()
    assert s.step(last, advance=False).token_ids.tolist() == want
    if dtype != torch.bfloat16:
        assert s.step(last.numpy(), advance=False).token_ids.tolist() == want


@pytest.mark.parametrize(
    ("logits", "error", "match"),
    [
        (torch.zeros(2, 10, dtype=torch.float64), TypeError, "float32, bfloat16 or float16, got float64"),
        (np.zeros((2, 10), np.int32), TypeError, "float32, bfloat16 or float16, got numpy int32"),
        (torch.zeros(2, 10, 3), ValueError, r"2-D \[rows, vocab\], got 3-D"),
        (torch.zeros(2, 20)[:, ::2], ValueError, "contiguous along the vocabulary"),
        (np.zeros((2, 20), np.float32)[:, ::2], ValueError, "contiguous along the vocabulary"),
        ([[0.0] * 10] * 2, TypeError, "numpy array or a torch CPU tensor"),
        (torch.zeros(3, 10), ValueError, "one row per sampled row: got 3 rows for 2"),
    ],
)
def test_bad_logits_are_refused_loudly(logits: object, error: type[Exception], match: str) -> None:
    s = BatchSampler(10)
    s.add("a", SamplingParams(), [])
    s.add("b", SamplingParams(), [])
    with pytest.raises(error, match=match):
        s.step(logits, rows=["a", "b"])


def test_step_releases_the_gil() -> None:
    V = 128256
    s = BatchSampler(V)
    for i in range(16):
        s.add(i, SamplingParams(seed=i), [])  # dense sampling: slow enough to overlap
    x = torch.randn(16, V)
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    for _ in range(3):
        s.step(x, advance=False)
    done.set()
    t.join()
    assert ticks > 1000
