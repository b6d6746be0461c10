"""ClassifyTokens: labelled entities in a text, as transformers' token-classification pipeline.

The steps are the pipeline's (``TokenClassificationPipeline.postprocess``), in the same order
and with the same arithmetic, so results equal ``pipeline("token-classification",
aggregation_strategy=...)`` for every strategy:

1. softmax over the labels at every token (float32);
2. *pre-entities*: every non-special token with its scores, character offsets (from the fast
   tokenizer's offset mapping) and whether it continues the previous word — for a tokenizer
   with a continuing-subword prefix (WordPiece's "##") when the token is longer than its text,
   otherwise by the pipeline's heuristic (no space before it);
3. FIRST / AVERAGE / MAX first merge each word's tokens into one (label of the first token, of
   the best mean score, of the best token);
4. every strategy but NONE then groups neighbours into entities: a token continues the group
   when its tag (label without B-/I-) matches and it is not a B-; the score is the mean;
5. entities whose label is in ignore_labels are dropped.

Where the protocol differs: the text is never split into overlapping windows (a text over
max_input_tokens is cut with ``truncate`` or refused), and a slow tokenizer (no offsets) is
FAILED_PRECONDITION since every entity reports its offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument
from ..models.loaded_model import LoadedModel
from .heads import Needs, RowOutputs
from .inputs import Encoded, as_row, encode
from .limits import require_text

NEEDS = Needs(token_logits=True)
AGGREGATIONS = ("none", "simple", "first", "average", "max")
DEFAULT_IGNORE = ("O",)
MAX_IGNORE_LABELS = 1024


@dataclass(frozen=True)
class ClassifyTokensParams:
    text: str
    aggregation: str = "none"
    ignore_labels: tuple[str, ...] = ()
    truncate: bool = False


@dataclass(frozen=True)
class ClassifyTokensJob:
    text: str
    row: Encoded
    offsets: tuple[tuple[int, int], ...]
    special: tuple[int, ...]
    aggregation: str
    ignore: frozenset[str]


@dataclass(frozen=True)
class Entity:
    label: str
    score: float
    word: str
    start: int
    end: int
    index: int = 0


@dataclass
class _Token:
    word: str
    scores: np.ndarray
    start: int
    end: int
    index: int
    is_subword: bool


def prepare(params: ClassifyTokensParams, model: LoadedModel) -> ClassifyTokensJob:
    """Validate and tokenize with offsets (off the event loop)."""
    require_text("text", params.text)
    if params.aggregation not in AGGREGATIONS:
        raise InvalidArgument("aggregation", f"must be one of {', '.join(AGGREGATIONS)}, got {params.aggregation!r}")
    if len(params.ignore_labels) > MAX_IGNORE_LABELS:
        raise InvalidArgument(
            "ignore_labels", f"must have at most {MAX_IGNORE_LABELS} entries, got {len(params.ignore_labels)}"
        )
    if not getattr(model.tokenizer, "is_fast", False):
        raise FailedPrecondition(
            f"model {model.spec.name!r} has a slow tokenizer without character offsets; "
            "ClassifyTokens needs a fast (tokenizer.json) one"
        )
    encoded = encode(
        model,
        "text",
        params.text,
        truncate=params.truncate,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    return ClassifyTokensJob(
        params.text,
        as_row(encoded),
        tuple((int(a), int(b)) for a, b in encoded["offset_mapping"]),
        tuple(int(x) for x in encoded["special_tokens_mask"]),
        params.aggregation,
        frozenset(params.ignore_labels or DEFAULT_IGNORE),
    )


def probabilities(outputs: RowOutputs) -> np.ndarray:
    """On the model thread: [tokens, labels] logits as float32 numpy (softmax follows in
    `entities`, in numpy, as the pipeline computes it)."""
    assert outputs.logits is not None
    result: np.ndarray = outputs.logits.float().cpu().numpy()
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    maxes = np.max(logits, axis=-1, keepdims=True)
    shifted = np.exp(logits - maxes)
    result: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def _pre_entities(job: ClassifyTokensJob, scores: np.ndarray, tokenizer: Any) -> list[_Token]:
    word_aware = bool(
        getattr(getattr(getattr(tokenizer, "_tokenizer", None), "model", None), "continuing_subword_prefix", None)
    )
    tokens = []
    for idx, token_scores in enumerate(scores):
        if job.special[idx]:
            continue
        token_id = job.row.input_ids[idx]
        word = tokenizer.convert_ids_to_tokens(token_id)
        start, end = job.offsets[idx]
        word_ref = job.text[start:end]
        if word_aware:
            is_subword = len(word) != len(word_ref)
        else:  # the pipeline's heuristic for tokenizers without a subword prefix
            is_subword = start > 0 and " " not in job.text[start - 1 : start + 1]
        if token_id == tokenizer.unk_token_id:
            word, is_subword = word_ref, False
        tokens.append(_Token(word, token_scores, start, end, idx, is_subword))
    return tokens


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # not in B-/I- form: a continuation


def _word(group: Sequence[_Token], strategy: str, labels: Sequence[str], tokenizer: Any) -> Entity:
    word = tokenizer.convert_tokens_to_string([t.word for t in group])
    if strategy == "first":
        scores = group[0].scores
        idx = int(scores.argmax())
        score = scores[idx]
    elif strategy == "max":
        scores = max(group, key=lambda t: t.scores.max()).scores
        idx = int(scores.argmax())
        score = scores[idx]
    else:  # average
        mean = np.nanmean(np.stack([t.scores for t in group]), axis=0)
        idx = int(mean.argmax())
        score = mean[idx]
    return Entity(labels[idx], float(score), word, group[0].start, group[-1].end)


def _words(tokens: Sequence[_Token], strategy: str, labels: Sequence[str], tokenizer: Any) -> list[Entity]:
    out: list[Entity] = []
    group: list[_Token] = []
    for token in tokens:
        if group and not token.is_subword:
            out.append(_word(group, strategy, labels, tokenizer))
            group = []
        group.append(token)
    if group:
        out.append(_word(group, strategy, labels, tokenizer))
    return out


def _group(members: Sequence[Entity], tokenizer: Any) -> Entity:
    return Entity(
        members[0].label.split("-", 1)[-1],
        float(np.mean(np.nanmean([m.score for m in members]))),
        tokenizer.convert_tokens_to_string([m.word for m in members]),
        members[0].start,
        members[-1].end,
    )


def _groups(entities: Sequence[Entity], tokenizer: Any) -> list[Entity]:
    out: list[Entity] = []
    current: list[Entity] = []
    for entity in entities:
        if current:
            bi, tag = _tag(entity.label)
            _, last_tag = _tag(current[-1].label)
            if not (tag == last_tag and bi != "B"):
                out.append(_group(current, tokenizer))
                current = []
        current.append(entity)
    if current:
        out.append(_group(current, tokenizer))
    return out


def entities(job: ClassifyTokensJob, logits: np.ndarray, labels: Sequence[str], tokenizer: Any) -> list[Entity]:
    """Steps 1–5 of the module docstring (off the event loop)."""
    tokens = _pre_entities(job, _softmax(logits), tokenizer)
    if job.aggregation in ("none", "simple"):
        found = []
        for t in tokens:
            idx = int(t.scores.argmax())
            found.append(Entity(labels[idx], float(t.scores[idx]), t.word, t.start, t.end, t.index))
    else:
        found = _words(tokens, job.aggregation, labels, tokenizer)
    if job.aggregation != "none":
        found = _groups(found, tokenizer)
    return [e for e in found if e.label not in job.ignore]
