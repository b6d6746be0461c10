"""Rerank: each document scored with the query as a pair, as sentence-transformers'
``CrossEncoder.predict([(query, doc), ...])``: the classifier's one logit through the
cross-encoder's activation (EncoderProfile.rerank_function: the config's
``sentence_transformers.activation_fn``, sigmoid by default; a custom head's output), or the raw
logit with `raw_scores`. Results are sorted by descending score, ties by document order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models.loaded_model import LoadedModel
from .heads import Needs, RowOutputs
from .inputs import Encoded, as_row, check_texts, encode
from .limits import require_text
from .scoring import SCORE_FUNCTIONS

NEEDS = Needs(sequence_logits=True)


@dataclass(frozen=True)
class RerankParams:
    query: str
    documents: tuple[str, ...]
    top_n: int = 0
    truncate: bool = False
    raw_scores: bool = False


@dataclass(frozen=True)
class RerankJob:
    rows: tuple[Encoded, ...]
    function: str
    top_n: int


def prepare(params: RerankParams, model: LoadedModel) -> RerankJob:
    """Validate and tokenize every (query, document) pair (off the event loop)."""
    require_text("query", params.query)
    check_texts("documents", params.documents, model)
    rows = tuple(
        as_row(encode(model, f"documents[{i}]", params.query, doc, truncate=params.truncate))
        for i, doc in enumerate(params.documents)
    )
    function = "none" if params.raw_scores else model.encoder.rerank_function
    return RerankJob(rows, function, min(params.top_n, len(rows)) if params.top_n else len(rows))


def score(function: str, outputs: RowOutputs) -> float:
    """On the model thread: the pair's relevance."""
    assert outputs.logits is not None
    return float(SCORE_FUNCTIONS[function](outputs.logits[0]))


def ranked(job: RerankJob, scores: Sequence[float]) -> list[tuple[int, float]]:
    """(document index, score), best first, top_n of them."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(i, scores[i]) for i in order[: job.top_n]]
