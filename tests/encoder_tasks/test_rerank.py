"""Rerank against sentence-transformers' CrossEncoder.predict, and a custom head's reranking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sentence_transformers import CrossEncoder

from tokenwire.client import Client
from tokenwire.v1 import understanding_pb2 as pb

QUERY = "Where was Marie Curie born?"
DOCUMENTS = [
    "Marie Curie was born in Warsaw.",
    "The Eiffel Tower is in Paris.",
    "Curie won two Nobel prizes, in physics and chemistry.",
    "Bananas are rich in potassium.",
    "Warsaw is the capital of Poland — naïve café",
]


def _served(client: Client, model: str, **fields: Any) -> list[tuple[int, float]]:
    reply = client.understanding.Rerank(pb.RerankRequest(model=model, query=QUERY, documents=DOCUMENTS, **fields))
    return [(r.index, r.score) for r in reply.results]


def _predict(path: Path, **kwargs: Any) -> list[float]:
    model = CrossEncoder(str(path), device="cpu")
    return [float(s) for s in model.predict([(QUERY, d) for d in DOCUMENTS], **kwargs)]


@pytest.mark.parametrize("raw", [False, True])
def test_equals_cross_encoder_predict(et: Client, demo_models_dir: Path, raw: bool) -> None:
    path = demo_models_dir / "tiny-bert-reranker"
    expected = _predict(path, activation_fn=__import__("torch").nn.Identity()) if raw else _predict(path)
    got = _served(et, "tiny-bert-reranker", raw_scores=raw)
    order = sorted(range(len(expected)), key=lambda i: -expected[i])
    assert [i for i, _ in got] == order
    assert [s for _, s in got] == pytest.approx([expected[i] for i in order], rel=1e-4, abs=1e-6)


def test_top_n(et: Client) -> None:
    full = _served(et, "tiny-bert-reranker")
    top = _served(et, "tiny-bert-reranker", top_n=2)
    assert [i for i, _ in top] == [i for i, _ in full[:2]]
    assert len(_served(et, "tiny-bert-reranker", top_n=50)) == len(DOCUMENTS)


def test_custom_head_with_one_output_reranks_with_its_classify_scores(et: Client) -> None:
    reranked = dict(_served(et, "head-pooler-sigmoid"))
    reply = et.understanding.ClassifyText(
        pb.ClassifyTextRequest(
            model="head-pooler-sigmoid", inputs=[pb.TextInput(text=QUERY, text_pair=d) for d in DOCUMENTS]
        )
    )
    classified = [r.labels[0].score for r in reply.results]
    assert [reranked[i] for i in range(len(DOCUMENTS))] == pytest.approx(classified, rel=1e-5)
