"""AnswerQuestion, part 2: start/end logits of every window → the best answer spans.

The scoring is transformers' question-answering pipeline (4.x, its last release with it),
step by step, because users compare against it:

1. per window, logits outside the context (and [CLS]) are set to -10000 and each of start and
   end goes through a softmax; the "no answer" score is p_start[0] * p_end[0] (the [CLS]
   position), and the overall one is the minimum over windows;
2. position 0 is then zeroed, and a span (s, e) scores p_start[s] * p_end[e] for context
   tokens s <= e < s + max_answer_length; each window keeps its best ``2 * top_k + 10``
   spans (the pipeline over-fetches because word alignment merges some);
3. each span widens to whole words (``token_to_word`` / ``word_to_chars``; character offsets
   from the tokenizer, i.e. Unicode code points into the original context);
4. spans whose text is the same, ignoring case, are one answer whose score is the sum, and
   which keeps the first span's offsets (windows in order, best first);
5. with ``handle_impossible_answer`` the empty answer joins with the "no answer" score, and
   the ``top_k`` best come back (a stable sort: ties keep that order).

Unlike the pipeline, a window with fewer valid spans than it would keep does not fill up
with zero-score non-spans (end before start, over-long), so fewer answers may come back; and
a merged score over 1 (the same text found in overlapping windows, each softmax summing to 1)
ranks by its sum but is reported as 1, the protocol's range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .heads import RowOutputs
from .qa_windows import QAJob, Window

# The pipeline's mask value: finite, so an all-masked row still normalizes.
_MASKED_LOGIT = np.float32(-10000.0)


@dataclass(frozen=True)
class SpanLogits:
    """One window's start and end logits, as float32 arrays on the host."""

    start: np.ndarray
    end: np.ndarray


@dataclass
class Answer:
    text: str
    score: float
    start: int
    end: int


def span_logits(outputs: RowOutputs) -> SpanLogits:
    """On the model thread: the window's logits, moved off the device."""
    assert outputs.start is not None and outputs.end is not None
    return SpanLogits(outputs.start.float().cpu().numpy(), outputs.end.float().cpu().numpy())


def _softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    x = np.where(keep, logits, _MASKED_LOGIT).astype(np.float32)
    e = np.exp(x - x.max())
    normalized: np.ndarray = e / e.sum()
    return normalized


def window_spans(
    logits: SpanLogits, window: Window, keep: int, max_answer_length: int
) -> tuple[float, list[tuple[int, int, float]]]:
    """(no-answer score, up to `keep` best (start, end, score) spans) of one window."""
    p_start = _softmax(logits.start, window.normalizer)
    p_end = _softmax(logits.end, window.normalizer)
    null_score = float(p_start[0] * p_end[0])
    p_start[0] = p_end[0] = 0.0
    context = np.flatnonzero(window.context_tokens)
    if context.size == 0:
        return null_score, []
    scores = np.outer(p_start[context], p_end[context])
    # Positions in the context may jump (never for BERT-style pairs, but cheap to respect).
    distance = context[None, :] - context[:, None]
    valid = (distance >= 0) & (distance < max_answer_length)
    flat = np.where(valid, scores, -1.0).ravel()
    count = min(keep, int(valid.sum()))
    if count == 0:
        return null_score, []
    best = np.argpartition(-flat, count - 1)[:count] if count < flat.size else np.arange(flat.size)
    best = best[np.argsort(-flat[best], kind="stable")]
    rows, cols = np.unravel_index(best, scores.shape)
    return null_score, [
        (int(context[r]), int(context[c]), float(scores[r, c])) for r, c in zip(rows, cols, strict=True)
    ]


def _char_span(encoding: Any, start: int, end: int, sequence: int) -> tuple[int, int]:
    """Token span → character span widened to whole words (offsets when words are unknown)."""
    try:
        first = encoding.word_to_chars(encoding.token_to_word(start), sequence_index=sequence)
        last = encoding.word_to_chars(encoding.token_to_word(end), sequence_index=sequence)
        return int(first[0]), int(last[1])
    except Exception:  # no word ids for this tokenizer/token: fall back to token offsets
        return int(encoding.offsets[start][0]), int(encoding.offsets[end][1])


def best_answers(job: QAJob, logits: Sequence[SpanLogits]) -> list[Answer]:
    """The job's top_k answers from every window's logits (see the module docstring)."""
    keep = 2 * job.top_k + 10
    null_score = 1e6
    answers: list[Answer] = []
    by_text: dict[str, Answer] = {}
    for window, window_logits in zip(job.windows, logits, strict=True):
        window_null, spans = window_spans(window_logits, window, keep, job.max_answer_length)
        null_score = min(null_score, window_null)
        for s, e, score in spans:
            a, b = _char_span(window.encoding, s, e, job.context_sequence)
            text = job.context[a:b]
            key = text.lower()
            if key in by_text:
                by_text[key].score += score
            else:
                by_text[key] = answer = Answer(text, score, a, b)
                answers.append(answer)
    if job.handle_impossible_answer:
        answers.append(Answer("", null_score, 0, 0))
    answers.sort(key=lambda answer: answer.score, reverse=True)
    best = answers[: job.top_k]
    for answer in best:
        answer.score = min(answer.score, 1.0)
    return best
