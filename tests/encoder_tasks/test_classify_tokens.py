"""ClassifyTokens against transformers' token-classification pipeline, every aggregation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

from tokenwire.client import Client
from tokenwire.v1 import models_pb2
from tokenwire.v1 import understanding_pb2 as pb

TEXTS = [
    "John Smith lives in Paris and works for the United Nations.",
    "Marie Curie was born in Warsaw, Poland; she moved to Paris.",
    "naïve café owners in Zürich — über-nice!",
    "unbelievably xylophonists quizzically juxtaposed",
    "Hi",
]
AGGREGATIONS = {
    pb.AGGREGATION_UNSPECIFIED: "none",
    pb.AGGREGATION_NONE: "none",
    pb.AGGREGATION_SIMPLE: "simple",
    pb.AGGREGATION_FIRST: "first",
    pb.AGGREGATION_AVERAGE: "average",
    pb.AGGREGATION_MAX: "max",
}


def _served(client: Client, text: str, **fields: Any) -> list[dict[str, Any]]:
    reply = client.understanding.ClassifyTokens(pb.ClassifyTokensRequest(model="tiny-bert-ner", text=text, **fields))
    return [
        {"label": e.label, "score": e.score, "word": e.word, "start": e.start, "end": e.end, "index": e.index}
        for e in reply.entities
    ]


@pytest.fixture(scope="module")
def ner_path(demo_models_dir: Path) -> Path:
    return demo_models_dir / "tiny-bert-ner"


def _pipeline(path: Path) -> Any:
    return pipeline(
        "token-classification",
        model=AutoModelForTokenClassification.from_pretrained(path),
        tokenizer=AutoTokenizer.from_pretrained(path),
    )


@pytest.mark.parametrize("aggregation", list(AGGREGATIONS), ids=lambda a: pb.Aggregation.Name(a))
def test_equals_token_classification_pipeline(et: Client, ner_path: Path, aggregation: int) -> None:
    strategy = AGGREGATIONS[aggregation]
    tagger = _pipeline(ner_path)
    for text in TEXTS:
        expected = tagger(text, aggregation_strategy=strategy)
        got = _served(et, text, aggregation=aggregation)
        key = "entity" if strategy == "none" else "entity_group"
        assert [(e["label"], e["word"], e["start"], e["end"]) for e in got] == [
            (e[key], e["word"], e["start"], e["end"]) for e in expected
        ], text
        assert [e["score"] for e in got] == pytest.approx([float(e["score"]) for e in expected], rel=1e-4)
        if strategy == "none":
            assert [e["index"] for e in got] == [e["index"] for e in expected]
        for e in got:  # offsets are code points into the text
            assert 0 <= e["start"] < e["end"] <= len(text)
    assert any(_served(et, t, aggregation=aggregation) for t in TEXTS), "the demo tagger found no entity at all"


def test_ignore_labels(et: Client, ner_path: Path) -> None:
    tagger = _pipeline(ner_path)
    text = TEXTS[0]
    got = _served(et, text, aggregation=pb.AGGREGATION_SIMPLE, ignore_labels=["PER", "LOC"])
    expected = tagger(text, aggregation_strategy="simple", ignore_labels=["PER", "LOC"])
    assert [(e["label"], e["start"]) for e in got] == [(e["entity_group"], e["start"]) for e in expected]
    assert all(e["label"] not in ("PER", "LOC") for e in got)
    everything = _served(et, text, ignore_labels=["-"])  # nothing is called "-": every token comes back
    assert len(everything) == len(AutoTokenizer.from_pretrained(ner_path)(text)["input_ids"]) - 2


def test_truncate_reports_only_what_fits(et: Client) -> None:
    text = " ".join(["Paris"] * 40)
    got = _served_model(et, "tiny-bert-ner-16", text, truncate=True, ignore_labels=["-"])
    assert len(got) == 14  # 16 tokens less [CLS] and [SEP]
    assert max(e["end"] for e in got) < len(text)


def _served_model(client: Client, model: str, text: str, **fields: Any) -> list[dict[str, Any]]:
    reply = client.understanding.ClassifyTokens(pb.ClassifyTokensRequest(model=model, text=text, **fields))
    return [{"label": e.label, "end": e.end} for e in reply.entities]


def test_model_info_lists_the_bio_labels(et: Client) -> None:
    info = et.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-bert-ner"))
    assert list(info.tasks) == [models_pb2.TASK_CLASSIFY_TOKENS]
    assert list(info.labels) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
