"""Per-call context carried by contextvars: the request id and extra trailing metadata.

The interceptor opens a scope for every call; servicers add trailers (`queue-ms`, …) without
touching the gRPC context, and log records pick up the request id through a logging filter.
"""

from __future__ import annotations

import contextvars
import logging

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_TRAILERS: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar("trailers", default=None)


def open_scope(request_id: str) -> list[tuple[str, str]]:
    """Start a call's scope; returns its trailer list (the interceptor sends it at the end)."""
    REQUEST_ID.set(request_id)
    trailers: list[tuple[str, str]] = []
    _TRAILERS.set(trailers)
    return trailers


def add_trailers(*pairs: tuple[str, str]) -> None:
    """Add trailing metadata to the current call (ignored outside a call)."""
    trailers = _TRAILERS.get()
    if trailers is not None:
        trailers.extend(pairs)


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record (the current call's, or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True
