"""The reference answers for test_question_answering: transformers' question-answering pipeline
on the demo QA model, for every case in qa_cases.CASES, written as JSON.

transformers 5 removed the extractive question-answering pipeline, so this runs under 4.57,
its last release with it. It is not run by hand: on every test run, qa_reference.py installs
4.57 into build/reference/transformers-4.57 (once; then reused) and runs this file in a
subprocess with the venv's python, that folder first on PYTHONPATH, and the very demo model
folder the test server serves. The same by hand:

    .venv/bin/python tests/understanding/qa_reference.py      # prints the side folder
    PYTHONPATH=build/reference/transformers-4.57:tests/understanding \\
        .venv/bin/python tests/understanding/make_qa_golden.py MODELS_DIR answers.json

It imports no tokenwire code (tokenwire needs transformers 5), and refuses to run under any
transformers but 4.57. The pipeline runs with max_seq_len = the served window and doc_stride =
the server's effective stride, so windows are the same; every other parameter is the request's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from qa_cases import CASES, WINDOWS, effective_doc_stride


def reference_answers(models_dir: Path) -> dict[str, Any]:
    """{"transformers": its version, "cases": {case id: [answer dicts, best first]}}."""
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    if not transformers.__version__.startswith("4.57."):
        raise SystemExit(f"the reference needs transformers 4.57, this is {transformers.__version__}")
    path = models_dir / "tiny-bert-qa"
    qa = pipeline(
        "question-answering",
        model=AutoModelForQuestionAnswering.from_pretrained(path),
        tokenizer=AutoTokenizer.from_pretrained(path),
    )
    cases = {}
    for case in CASES:
        result = qa(
            question=case.question,
            context=case.context,
            top_k=case.top_k or 1,
            max_answer_len=case.max_answer_length or 15,
            doc_stride=effective_doc_stride(case),
            max_seq_len=WINDOWS[case.model],
            handle_impossible_answer=case.handle_impossible_answer,
        )
        answers = result if isinstance(result, list) else [result]
        # The pipeline pads a short list with zero-score non-spans; a case must not need that.
        assert all(a["score"] > 0 and a["start"] <= a["end"] for a in answers), (case.id, answers)
        cases[case.id] = [
            {"answer": a["answer"], "score": float(a["score"]), "start": int(a["start"]), "end": int(a["end"])}
            for a in answers
        ]
    assert "tokenwire" not in sys.modules, "the reference must not import tokenwire"
    return {"transformers": transformers.__version__, "cases": cases}


def main(models_dir: str, out: str) -> None:
    answers = reference_answers(Path(models_dir))
    Path(out).write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_qa_golden.py MODELS_DIR OUT_JSON")
    main(sys.argv[1], sys.argv[2])
