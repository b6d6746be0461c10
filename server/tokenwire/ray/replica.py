"""The model deployment: one model's tokenwire stack, called by the ingress through Ray.

A replica builds what `tokenwire.app.TokenwireServer` builds for its one model — registry and
loader, the engines (one continuous-batching scheduler per generative task), the servicers of
`tokenwire.services` and the `ServerInterceptor` — but opens no port: the ingress hands it
(method path, request, metadata) and it runs the handler the generated
`add_*Servicer_to_server` function would have registered, through the interceptor, with a
`ReplicaContext` standing in for the gRPC one. So request ids, trailers, error mapping (status
code, message, BadRequest / RetryInfo details) and metrics are exactly the plain server's.

The model loads in the (async) constructor: Serve counts a replica as running only once its
model is ready, and a model that fails to load fails the replica (Serve retries it).

What comes back to the ingress is plain data (`wire.Reply`, `wire.StreamItem`), pickled by Ray.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, NamedTuple

import grpc

from ..config import ModelSpec
from ..engine.engines import Engines
from ..interceptor import ServerInterceptor
from ..models.cuda_attention import configure_cuda_attention
from ..models.registry import ModelRegistry, ModelState
from ..multimodal.images import ImageLimits
from ..services.generation import GenerationServicer
from ..services.models import ModelsServicer
from ..services.multimodal import MultimodalServicer
from ..services.understanding import UnderstandingServicer
from ..v1 import generation_pb2_grpc, models_pb2_grpc, multimodal_pb2_grpc, understanding_pb2_grpc
from .wire import OK, Metadata, ModelDescription, Reply, Status, StreamItem

log = logging.getLogger(__name__)


class Aborted(Exception):
    """`context.abort(...)`: the interceptor's way of ending a failed call."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Metadata) -> None:
        super().__init__(details)
        self.status = Status(code.value[0], details, trailers)


class ReplicaContext:
    """The part of `grpc.aio.ServicerContext` the interceptor and servicers use.

    `time_remaining` is None: Serve's proxy does not pass the client's deadline on (a deadline
    reaches the replica as a cancellation when the client gives up)."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata
        self.trailers: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, trailers: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailers = tuple(trailers)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        raise Aborted(code, details, tuple(trailing_metadata))


class _HandlerDetails(NamedTuple):
    method: str
    invocation_metadata: Metadata


class _Recorder:
    """Stands in for a grpc server in `add_*Servicer_to_server`: records the handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


async def _noop() -> None:
    return None


class ModelReplica:
    """One model, served to the ingress. Not a Serve deployment by itself: `app.py` wraps it."""

    async def __init__(self, spec: ModelSpec, core_threads: int | None, image_limits: ImageLimits) -> None:  # type: ignore[misc]  # Serve awaits async constructors
        self.spec = spec
        self.registry = ModelRegistry((spec,))
        self.engines = Engines(core_threads=core_threads)
        self.understanding = UnderstandingServicer(self.registry)
        self.multimodal = MultimodalServicer(self.registry, self.engines, image_limits)
        recorder = _Recorder()
        models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.registry, self.engines), recorder)
        generation_pb2_grpc.add_GenerationServicer_to_server(GenerationServicer(self.registry, self.engines), recorder)
        understanding_pb2_grpc.add_UnderstandingServicer_to_server(self.understanding, recorder)
        multimodal_pb2_grpc.add_MultimodalServicer_to_server(self.multimodal, recorder)
        interceptor = ServerInterceptor()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for path, handler in recorder.handlers.items():

            async def same(_: Any, handler: grpc.RpcMethodHandler = handler) -> grpc.RpcMethodHandler:
                return handler

            self._handlers[path] = await interceptor.intercept_service(same, _HandlerDetails(path, ()))
        configure_cuda_attention()
        await self.registry.load_all(_noop, on_loaded=self.engines.start)
        entry = self.registry.entries[spec.name]
        if entry.state is not ModelState.READY:
            self.close()
            raise RuntimeError(f"model {spec.name!r} failed to load: {entry.error}")

    async def describe(self) -> ModelDescription:
        entry = self.registry.entries[self.spec.name]
        return ModelDescription(self.spec.name, tuple(t.value for t in entry.tasks), entry.state is ModelState.READY)

    async def call(self, path: str, request: Any, metadata: Metadata) -> Reply:
        """A unary RPC, through the interceptor."""
        behavior: Callable[[Any, ReplicaContext], Awaitable[Any]] = self._handlers[path].unary_unary
        context = ReplicaContext(metadata)
        try:
            response = await behavior(request, context)
        except Aborted as failed:
            return Reply(None, failed.status)
        return Reply(response, Status(OK, "", context.trailers))

    async def call_stream(self, path: str, request: Any, metadata: Metadata) -> AsyncIterator[StreamItem]:
        """A server-streaming RPC. Messages go out as they come, except the one carrying `usage`
        (by the protocol, the last one): it waits for the end of the call and its trailers."""
        behavior: Callable[[Any, ReplicaContext], AsyncIterator[Any]] = self._handlers[path].unary_stream
        context = ReplicaContext(metadata)
        last = None
        try:
            async with aclosing(behavior(request, context)) as messages:  # type: ignore[type-var]
                async for message in messages:
                    if last is not None:
                        yield StreamItem(last)
                        last = None
                    if "usage" in message.DESCRIPTOR.fields_by_name and message.HasField("usage"):
                        last = message
                    else:
                        yield StreamItem(message)
        except Aborted as failed:
            yield StreamItem(last, failed.status)
            return
        yield StreamItem(last, Status(OK, "", context.trailers))

    def close(self) -> None:
        self.engines.close()
        self.understanding.close()
        self.multimodal.close()

    def __del__(self) -> None:
        """Serve calls it when the replica stops (after in-flight calls drained)."""
        try:
            self.close()
        except Exception:  # the interpreter may be going away; nothing to report to
            log.debug("closing replica", exc_info=True)
