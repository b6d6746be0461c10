"""What the ingress and the model replicas hand each other through Ray (pickled).

Kept apart from `replica.py` so the ingress, which routes and never runs a model, does not
import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]
OK = grpc.StatusCode.OK.value[0]
CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
REPLICA_KEY = "ray-replica"
"""Trailer naming the Serve replica that ran the call (its actor name, in namespace "serve")."""


@dataclass(frozen=True)
class Status:
    """How a call ended: the numeric status code, its message, and the trailing metadata
    (`x-request-id`, timings, `grpc-status-details-bin` with BadRequest / RetryInfo)."""

    code: int
    message: str
    trailers: Metadata


@dataclass(frozen=True)
class Reply:
    """A unary call's outcome: `response` is None when `status.code` is not OK."""

    response: Any
    status: Status


@dataclass(frozen=True)
class StreamItem:
    """One item of a streamed call: the messages that were ready together (deltas of one
    sequence already merged), the end of the call, or both (the last message travels with the
    end, so the ingress can hand the trailers to Serve's proxy with it). One item is one Ray
    object: the fewer, the cheaper the hop."""

    messages: tuple[Any, ...] = ()
    end: Status | None = None


@dataclass(frozen=True)
class ModelDescription:
    """What a model replica reports to the ingress (health, task table)."""

    name: str
    tasks: tuple[str, ...]
    ready: bool
