"""NextSentence against the NSP head computed by hand with BertForNextSentencePrediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from transformers import AutoTokenizer, BertForNextSentencePrediction

from tokenwire.client import Client, field_violations
from tokenwire.v1 import understanding_pb2 as pb

PAIRS = [
    ("The capital of France is Paris.", "It contains the Eiffel Tower."),
    ("hello there", "general kenobi"),
    ("Le café est à Zürich.", "東京 est la capitale du Japon 😀"),
]


class ByHand:
    def __init__(self, path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = BertForNextSentencePrediction.from_pretrained(path).eval()

    @torch.inference_mode()
    def is_next(self, a: str, b: str, **tokenizer_kwargs: Any) -> float:
        inputs = self.tokenizer(a, b, return_tensors="pt", **tokenizer_kwargs)
        return float(self.model(**inputs).logits.softmax(-1)[0, 0])


@pytest.fixture(scope="module")
def by_hand(demo_models_dir: Path) -> ByHand:
    return ByHand(demo_models_dir / "tiny-bert")


@pytest.mark.parametrize("a, b", PAIRS)
def test_equals_softmax_of_the_nsp_head(uw: Client, by_hand: ByHand, a: str, b: str) -> None:
    reply = uw.understanding.NextSentence(pb.NextSentenceRequest(model="tiny-bert", sentence_a=a, sentence_b=b))
    expected = by_hand.is_next(a, b)
    assert reply.is_next_probability == pytest.approx(expected, abs=1e-6)
    assert reply.not_next_probability == pytest.approx(1 - expected, abs=1e-6)
    assert reply.is_next == (reply.is_next_probability >= reply.not_next_probability)


def test_truncate_cuts_the_longer_sentence(uw: Client, by_hand: ByHand) -> None:
    a, b = "a short one.", "the capital of france is paris and it has many people and a tower."
    request = pb.NextSentenceRequest(model="tiny-bert-16", sentence_a=a, sentence_b=b)
    with pytest.raises(grpc.RpcError) as info:
        uw.understanding.NextSentence(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = field_violations(info.value)
    length = len(by_hand.tokenizer(a, b)["input_ids"])
    assert field == "sentence_b" and "16" in description and f"got {length}" in description
    request.truncate = True
    reply = uw.understanding.NextSentence(request)
    expected = by_hand.is_next(a, b, truncation="longest_first", max_length=16)
    assert reply.is_next_probability == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("a, b, field", [("", "x", "sentence_a"), ("x", "", "sentence_b")])
def test_empty_sentence_is_invalid(uw: Client, a: str, b: str, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        uw.understanding.NextSentence(pb.NextSentenceRequest(model="tiny-bert", sentence_a=a, sentence_b=b))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value)[0][0] == field
