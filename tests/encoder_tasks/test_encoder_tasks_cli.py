"""`tokenwire classify-text`, `classify-tokens`, `embed-text` and `rerank` against the
in-process server of the encoder-task demo models."""

from __future__ import annotations

import json
import math

import pytest

from harness import InProcessServer
from tokenwire.cli import main
from tokenwire.client import Client
from tokenwire.v1 import understanding_pb2 as pb


def _run(capsys: pytest.CaptureFixture[str], server: InProcessServer, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--target", server.target, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_text(capsys: pytest.CaptureFixture[str], et_server: InProcessServer, et: Client) -> None:
    texts = ["What a lovely day.", "The service was slow."]
    code, out, err = _run(capsys, et_server, "classify-text", "--model", "tiny-bert-classifier", *texts)
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [line[0] for line in lines] == ["input 0"] * 3 + ["input 1"] * 3
    assert {line[2] for line in lines} == {"negative", "neutral", "positive"}
    expected = et.understanding.ClassifyText(
        pb.ClassifyTextRequest(model="tiny-bert-classifier", inputs=[pb.TextInput(text=t) for t in texts])
    )
    assert [(float(s), label) for _, s, label in lines] == [
        (pytest.approx(round(x.score, 4), abs=1e-4), x.label) for r in expected.results for x in r.labels
    ]

    code, out, err = _run(
        capsys,
        et_server,
        "classify-text",
        "--json",
        "--model",
        "tiny-bert-classifier",
        "--top-k",
        "2",
        "--function",
        "sigmoid",
        "--pair",
        "A man is eating.",
        "--pair",
        "Nobody eats.",
        "A man eats food.",
        "A man eats pizza.",
    )
    assert code == 0, err
    results = json.loads(out)["results"]
    expected = et.understanding.ClassifyText(
        pb.ClassifyTextRequest(
            model="tiny-bert-classifier",
            inputs=[
                pb.TextInput(text="A man eats food.", text_pair="A man is eating."),
                pb.TextInput(text="A man eats pizza.", text_pair="Nobody eats."),
            ],
            top_k=2,
            function=pb.CLASSIFY_FUNCTION_SIGMOID,
        )
    )
    assert [[(x["label"], x["score"]) for x in r["labels"]] for r in results] == [
        [(x.label, pytest.approx(x.score, rel=1e-6)) for x in r.labels] for r in expected.results
    ]
    assert all(len(r["labels"]) == 2 for r in results)


def test_classify_text_errors(capsys: pytest.CaptureFixture[str], et_server: InProcessServer) -> None:
    with pytest.raises(SystemExit, match="one --pair per text"):
        main(["classify-text", "--target", et_server.target, "--model", "x", "--pair", "b", "a1", "a2"])
    code, _, err = _run(
        capsys, et_server, "classify-text", "--model", "tiny-bert-classifier-16", " ".join(["word"] * 40)
    )
    assert code == 1 and "INVALID_ARGUMENT" in err and "field inputs[0]" in err
    code, _, err = _run(
        capsys, et_server, "classify-text", "--model", "tiny-bert-classifier-16", "--truncate", " ".join(["w"] * 40)
    )
    assert code == 0, err
    code, _, err = _run(capsys, et_server, "classify-text", "--model", "tiny-bert-ner", "hello")
    assert code == 1 and "FAILED_PRECONDITION" in err


def test_classify_tokens(capsys: pytest.CaptureFixture[str], et_server: InProcessServer, et: Client) -> None:
    text = "John Smith lives in Paris and works for the United Nations."
    code, out, err = _run(
        capsys, et_server, "classify-tokens", "--model", "tiny-bert-ner", "--ignore-label", "-", "--json", text
    )
    assert code == 0, err
    tokens = json.loads(out)["entities"]
    expected = et.understanding.ClassifyTokens(
        pb.ClassifyTokensRequest(model="tiny-bert-ner", text=text, ignore_labels=["-"])
    )
    assert [(e["label"], e.get("start", 0), e["end"], e["index"]) for e in tokens] == [
        (e.label, e.start, e.end, e.index) for e in expected.entities
    ]
    assert len(tokens) > 10  # every token, "O" included

    code, out, err = _run(
        capsys,
        et_server,
        "classify-tokens",
        "--model",
        "tiny-bert-ner",
        "--aggregation",
        "simple",
        "--ignore-label",
        "O",
        "--ignore-label",
        "PER",
        text,
    )
    assert code == 0, err
    expected = et.understanding.ClassifyTokens(
        pb.ClassifyTokensRequest(
            model="tiny-bert-ner", text=text, aggregation=pb.AGGREGATION_SIMPLE, ignore_labels=["O", "PER"]
        )
    )
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(span, label, word) for _, span, label, word in lines] == [
        (f"[{e.start}, {e.end})", e.label, e.word) for e in expected.entities
    ]
    assert all(label not in ("O", "PER") and "-" not in label for _, _, label, _ in lines)

    code, out, err = _run(capsys, et_server, "classify-tokens", "--model", "tiny-bert-ner-16", "--truncate", text)
    assert code == 0, err


def test_embed_text(capsys: pytest.CaptureFixture[str], et_server: InProcessServer) -> None:
    texts = ["a sentence", "another, longer sentence"]
    code, out, err = _run(capsys, et_server, "embed-text", "--model", "tiny-bert-embed", *texts)
    assert code == 0, err
    vectors = [[float(v) for v in line.split()] for line in out.splitlines()]
    assert [len(v) for v in vectors] == [64, 64]
    assert all(math.isclose(math.hypot(*v), 1, abs_tol=1e-3) for v in vectors)  # the model normalizes

    code, out, err = _run(
        capsys,
        et_server,
        "embed-text",
        "--json",
        "--model",
        "tiny-bert-embed",
        "--pooling",
        "cls",
        "--dimensions",
        "16",
        "--normalize",
        *texts,
    )
    assert code == 0, err
    reply = json.loads(out)
    assert reply["dimensions"] == 16 and len(reply["embeddings"]) == 2
    for e in reply["embeddings"]:
        assert len(e["values"]) == 16 and math.isclose(math.hypot(*e["values"]), 1, rel_tol=1e-4)

    code, _, err = _run(capsys, et_server, "embed-text", "--model", "tiny-bert-embed-16", " ".join(["w"] * 40))
    assert code == 1 and "field texts[0]" in err
    code, _, err = _run(
        capsys, et_server, "embed-text", "--model", "tiny-bert-embed-16", "--truncate", " ".join(["w"] * 40)
    )
    assert code == 0, err


def test_rerank(capsys: pytest.CaptureFixture[str], et_server: InProcessServer, et: Client) -> None:
    query = "Where was Marie Curie born?"
    docs = ["Marie Curie was born in Warsaw.", "The Eiffel Tower is in Paris.", "Bananas are rich in potassium."]
    code, out, err = _run(
        capsys, et_server, "rerank", "--model", "tiny-bert-reranker", "--query", query, "--top-n", "2", *docs
    )
    assert code == 0, err
    expected = et.understanding.Rerank(pb.RerankRequest(model="tiny-bert-reranker", query=query, documents=docs))
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(int(i), d) for _, i, d in lines] == [(r.index, docs[r.index]) for r in expected.results[:2]]
    assert all(0 <= float(s) <= 1 for s, _, _ in lines)

    code, out, err = _run(
        capsys, et_server, "rerank", "--json", "--model", "tiny-bert-reranker", "--raw-scores", "--query", query, *docs
    )
    assert code == 0, err
    raw = et.understanding.Rerank(
        pb.RerankRequest(model="tiny-bert-reranker", query=query, documents=docs, raw_scores=True)
    )
    results = json.loads(out)["results"]
    assert [(r.get("index", 0), r["score"]) for r in results] == [
        (r.index, pytest.approx(r.score, rel=1e-6)) for r in raw.results
    ]

    code, _, err = _run(
        capsys, et_server, "rerank", "--model", "tiny-bert-reranker-16", "--query", query, " ".join(["w"] * 40)
    )
    assert code == 1 and "field documents[0]" in err
    code, _, err = _run(
        capsys,
        et_server,
        "rerank",
        "--model",
        "tiny-bert-reranker-16",
        "--truncate",
        "--query",
        query,
        " ".join(["w"] * 40),
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("classify-text", ["hello there"]),
        ("classify-tokens", ["John lives in Paris."]),
        ("embed-text", ["hello there"]),
        ("rerank", ["--query", "q", "doc one", "doc two"]),
    ],
)
def test_default_model(
    capsys: pytest.CaptureFixture[str], et_server: InProcessServer, command: str, argv: list[str]
) -> None:
    """Without --model each command uses the first ready model (by name) of its task."""
    code, out, err = _run(capsys, et_server, command, "--json", *argv)
    assert code == 0, err
    assert json.loads(out) is not None
