"""Tokenizing the texts of the batched encoder tasks (ClassifyText, ClassifyTokens, EmbedText,
Rerank): one text or a pair, the model's length limit, and a request's list of inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..models.loaded_model import LoadedModel
from .limits import require_text, too_long


@dataclass(frozen=True)
class Encoded:
    """One tokenized input, as the encoder runner takes it."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None


def check_count(field: str, count: int, model: LoadedModel) -> None:
    """A request's list of inputs: at least one, at most the model's max_batch_size."""
    limit = model.spec.max_batch_size
    if not 1 <= count <= limit:
        raise InvalidArgument(
            field, f"must have between 1 and {limit} entries (the model's max_batch_size), got {count}"
        )


def check_texts(field: str, texts: Sequence[str], model: LoadedModel) -> None:
    check_count(field, len(texts), model)
    for i, text in enumerate(texts):
        require_text(f"{field}[{i}]", text)


def encode(
    model: LoadedModel, field: str, text: str, pair: str | None = None, *, truncate: bool = False, **extra: Any
) -> Any:
    """The tokenizer's encoding of `text` (or the pair), within max_input_tokens: cut to fit
    (a pair: the longer text first, a token at a time) when `truncate`, else INVALID_ARGUMENT
    naming `field`. `extra` goes to the tokenizer (offsets, special-token masks)."""
    tokenizer, limit = model.tokenizer, model.max_input_tokens
    encoded = tokenizer(text, pair, **extra) if pair is not None else tokenizer(text, **extra)
    length = len(encoded["input_ids"])
    if length <= limit:
        return encoded
    if not truncate:
        if pair is None:
            raise too_long(field, length, limit)
        raise InvalidArgument(
            field,
            f"the pair must be at most {limit} tokens (the model's max_input_tokens), got {length}; "
            "set truncate to cut the longer text first",
        )
    kwargs = dict(extra, truncation="longest_first" if pair is not None else True, max_length=limit)
    return tokenizer(text, pair, **kwargs) if pair is not None else tokenizer(text, **kwargs)


def as_row(encoded: Any) -> Encoded:
    types = encoded.get("token_type_ids")
    return Encoded(tuple(encoded["input_ids"]), tuple(types) if types is not None else None)
