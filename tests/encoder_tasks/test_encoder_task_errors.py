"""Bad requests to ClassifyText, ClassifyTokens, EmbedText and Rerank: the right status code and
the field named; batched requests equal the same requests run alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tokenwire.client import Client, field_violations
from tokenwire.v1 import understanding_pb2 as pb

LONG = " ".join(["word"] * 40)


def _violation(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    ((field, _),) = field_violations(info.value)
    return field


def _texts(*texts: str, pair: str = "") -> list[pb.TextInput]:
    return [pb.TextInput(text=t, text_pair=pair) for t in texts]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "tiny-bert-classifier", "inputs": []}, "inputs"),
        ({"model": "tiny-bert-classifier", "inputs": _texts("ok", "")}, "inputs[1].text"),
        ({"model": "tiny-bert-classifier-batch", "inputs": _texts(*["x"] * 9)}, "inputs"),
        ({"model": "tiny-bert-classifier-16", "inputs": _texts("ok", LONG)}, "inputs[1]"),
        ({"model": "tiny-bert-classifier-16", "inputs": _texts("ok", pair=LONG)}, "inputs[0]"),
        ({"model": "tiny-bert-classifier", "inputs": _texts("ok"), "function": 42}, "function"),
    ],
)
def test_classify_text_names_the_field(et: Client, fields: dict[str, Any], field: str) -> None:
    assert _violation(et.understanding.ClassifyText, pb.ClassifyTextRequest(**fields)) == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "ok", "aggregation": 17}, "aggregation"),
        ({"text": "ok", "ignore_labels": ["x"] * 1025}, "ignore_labels"),
        ({"text": LONG, "model": "tiny-bert-ner-16"}, "text"),
    ],
)
def test_classify_tokens_names_the_field(et: Client, fields: dict[str, Any], field: str) -> None:
    request = pb.ClassifyTokensRequest(**{"model": "tiny-bert-ner", **fields})
    assert _violation(et.understanding.ClassifyTokens, request) == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"texts": []}, "texts"),
        ({"texts": ["a", "b", ""]}, "texts[2]"),
        ({"texts": ["a"], "dimensions": 65}, "dimensions"),
        ({"texts": ["a"], "pooling": 9}, "pooling"),
        ({"texts": [LONG], "model": "tiny-bert-embed-16"}, "texts[0]"),
    ],
)
def test_embed_text_names_the_field(et: Client, fields: dict[str, Any], field: str) -> None:
    request = pb.EmbedTextRequest(**{"model": "tiny-bert-embed", **fields})
    assert _violation(et.understanding.EmbedText, request) == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": "", "documents": ["a"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": ["a", ""]}, "documents[1]"),
        ({"query": "q", "documents": ["a", LONG], "model": "tiny-bert-reranker-16"}, "documents[1]"),
    ],
)
def test_rerank_names_the_field(et: Client, fields: dict[str, Any], field: str) -> None:
    request = pb.RerankRequest(**{"model": "tiny-bert-reranker", **fields})
    assert _violation(et.understanding.Rerank, request) == field


def test_truncate_cuts_instead_of_refusing(et: Client) -> None:
    u = et.understanding
    assert u.ClassifyText(pb.ClassifyTextRequest(model="tiny-bert-classifier-16", inputs=_texts(LONG), truncate=True))
    assert u.ClassifyText(
        pb.ClassifyTextRequest(model="tiny-bert-classifier-16", inputs=_texts("ok", pair=LONG), truncate=True)
    ).results
    assert u.EmbedText(pb.EmbedTextRequest(model="tiny-bert-embed-16", texts=[LONG], truncate=True)).dimensions == 64
    assert u.Rerank(pb.RerankRequest(model="tiny-bert-reranker-16", query=LONG, documents=["a"], truncate=True)).results


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("ClassifyText", pb.ClassifyTextRequest(model="tiny-bert-embed", inputs=_texts("ok"))),
        ("ClassifyTokens", pb.ClassifyTokensRequest(model="tiny-bert-classifier", text="ok")),
        ("EmbedText", pb.EmbedTextRequest(model="tiny-bert-ner", texts=["ok"])),
        ("Rerank", pb.RerankRequest(model="tiny-bert-classifier", query="q", documents=["d"])),
    ],
)
def test_wrong_task_is_failed_precondition(et: Client, call: str, request_: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        getattr(et.understanding, call)(request_)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tasks" in (info.value.details() or "")


def test_unknown_model_is_not_found(et: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        et.understanding.EmbedText(pb.EmbedTextRequest(model="no-such-model", texts=["a"]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_requests_equal_each_run_alone(et: Client, et_server: Any) -> None:
    texts = [f"sentence number {i} " + "about things " * (i % 5) for i in range(16)]

    def classify(text: str) -> list[tuple[str, float]]:
        reply = et.understanding.ClassifyText(
            pb.ClassifyTextRequest(model="tiny-bert-classifier-batch", inputs=_texts(text))
        )
        return [(label.label, label.score) for label in reply.results[0].labels]

    alone = [classify(t) for t in texts]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(classify, texts))
    for a, b in zip(alone, together, strict=True):
        assert dict(a) == pytest.approx(dict(b), rel=1e-4, abs=1e-6)
    runner = next(
        r for r in et_server.server.understanding.runners.runners() if r.model.spec.name == "tiny-bert-classifier-batch"
    )
    assert runner.largest_batch > 1, "the concurrent requests never shared a forward"
