"""AnswerQuestion, part 1: the (question, context) pair cut into model-sized windows.

The window is the model's max_input_tokens; a context that does not fit is split the way
transformers' question-answering pipeline splits it (one tokenizer call with
``return_overflowing_tokens`` and ``stride=doc_stride``), so consecutive windows share
``doc_stride`` context tokens and every window repeats the whole question. To reproduce the
pipeline's defaults exactly (max_seq_len 384), set the model's max_input_tokens to 384.

The tokenizer would panic (a Rust panic, not an exception) on a stride that leaves no new
context per window, so that is checked here first and reported on the field that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument
from ..models.loader import LoadedModel
from .heads import Needs
from .limits import check_range, require_text

DEFAULT_TOP_K = 1
MAX_TOP_K = 20
DEFAULT_MAX_ANSWER_LENGTH = 15
MAX_ANSWER_LENGTH = 512
DEFAULT_DOC_STRIDE = 128


@dataclass(frozen=True)
class QAParams:
    """An AnswerQuestion request, unvalidated: zeros mean the protocol's defaults."""

    question: str
    context: str
    top_k: int = 0
    max_answer_length: int = 0
    doc_stride: int = 0
    handle_impossible_answer: bool = False


@dataclass(frozen=True)
class Window:
    """One model input: question + a slice of the context."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    context_tokens: np.ndarray
    """bool [len]: the tokens an answer may start or end on (this slice of the context)."""
    normalizer: np.ndarray
    """bool [len]: the tokens the start/end softmaxes run over (context and [CLS])."""
    encoding: Any
    """The tokenizers.Encoding, for mapping tokens back to words and characters."""

    needs = Needs(spans=True)


@dataclass(frozen=True)
class QAJob:
    windows: tuple[Window, ...]
    context: str
    context_sequence: int
    """Which sequence of the pair is the context (1 when the question comes first)."""
    top_k: int
    max_answer_length: int
    handle_impossible_answer: bool


def _check_room(question_tokens: int, specials: int, limit: int, doc_stride: int, explicit: bool) -> int:
    room = limit - question_tokens - specials
    if room < 1:
        raise InvalidArgument(
            "question",
            f"must leave room for the context in the model's "
            f"{limit} tokens (max_input_tokens), got {question_tokens} tokens",
        )
    if doc_stride >= room:
        if explicit:
            raise InvalidArgument(
                "doc_stride",
                f"must be below {room}, the context tokens per window beside this question, got {doc_stride}",
            )
        doc_stride = room - 1  # the default adapts to small windows and long questions
    return doc_stride


def encode(params: QAParams, model: LoadedModel) -> QAJob:
    """Validate and cut into windows (tokenizes the whole context: call it off the event loop)."""
    require_text("question", params.question)
    require_text("context", params.context)
    top_k = check_range("top_k", params.top_k, 0, MAX_TOP_K) or DEFAULT_TOP_K
    max_answer = (
        check_range("max_answer_length", params.max_answer_length, 0, MAX_ANSWER_LENGTH) or DEFAULT_MAX_ANSWER_LENGTH
    )
    tokenizer, limit = model.tokenizer, model.max_input_tokens
    if not getattr(tokenizer, "is_fast", False):
        raise FailedPrecondition(
            f"model {model.spec.name!r} needs a fast (tokenizers) tokenizer "
            "for question answering: character offsets come from it"
        )
    # Default stride as the pipeline's: min(window // 2, 128).
    stride = params.doc_stride or min(limit // 2, DEFAULT_DOC_STRIDE)
    question_tokens = len(tokenizer(params.question, add_special_tokens=False)["input_ids"])
    stride = _check_room(
        question_tokens, tokenizer.num_special_tokens_to_add(pair=True), limit, stride, explicit=params.doc_stride > 0
    )

    question_first = tokenizer.padding_side == "right"
    encoded = tokenizer(
        text=params.question if question_first else params.context,
        text_pair=params.context if question_first else params.question,
        truncation="only_second" if question_first else "only_first",
        max_length=limit,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
    )
    context_sequence = 1 if question_first else 0
    cls_id = tokenizer.cls_token_id
    windows = []
    for i, ids in enumerate(encoded["input_ids"]):
        sequence_ids = encoded.sequence_ids(i)
        context_tokens = np.array([s == context_sequence for s in sequence_ids], dtype=bool)
        # [CLS] stays in the softmax: its start*end score is the "no answer" score.
        normalizer = context_tokens | (np.asarray(ids) == cls_id if cls_id is not None else False)
        types = encoded["token_type_ids"][i] if "token_type_ids" in encoded else None
        windows.append(
            Window(
                tuple(ids),
                tuple(types) if types is not None else None,
                context_tokens,
                normalizer,
                encoded.encodings[i],
            )
        )
    return QAJob(tuple(windows), params.context, context_sequence, top_k, max_answer, params.handle_impossible_answer)
