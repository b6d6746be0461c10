"""Request checks shared by the encoder tasks, with the one message shape of tokenwire.errors."""

from __future__ import annotations

from ..errors import InvalidArgument

# Text longer than this is refused before a tokenizer sees it (bytes of UTF-8; the same bound
# as Models.Tokenize). A longer text could only be answered after truncation anyway, and
# tokenizing tens of megabytes would hold a worker thread for seconds.
MAX_TEXT_BYTES = 4 * 2**20


def require_text(field: str, value: str) -> None:
    """`value` must be non-empty and at most MAX_TEXT_BYTES of UTF-8."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    # Cheap upper bound first: a code point is at most 4 bytes.
    if len(value) * 4 > MAX_TEXT_BYTES and len(value.encode()) > MAX_TEXT_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_TEXT_BYTES} bytes of UTF-8, got {len(value.encode())}")


def check_range(field: str, value: int, low: int, high: int) -> int:
    """`value` must lie in [low, high]; returns it."""
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be in [{low}, {high}], got {value}")
    return value


def too_long(field: str, tokens: int, limit: int) -> InvalidArgument:
    """The error for an input over the model's max_input_tokens without `truncate`."""
    return InvalidArgument(
        field,
        f"must be at most {limit} tokens (the model's max_input_tokens), got {tokens}; set truncate to cut it to fit",
    )
