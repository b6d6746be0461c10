"""ClassifyText against transformers' text-classification pipeline (labels, order, scores 1e-4),
and custom heads against a plain torch forward of the same modules (1e-5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel, pipeline

from tokenwire.client import Client
from tokenwire.v1 import models_pb2
from tokenwire.v1 import understanding_pb2 as pb

TEXTS = [
    "the film was a delight from start to finish",
    "I would not recommend this place to anyone.",
    "Prices are fine; service is slow.",
    "Où est la gare ? — naïve café",
    "ok",
]
PAIRS = [
    ("A man is playing a guitar.", "Someone is making music."),
    ("The cat sat on the mat.", "Stock markets fell sharply today."),
]
FUNCTIONS = {
    pb.CLASSIFY_FUNCTION_UNSPECIFIED: None,
    pb.CLASSIFY_FUNCTION_SOFTMAX: "softmax",
    pb.CLASSIFY_FUNCTION_SIGMOID: "sigmoid",
    pb.CLASSIFY_FUNCTION_NONE: "none",
}


def _served(client: Client, model: str, inputs: list[Any], **fields: Any) -> list[list[tuple[str, float]]]:
    request = pb.ClassifyTextRequest(
        model=model,
        inputs=[
            pb.TextInput(text=t) if isinstance(t, str) else pb.TextInput(text=t[0], text_pair=t[1]) for t in inputs
        ],
        **fields,
    )
    reply = client.understanding.ClassifyText(request)
    return [[(label.label, label.score) for label in r.labels] for r in reply.results]


def _reference(
    path: Path, inputs: list[Any], function: str | None, top_k: int | None = None
) -> list[list[tuple[str, float]]]:
    classifier = pipeline(
        "text-classification",
        model=AutoModelForSequenceClassification.from_pretrained(path),
        tokenizer=AutoTokenizer.from_pretrained(path),
    )
    out = []
    for item in inputs:
        arg = item if isinstance(item, str) else {"text": item[0], "text_pair": item[1]}
        result = classifier(arg, top_k=top_k, function_to_apply=function)
        out.append([(r["label"], r["score"]) for r in result])
    return out


def _same(got: list[list[tuple[str, float]]], expected: list[list[tuple[str, float]]]) -> None:
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in expected]
    for g, e in zip(got, expected, strict=True):
        assert [s for _, s in g] == pytest.approx([s for _, s in e], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("function", list(FUNCTIONS), ids=lambda f: pb.ClassifyFunction.Name(f))
@pytest.mark.parametrize("model", ["tiny-bert-classifier", "multi-label", "regression"])
def test_equals_text_classification_pipeline(
    et: Client, demo_models_dir: Path, extra_models: dict[str, Path], model: str, function: int
) -> None:
    path = extra_models.get(model, demo_models_dir / model)
    got = _served(et, model, TEXTS, function=function)
    _same(got, _reference(path, TEXTS, FUNCTIONS[function]))


def test_pairs_equal_the_pipeline(et: Client, demo_models_dir: Path) -> None:
    got = _served(et, "tiny-bert-classifier", PAIRS)
    _same(got, _reference(demo_models_dir / "tiny-bert-classifier", PAIRS, None))


def test_top_k_keeps_the_best(et: Client, extra_models: dict[str, Path]) -> None:
    got = _served(et, "multi-label", TEXTS, top_k=2)
    full = _served(et, "multi-label", TEXTS)
    _same(got, [row[:2] for row in full])
    _same(got, _reference(extra_models["multi-label"], TEXTS, None, top_k=2))
    _same(_served(et, "multi-label", TEXTS[:1], top_k=99), full[:1])  # capped at the labels


def test_default_functions_follow_problem_type(et: Client) -> None:
    single = _served(et, "tiny-bert-classifier", TEXTS[:1])[0]
    assert sum(s for _, s in single) == pytest.approx(1.0, abs=1e-5)  # softmax
    multi = _served(et, "multi-label", TEXTS[:1])[0]
    assert all(0.0 < s < 1.0 for _, s in multi) and sum(s for _, s in multi) != pytest.approx(1.0, abs=1e-3)
    info = et.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="multi-label"))
    assert list(info.labels) == ["sports", "politics", "science", "art"]
    assert list(info.tasks) == [models_pb2.TASK_CLASSIFY_TEXT]


def _torch_forward(path: Path, texts: list[str]) -> list[list[float]]:
    """The user's own forward: their BertModel, their nn.Sequential, their pooling."""
    spec = json.loads((path / "tokenwire_head.json").read_text())
    tok = AutoTokenizer.from_pretrained(path)
    encoder = BertModel.from_pretrained(path).eval()
    layers: list[torch.nn.Module] = []
    for layer in spec["layers"]:
        if layer["type"] == "linear":
            layers.append(torch.nn.Linear(layer["in"], layer["out"]))
        elif layer["type"] == "activation":
            layers.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}[layer["fn"]]())
        else:
            layers.append(torch.nn.Dropout(layer["p"]))
    head = torch.nn.Sequential(*layers).eval()
    head.load_state_dict(load_file(str(path / "head.safetensors")))
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            hidden = encoder(**enc)
            if spec["pooling"] == "cls":
                pooled = hidden.last_hidden_state[:, 0]
            elif spec["pooling"] == "mean":
                pooled = hidden.last_hidden_state.mean(dim=1)
            else:
                pooled = hidden.pooler_output
            logits = head(pooled)[0]
            scores = {"sigmoid": logits.sigmoid(), "softmax": logits.softmax(-1), "none": logits}[spec["output"]]
            out.append(scores.tolist())
    return out


@pytest.mark.parametrize("model", ["tiny-bert-sentiment", "head-mean-softmax", "head-pooler-sigmoid"])
def test_custom_head_equals_a_plain_torch_forward(
    et: Client, demo_models_dir: Path, extra_models: dict[str, Path], model: str
) -> None:
    path = extra_models.get(model, demo_models_dir / model)
    labels = json.loads((path / "tokenwire_head.json").read_text())["labels"]
    expected = _torch_forward(path, TEXTS)
    got = _served(et, model, TEXTS)
    for row, want in zip(got, expected, strict=True):
        by_label = dict(row)
        assert sorted(by_label) == sorted(labels)
        assert [by_label[label] for label in labels] == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)


def test_custom_head_function_override(et: Client, extra_models: dict[str, Path]) -> None:
    raw = _served(et, "head-mean-softmax", TEXTS[:1], function=pb.CLASSIFY_FUNCTION_NONE)[0]
    soft = _served(et, "head-mean-softmax", TEXTS[:1])[0]
    logits = torch.tensor([dict(raw)[label] for label in ("low", "mid", "high")])
    assert [dict(soft)[label] for label in ("low", "mid", "high")] == pytest.approx(
        logits.softmax(-1).tolist(), rel=1e-5
    )


def test_custom_head_model_info(et: Client) -> None:
    info = et.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-bert-sentiment"))
    assert list(info.tasks) == [models_pb2.TASK_CLASSIFY_TEXT, models_pb2.TASK_RERANK]
    assert list(info.labels) == ["positive"]
    assert info.architecture == "BertModel"
