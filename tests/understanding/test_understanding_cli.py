"""`tokenwire fill-mask`, `next-sentence` and `answer` against the in-process server."""

from __future__ import annotations

import json

import pytest

from harness import InProcessServer
from tokenwire.cli import main


def _run(capsys: pytest.CaptureFixture[str], server: InProcessServer, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--target", server.target, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_fill_mask(capsys: pytest.CaptureFixture[str], uw_server: InProcessServer) -> None:
    code, out, _ = _run(
        capsys,
        uw_server,
        "fill-mask",
        "--model",
        "tiny-bert",
        "--top-k",
        "3",
        "The capital of France, [MASK], contains the Eiffel Tower.",
    )
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and all(line.startswith("mask 0\t") for line in lines)
    code, out, _ = _run(
        capsys, uw_server, "fill-mask", "--json", "--model", "tiny-bert", "--target-word", "tokyo", "Paris, [MASK]!"
    )
    reply = json.loads(out)
    assert reply["masks"][0]["candidates"][0]["sequence"] == "paris, tokyo!"


def test_fill_mask_error_names_the_field(capsys: pytest.CaptureFixture[str], uw_server: InProcessServer) -> None:
    code, _, err = _run(capsys, uw_server, "fill-mask", "--model", "tiny-bert", "no mask")
    assert code == 1 and "INVALID_ARGUMENT" in err and "field text" in err


def test_next_sentence(capsys: pytest.CaptureFixture[str], uw_server: InProcessServer) -> None:
    code, out, _ = _run(capsys, uw_server, "next-sentence", "--model", "tiny-bert", "Hello.", "Hi.")
    assert code == 0 and out.startswith("is_next=")
    code, out, _ = _run(
        capsys,
        uw_server,
        "next-sentence",
        "--model",
        "tiny-bert-16",
        "--truncate",
        "one two three four five six seven",
        "eight nine ten eleven twelve thirteen",
    )
    assert code == 0


def test_answer(capsys: pytest.CaptureFixture[str], uw_server: InProcessServer) -> None:
    context = "Paris is the capital of France."
    code, out, _ = _run(
        capsys,
        uw_server,
        "answer",
        "--model",
        "tiny-bert-qa",
        "--question",
        "Capital?",
        "--context",
        context,
        "--top-k",
        "2",
        "--max-answer-length",
        "3",
        "--handle-impossible-answer",
        "--json",
    )
    answers = json.loads(out)["answers"]
    assert code == 0 and len(answers) == 2
    for a in answers:
        assert context[a.get("start", 0) : a.get("end", 0)] == a.get("text", "")
