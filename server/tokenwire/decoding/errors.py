"""Errors raised by the decoding layer."""

from __future__ import annotations


class InvalidParameter(ValueError):
    """A decoding parameter is out of range; ``field`` names it (the server maps this to
    INVALID_ARGUMENT with that field name).

    The message always reads like ``"top_p must be in (0, 1], got 1.5"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
