"""ClassifyText: labels with scores for texts and text pairs, as transformers' text-classification
pipeline (``pipeline("text-classification", top_k=None)``): the same tokenization (a pair as
``tokenizer(text, text_pair)``), the same default function (EncoderProfile.classify_function),
the labels sorted by score with ties in label order. A custom head (tokenwire_head.json) is
served the same way, its ``output`` being the default function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..models.loaded_model import LoadedModel
from .heads import Needs, RowOutputs
from .inputs import Encoded, as_row, check_count, encode
from .limits import require_text
from .scoring import SCORE_FUNCTIONS

NEEDS = Needs(sequence_logits=True)


@dataclass(frozen=True)
class ClassifyTextParams:
    """A ClassifyText request, unvalidated: `function` "" is the model's, `top_k` 0 all labels."""

    inputs: tuple[tuple[str, str], ...]
    top_k: int = 0
    function: str = ""
    truncate: bool = False


@dataclass(frozen=True)
class ClassifyTextJob:
    rows: tuple[Encoded, ...]
    function: str
    top_k: int
    labels: tuple[str, ...]


def prepare(params: ClassifyTextParams, model: LoadedModel) -> ClassifyTextJob:
    """Validate and tokenize every input (off the event loop)."""
    check_count("inputs", len(params.inputs), model)
    rows = []
    for i, (text, pair) in enumerate(params.inputs):
        require_text(f"inputs[{i}].text", text)
        encoded = encode(model, f"inputs[{i}]", text, pair or None, truncate=params.truncate)
        rows.append(as_row(encoded))
    labels = model.encoder.labels
    top_k = min(params.top_k, len(labels)) if params.top_k else len(labels)
    return ClassifyTextJob(tuple(rows), params.function or model.encoder.classify_function, top_k, labels)


def scores(function: str, outputs: RowOutputs) -> np.ndarray:
    """On the model thread: the row's scores, one per label."""
    assert outputs.logits is not None
    result: np.ndarray = SCORE_FUNCTIONS[function](outputs.logits).cpu().numpy()
    return result


def ranked(job: ClassifyTextJob, rows: Sequence[np.ndarray]) -> list[list[tuple[str, float]]]:
    """Per input, the top_k (label, score) by descending score (stable: ties keep label order)."""
    out = []
    for row in rows:
        order = sorted(range(len(row)), key=lambda i: -float(row[i]))[: job.top_k]
        out.append([(job.labels[i], float(row[i])) for i in order])
    return out
