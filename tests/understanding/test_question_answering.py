"""AnswerQuestion against transformers' question-answering pipeline, short and long contexts.

transformers 5 dropped that pipeline, so the reference is transformers 4.57's, run live on every
test run: qa_reference.py installs 4.57 into build/reference/ (once, then reused) and runs
make_qa_golden.py in a subprocess on the same demo models the server serves. If that cannot run
(e.g. no PyPI and no installed side folder), the comparison tests fail; they never skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

import qa_reference
from qa_cases import CASES, NON_ASCII, SHORT, QACase
from tokenwire.client import Client, field_violations
from tokenwire.v1 import understanding_pb2 as pb


@pytest.fixture(scope="session")
def pipeline_answers(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """transformers 4.57's pipeline on the demo models the server serves (see qa_reference.py)."""
    out = tmp_path_factory.mktemp("qa-reference") / "answers.json"
    try:
        return qa_reference.reference_answers(demo_models_dir, out)
    except qa_reference.ReferenceUnavailable as exc:
        why = str(exc)
    pytest.fail(f"AnswerQuestion's reference could not run, so it is not checked: {why}", pytrace=False)


def _ask(client: Client, case: QACase) -> list[dict[str, Any]]:
    reply = client.understanding.AnswerQuestion(pb.AnswerQuestionRequest(**case.request_fields()))  # type: ignore[arg-type]
    return [{"answer": a.text, "score": a.score, "start": a.start, "end": a.end} for a in reply.answers]


def _same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(a["answer"], a["start"], a["end"]) for a in got] == [(a["answer"], a["start"], a["end"]) for a in expected]
    assert [a["score"] for a in got] == pytest.approx([a["score"] for a in expected], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_equals_transformers_4_57_pipeline(uw: Client, pipeline_answers: dict[str, Any], case: QACase) -> None:
    assert pipeline_answers["transformers"].startswith("4.57.")
    got = _ask(uw, case)
    _same(got, pipeline_answers["cases"][case.id])
    for answer in got:  # offsets are code points into the context
        assert case.context[answer["start"] : answer["end"]] == answer["answer"]


def test_non_ascii_offsets_are_code_points(uw: Client) -> None:
    case = QACase("x", "tiny-bert-qa", "Où?", NON_ASCII, top_k=20, max_answer_length=4)
    answers = _ask(uw, case)
    assert len(answers) == 20
    non_ascii = [a for a in answers if not a["answer"].isascii()]
    assert non_ascii, "expected some answers with non-ASCII text"
    for a in answers:
        assert NON_ASCII[a["start"] : a["end"]] == a["answer"]
        assert 0 <= a["start"] <= a["end"] <= len(NON_ASCII)


def test_windowed_answers_map_back_into_the_whole_context(uw: Client) -> None:
    context = SHORT + " " + "The river flows near the city every day. " * 30 + SHORT
    case = QACase("x", "tiny-bert-qa-64", "What is the capital of France?", context, top_k=20, doc_stride=16)
    answers = _ask(uw, case)
    assert len(answers) == 20
    assert max(a["end"] for a in answers) > len(context) // 2  # later windows contribute
    for a in answers:
        assert context[a["start"] : a["end"]] == a["answer"]


def test_max_answer_length_bounds_the_span(uw: Client) -> None:
    case = QACase("x", "tiny-bert-qa", "What?", SHORT, top_k=20, max_answer_length=1)
    for a in _ask(uw, case):
        assert " " not in a["answer"]  # one token, widened to its word at most


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"question": "", "context": SHORT}, "question"),
        ({"question": "Who?", "context": ""}, "context"),
        ({"question": "Who?", "context": SHORT, "top_k": 21}, "top_k"),
        ({"question": "Who?", "context": SHORT, "max_answer_length": 513}, "max_answer_length"),
        ({"question": "Who?", "context": SHORT, "doc_stride": 60, "model": "tiny-bert-qa-64"}, "doc_stride"),
        ({"question": "is " * 70 + "it?", "context": SHORT, "model": "tiny-bert-qa-64"}, "question"),
    ],
)
def test_invalid_requests_name_the_field(uw: Client, fields: dict[str, Any], field: str) -> None:
    request = pb.AnswerQuestionRequest(**{"model": "tiny-bert-qa", **fields})
    with pytest.raises(grpc.RpcError) as info:
        uw.understanding.AnswerQuestion(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert field_violations(info.value)[0][0] == field


def test_default_stride_adapts_to_a_small_window(uw: Client) -> None:
    # 64-token window, a long question: the default stride (32) would leave no room, so it shrinks.
    question = "where is the tower of the capital of france and japan " * 4 + "?"
    case = QACase("x", "tiny-bert-qa-64", question, SHORT * 3, top_k=2)
    assert len(_ask(uw, case)) == 2
