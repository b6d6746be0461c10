"""Greedy and beam search equal transformers' generate(), alone and in a mixed batch; seeded
sampling gives the same tokens alone and amid concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2

PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "naïve café 東京",
    "a",
    "The quick brown fox jumps over the lazy dog and then it runs far away into the forest",
]
GREEDY = common_pb2.DECODING_METHOD_GREEDY
SAMPLE = common_pb2.DECODING_METHOD_SAMPLE
BEAM = common_pb2.DECODING_METHOD_BEAM_SEARCH


def request(model: str, prompt_ids: list[int], max_new: int, **kwargs: Any) -> generation_pb2.GenerateRequest:
    return generation_pb2.GenerateRequest(
        model=model, input_ids=prompt_ids, stopping=common_pb2.StoppingParams(max_new_tokens=max_new), **kwargs
    )


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
def test_greedy_equals_transformers_alone(client: Client, references, model: str) -> None:  # type: ignore[no-untyped-def]
    ref = references[model]
    for i, prompt in enumerate(PROMPTS):
        ids = ref.ids(prompt)
        max_new = 5 + 7 * i
        reply = client.generation.Generate(request(model, ids, max_new, method=GREEDY))
        assert list(reply.sequences[0].token_ids) == ref.greedy(ids, max_new), prompt


def _beam_request(
    model: str, ids: list[int], max_new: int, beams: int, n: int, **beam: Any
) -> generation_pb2.GenerateRequest:
    return request(
        model, ids, max_new, method=BEAM, num_return_sequences=n, beam=common_pb2.BeamParams(num_beams=beams, **beam)
    )


BEAM_CASES = [  # (num_beams, n, length_penalty, early_stopping, transformers' early_stopping)
    (2, 1, 1.0, common_pb2.EARLY_STOPPING_HEURISTIC, False),
    (3, 3, 0.5, common_pb2.EARLY_STOPPING_NUM_BEAMS_DONE, True),
    (4, 2, 1.5, common_pb2.EARLY_STOPPING_NEVER, "never"),
]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("beams, n, length_penalty, early, hf_early", BEAM_CASES)
def test_beam_search_equals_transformers(
    client: Client,
    references,
    model: str,
    beams: int,
    n: int,  # type: ignore[no-untyped-def]
    length_penalty: float,
    early: int,
    hf_early: Any,
) -> None:
    ref = references[model]
    for prompt, max_new in [(PROMPTS[0], 6), (PROMPTS[2], 9)]:
        ids = ref.ids(prompt)
        reply = client.generation.Generate(
            _beam_request(model, ids, max_new, beams, n, length_penalty=length_penalty, early_stopping=early)
        )
        out = ref.generate(
            ids,
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=beams,
            num_return_sequences=n,
            length_penalty=length_penalty,
            early_stopping=hf_early,
            output_scores=True,
            return_dict_in_generate=True,
        )
        expected = [_strip_pad(row[len(ids) :].tolist(), ref.tokenizer.pad_token_id, ref) for row in out.sequences]
        got = [list(s.token_ids) for s in reply.sequences]
        assert got == expected, prompt
        assert [s.score for s in reply.sequences] == pytest.approx(out.sequences_scores.tolist(), abs=1e-5)


def _strip_pad(tokens: list[int], pad: int, ref: Any) -> list[int]:
    eos = ref.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    while tokens and tokens[-1] == pad and pad not in eos_ids:
        tokens = tokens[:-1]
    return tokens


def test_mixed_batch_matches_each_alone(client: Client, references) -> None:  # type: ignore[no-untyped-def]
    """Greedy, beam and seeded sampled requests of different lengths decoded together give
    exactly what each gives alone (and greedy/beam what transformers gives)."""
    ref = references["tiny-llama"]
    jobs = []
    for i, prompt in enumerate(PROMPTS * 2):
        ids = ref.ids(prompt)
        kind = i % 3
        if kind == 0:
            jobs.append(request("tiny-llama", ids, 4 + i, method=GREEDY))
        elif kind == 1:
            jobs.append(_beam_request("tiny-llama", ids, 3 + i, 3, 2))
        else:
            jobs.append(
                request(
                    "tiny-llama",
                    ids,
                    6 + i,
                    method=SAMPLE,
                    num_return_sequences=2,
                    sampling=common_pb2.SamplingParams(seed=1000 + i, temperature=0.9, top_p=0.95),
                )
            )
    alone = [client.generation.Generate(j) for j in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(client.generation.Generate, jobs))
    for job, a, t in zip(jobs, alone, together, strict=True):
        assert [list(s.token_ids) for s in t.sequences] == [list(s.token_ids) for s in a.sequences]
        assert [s.text for s in t.sequences] == [s.text for s in a.sequences]
        if job.method == GREEDY:
            assert list(a.sequences[0].token_ids) == ref.greedy(list(job.input_ids), job.stopping.max_new_tokens)


def test_seeded_sample_same_alone_and_amid_15_concurrent(client: Client, references) -> None:  # type: ignore[no-untyped-def]
    ids = references["tiny-gpt2"].ids("The weather today")
    probe = request(
        "tiny-gpt2",
        ids,
        24,
        method=SAMPLE,
        sampling=common_pb2.SamplingParams(seed=42, temperature=0.8, top_k=50, top_p=0.9),
    )
    alone = client.generation.Generate(probe)
    assert alone.seed == 42
    others = [
        request(
            "tiny-gpt2",
            references["tiny-gpt2"].ids(PROMPTS[i % len(PROMPTS)]),
            10 + i,
            method=SAMPLE,
            sampling=common_pb2.SamplingParams(temperature=1.2),
        )
        for i in range(15)
    ]
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client.generation.Generate, r) for r in others[:7]]
        mine = pool.submit(client.generation.Generate, probe)
        futures += [pool.submit(client.generation.Generate, r) for r in others[7:]]
        assert list(mine.result().sequences[0].token_ids) == list(alone.sequences[0].token_ids)
        assert all(f.result().sequences for f in futures)
    different = client.generation.Generate(
        request(
            "tiny-gpt2",
            ids,
            24,
            method=SAMPLE,
            sampling=common_pb2.SamplingParams(seed=43, temperature=0.8, top_k=50, top_p=0.9),
        )
    )
    assert list(different.sequences[0].token_ids) != list(alone.sequences[0].token_ids)


def test_unseeded_sample_reports_its_seed_which_reproduces(client: Client, references) -> None:  # type: ignore[no-untyped-def]
    ids = references["tiny-llama"].ids("Tell me")
    first = client.generation.Generate(request("tiny-llama", ids, 12, method=SAMPLE, num_return_sequences=3))
    assert first.HasField("seed")
    again = client.generation.Generate(
        request(
            "tiny-llama",
            ids,
            12,
            method=SAMPLE,
            num_return_sequences=3,
            sampling=common_pb2.SamplingParams(seed=first.seed),
        )
    )
    assert [list(s.token_ids) for s in again.sequences] == [list(s.token_ids) for s in first.sequences]
    assert len({tuple(s.token_ids) for s in first.sequences}) > 1  # n samples are independent streams


def test_logprobs_are_raw_log_softmax(client: Client, references) -> None:  # type: ignore[no-untyped-def]
    import torch

    ref = references["tiny-llama"]
    ids = ref.ids(PROMPTS[1])
    reply = client.generation.Generate(
        request(
            "tiny-llama",
            ids,
            6,
            method=SAMPLE,
            sampling=common_pb2.SamplingParams(seed=7, temperature=0.7, top_k=20),
            logprobs=common_pb2.LogprobsParams(enabled=True, top_n=3),
        )
    )
    seq = reply.sequences[0]
    tokens = list(seq.token_ids)
    with torch.inference_mode():
        logits = ref.model(torch.tensor([ids + tokens])).logits[0, len(ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1)
    assert len(seq.logprobs) == len(tokens)
    for pos, (lp, token) in enumerate(zip(seq.logprobs, tokens, strict=True)):
        assert lp.token_id == token
        assert lp.logprob == pytest.approx(expected[pos, token].item(), abs=1e-4)
        assert lp.rank == int((expected[pos] > expected[pos, token]).sum()) + 1
        top = torch.topk(expected[pos], 3)
        assert [t.token_id for t in lp.top] == top.indices.tolist()
        assert [t.logprob for t in lp.top] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert seq.cumulative_logprob == pytest.approx(sum(lp.logprob for lp in seq.logprobs), abs=1e-3)
