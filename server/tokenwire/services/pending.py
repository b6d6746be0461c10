"""Servicers for the RPCs whose engines are still to come (Understanding, Multimodal).

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
from ..v1 import multimodal_pb2_grpc, understanding_pb2_grpc

# RPC name → (task, whether it streams, the issue that implements it).
_PENDING: dict[str, tuple[Task, bool, str]] = {
    "FillMask": (Task.FILL_MASK, False, "the Understanding service"),
    "NextSentence": (Task.NEXT_SENTENCE, False, "the Understanding service"),
    "AnswerQuestion": (Task.ANSWER_QUESTION, False, "the Understanding service"),
    "MultimodalChat": (Task.MULTIMODAL_CHAT, False, "the Multimodal service"),
    "MultimodalChatStream": (Task.MULTIMODAL_CHAT, True, "the Multimodal service"),
    "ClassifyImage": (Task.CLASSIFY_IMAGE, False, "the Multimodal service"),
    "Embed": (Task.EMBED, False, "the Multimodal service"),
}


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


PendingUnderstandingServicer = _pending_servicer(understanding_pb2_grpc.UnderstandingServicer)
PendingMultimodalServicer = _pending_servicer(multimodal_pb2_grpc.MultimodalServicer)
