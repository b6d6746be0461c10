"""Domain errors and the one place that maps them to gRPC status codes.

Handlers raise these; `tokenwire.interceptor` turns them into statuses with rich details
(`google.rpc.BadRequest` for field errors, `RetryInfo` for back-pressure). Messages follow one
shape: "<field> must be <rule>, got <value>".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc


class TokenwireError(Exception):
    """Base of every error a client may see; `code` is its gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, as `google.rpc.BadRequest.FieldViolation` carries it."""

    field: str
    description: str


class InvalidArgument(TokenwireError):
    """A malformed or out-of-range request field. Names the field(s)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str, *more: FieldViolation) -> None:
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, description), *more)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class NotFound(TokenwireError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(TokenwireError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(TokenwireError):
    """Queue full or memory exhausted; `retry_after_s` becomes a `google.rpc.RetryInfo`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(TokenwireError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TokenwireError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(TokenwireError):
    code = grpc.StatusCode.UNAUTHENTICATED


@dataclass
class ConfigError(Exception):
    """The model registry file is wrong; the server refuses to start and says where."""

    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "invalid configuration:\n  - " + "\n  - ".join(self.problems)
