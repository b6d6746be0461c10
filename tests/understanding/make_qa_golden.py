"""Record transformers' question-answering pipeline on the demo QA model, for test_question_answering.

transformers 5 removed the extractive question-answering pipeline, so the reference answers
come from the last 4.x release that has it, recorded once into qa_pipeline_golden.json:

    # a side directory with transformers 4.x; torch and the rest come from .venv
    .venv/bin/pip install --target /tmp/tf4 --no-deps "transformers==4.57.*" \
        "huggingface_hub<1.0,>=0.34" "tokenizers>=0.22,<0.23" requests urllib3 idna \
        charset_normalizer certifi
    .venv/bin/tokenwire demo-models --out /tmp/demo-models     # or any built demo dir
    PYTHONPATH=/tmp/tf4 .venv/bin/python tests/understanding/make_qa_golden.py \
        /tmp/demo-models tests/understanding/qa_pipeline_golden.json

It imports no tokenwire code (tokenwire needs transformers 5). The pipeline runs with
max_seq_len = the served window and doc_stride = the server's effective stride, so windows
are the same; every other parameter is the request's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import transformers
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

from qa_cases import CASES, WINDOWS, effective_doc_stride


def main(models_dir: str, out: str) -> None:
    path = Path(models_dir) / "tiny-bert-qa"
    stamp = (path / "tokenwire-demo.stamp").read_text().split()[0]
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
    Path(out).write_text(
        json.dumps(
            {"transformers": transformers.__version__, "demo_factory": stamp, "cases": cases},
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
