"""Servicers for RPCs whose engines are still to come (none at present: the table is empty).

They already do what every real handler does first — find the model and check it serves the
task (NOT_FOUND / FAILED_PRECONDITION / UNAVAILABLE) — then answer UNIMPLEMENTED saying so,
so clients can code against the final error behaviour today.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..errors import Unimplemented
from ..models.registry import ModelRegistry
from ..tasks import Task

# RPC name → (task, whether it streams, the issue that implements it).
_PENDING: dict[str, tuple[Task, bool, str]] = {}


def _pending_method(rpc: str, task: Task, streams: bool, owner: str) -> Callable[..., Any]:
    message = f"{rpc} is not implemented yet in this server version (coming with {owner})"

    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._registry.resolve(request.model, task)
        raise Unimplemented(message)

    async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self._registry.resolve(request.model, task)
        raise Unimplemented(message)
        yield  # pragma: no cover  (makes this an async generator)

    method = stream if streams else unary
    method.__name__ = rpc
    return method


def _pending_servicer(base: type) -> type:
    methods: dict[str, Any] = {
        rpc: _pending_method(rpc, *spec) for rpc, spec in _PENDING.items() if hasattr(base, rpc)}

    def __init__(self: Any, registry: ModelRegistry) -> None:
        self._registry = registry

    return type(f"Pending{base.__name__}", (base,), {"__init__": __init__, **methods})

