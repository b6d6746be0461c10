"""Structured output on the random-weight demo models — the hardest case: nothing but the mask
keeps their output valid. Every completed output (FINISH_REASON_EOS_TOKEN) must satisfy its
constraint, checked by the library that defines it (jsonschema, re.fullmatch), greedy and
sampled at temperature 1.5, n > 1, streamed, and with beam search."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from constraint_cases import CHOICES, GRAMMARS, REGEXES, SCHEMAS, balanced, compact_json, matches, valid_json
from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2

MODELS = ["tiny-llama", "tiny-gpt2"]
EOS = common_pb2.FINISH_REASON_EOS_TOKEN
MAX_NEW = 96


def _request(
    model: str, constraint: common_pb2.Constraint, how: str, seed: int = 0, **extra: Any
) -> generation_pb2.GenerateRequest:
    fields: dict[str, Any] = {
        "model": model,
        "prompt": "Answer in the required format:",
        "constraint": constraint,
        "stopping": common_pb2.StoppingParams(max_new_tokens=MAX_NEW),
    }
    if how == "sample":
        fields.update(
            method=common_pb2.DECODING_METHOD_SAMPLE,
            sampling=common_pb2.SamplingParams(temperature=1.5, seed=seed),
            num_return_sequences=3,
        )
    elif how == "beam":
        fields.update(
            method=common_pb2.DECODING_METHOD_BEAM_SEARCH,
            beam=common_pb2.BeamParams(num_beams=3),
            num_return_sequences=2,
        )
    fields.update(extra)
    return generation_pb2.GenerateRequest(**fields)


def _unary(client: Client, request: generation_pb2.GenerateRequest) -> list[tuple[str, int]]:
    reply = client.generation.Generate(request, timeout=120)
    return [(s.text, s.finish_reason) for s in reply.sequences]


def _streamed(client: Client, request: generation_pb2.GenerateRequest) -> list[tuple[str, int]]:
    texts: dict[int, str] = {}
    ends: dict[int, int] = {}
    for message in client.generation.GenerateStream(request, timeout=120):
        texts[message.index] = texts.get(message.index, "") + message.text
        if message.finish_reason:
            ends[message.index] = message.finish_reason
    return [(texts[i], ends[i]) for i in sorted(texts)]


def _check_all(client: Client, model: str, constraint: common_pb2.Constraint, check: Callable[[str], None]) -> int:
    """Greedy, three seeds of n=3 samples, beams, and one streamed sample: every completed
    output is checked; returns how many completed."""
    outputs: list[tuple[str, int]] = []
    outputs += _unary(client, _request(model, constraint, "greedy"))
    for seed in range(3):
        outputs += _unary(client, _request(model, constraint, "sample", seed))
    outputs += _unary(client, _request(model, constraint, "beam"))
    outputs += _streamed(client, _request(model, constraint, "sample", 7))
    completed = 0
    for text, finish in outputs:
        if finish == EOS:
            check(text)
            completed += 1
    return completed


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_outputs_validate(client: Client, model: str, name: str) -> None:
    schema = SCHEMAS[name]
    constraint = common_pb2.Constraint(json_schema=json.dumps(schema))
    assert _check_all(client, model, constraint, lambda text: valid_json(schema, text)) > 0


@pytest.mark.parametrize("model", MODELS)
def test_any_json_outputs_parse(client: Client, model: str) -> None:
    assert _check_all(client, model, common_pb2.Constraint(json_object=True), compact_json) > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", sorted(REGEXES))
def test_regex_outputs_fullmatch(client: Client, model: str, name: str) -> None:
    pattern = REGEXES[name]
    assert _check_all(client, model, common_pb2.Constraint(regex=pattern), lambda t: matches(pattern, t)) > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", sorted(CHOICES))
def test_choice_outputs_are_one_of_the_choices(client: Client, model: str, name: str) -> None:
    values = CHOICES[name]
    constraint = common_pb2.Constraint(choices=common_pb2.ChoiceList(values=values))

    def one_of(text: str) -> None:
        assert text in values, text

    assert _check_all(client, model, constraint, one_of) > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_grammar_outputs_match(client: Client, model: str, name: str) -> None:
    grammar, pattern = GRAMMARS[name]

    def check(text: str) -> None:
        matches(pattern, text)
        balanced(text)

    assert _check_all(client, model, common_pb2.Constraint(grammar=grammar), check) > 0


def test_an_unset_constraint_changes_nothing(client: Client) -> None:
    plain = generation_pb2.GenerateRequest(
        model="tiny-llama", prompt="Once upon a time", stopping=common_pb2.StoppingParams(max_new_tokens=16)
    )
    empty = generation_pb2.GenerateRequest()
    empty.CopyFrom(plain)
    empty.constraint.SetInParent()  # a Constraint with no kind set
    off = generation_pb2.GenerateRequest()
    off.CopyFrom(plain)
    off.constraint.json_object = False
    expected = client.generation.Generate(plain).sequences[0].token_ids
    assert client.generation.Generate(empty).sequences[0].token_ids == expected
    assert client.generation.Generate(off).sequences[0].token_ids == expected


def test_max_new_tokens_returns_the_partial_output_with_length(client: Client) -> None:
    constraint = common_pb2.Constraint(regex=r"a{50}")
    request = _request("tiny-llama", constraint, "greedy", stopping=common_pb2.StoppingParams(max_new_tokens=5))
    ((text, finish),) = _unary(client, request)
    assert finish == common_pb2.FINISH_REASON_LENGTH
    assert text and set(text) == {"a"}  # the partial output, valid so far


def test_logprobs_describe_the_masked_distribution(client: Client) -> None:
    values = CHOICES["sentiment"]
    request = _request(
        "tiny-llama",
        common_pb2.Constraint(choices=common_pb2.ChoiceList(values=values)),
        "greedy",
        logprobs=common_pb2.LogprobsParams(enabled=True, top_n=5, mode=common_pb2.LOGPROBS_MODE_PROCESSED),
    )
    sequence = client.generation.Generate(request).sequences[0]
    first = sequence.logprobs[0]
    # At the first position only first pieces of the three choices are allowed: every
    # alternative reported starts one of them, and the allowed tokens' probabilities sum to 1.
    assert first.top and first.top[0].token_id == first.token_id
    for alternative in first.top:
        assert any(v.startswith(alternative.token.strip()) for v in values), alternative.token
    assert math.fsum(math.exp(t.logprob) for t in first.top) <= 1.0 + 1e-5
    raw = client.generation.Generate(
        _request(
            "tiny-llama",
            common_pb2.Constraint(choices=common_pb2.ChoiceList(values=values)),
            "greedy",
            logprobs=common_pb2.LogprobsParams(enabled=True, top_n=5),
        )
    ).sequences[0]
    assert raw.logprobs[0].logprob < first.logprob  # the raw distribution spreads over the vocabulary
