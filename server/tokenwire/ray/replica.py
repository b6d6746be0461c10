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

import asyncio
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
from .wire import OK, REPLICA_KEY, Metadata, ModelDescription, Reply, Status, StreamItem

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


STREAM_FLUSH_S = 0.01
"""How long a stream's item waits for more of its messages (after its first item, which goes at
once). Each item is a Ray object through ingress and proxy, whose cost per item is fixed: merged
deltas are what lets the hop keep up with the decode loop (docs/ray.md, overhead)."""


async def _pump(messages: AsyncIterator[Any], queued: list[Any], ready: asyncio.Event) -> None:
    """The handler's messages, into `queued`; `ready` set on each and at the end."""
    try:
        async with aclosing(messages) as it:  # type: ignore[type-var]
            async for message in it:
                queued.append(message)
                ready.set()
    finally:
        ready.set()


def _has_usage(message: Any) -> bool:
    return "usage" in message.DESCRIPTOR.fields_by_name and bool(message.HasField("usage"))


def _mergeable(a: Any, b: Any) -> bool:
    """Consecutive deltas of one sequence, the first not its sequence's (or the stream's) last."""
    return (
        a.DESCRIPTOR.full_name == _DELTA
        and b.DESCRIPTOR.full_name == _DELTA
        and a.index == b.index
        and not a.finish_reason
        and not a.HasField("usage")
        and not b.HasField("usage")
    )


_DELTA = "tokenwire.v1.GenerateStreamResponse"


def merge_deltas(messages: list[Any]) -> list[Any]:
    """`messages` with consecutive deltas of a sequence merged into one GenerateStreamResponse:
    text concatenated, token ids and logprobs appended, the last delta's final fields (finish
    reason, matched stop, cumulative logprob, score) kept, the first's `model` and `seed`. The
    client reads the same sequence: the protocol allows any number of tokens per message."""
    out: list[Any] = []
    for message in messages:
        if out and _mergeable(out[-1], message):
            text = out[-1].text + message.text
            out[-1].MergeFrom(message)
            out[-1].text = text
        else:
            out.append(message)
    return out


async def _noop() -> None:
    return None


def _replica_name() -> str:
    """This Serve replica's actor name (`SERVE_REPLICA::app#deployment#id`, namespace "serve");
    empty outside Serve."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.to_full_id_str())
    except Exception:  # not in a replica (unit use)
        return ""


class ModelReplica:
    """One model, served to the ingress. Not a Serve deployment by itself: `app.py` wraps it."""

    async def __init__(self, spec: ModelSpec, core_threads: int | None, image_limits: ImageLimits) -> None:  # type: ignore[misc]  # Serve awaits async constructors
        self.spec = spec
        self.replica_name = _replica_name()
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
            return Reply(None, self._named(failed.status))
        return Reply(response, self._named(Status(OK, "", context.trailers)))

    def _named(self, status: Status) -> Status:
        """`status` with the trailer naming this replica."""
        return Status(status.code, status.message, (*status.trailers, (REPLICA_KEY, self.replica_name)))

    async def call_stream(self, path: str, request: Any, metadata: Metadata) -> AsyncIterator[StreamItem]:
        """A server-streaming RPC. The handler runs in a task of its own; what it produced while
        the previous item was going out leaves as one item, consecutive deltas of a sequence
        merged (`merge_deltas`). After the first item, an item waits `STREAM_FLUSH_S` for more.
        The message carrying `usage` (by the protocol, the last one) waits for the end of the
        call and its trailers."""
        behavior: Callable[[Any, ReplicaContext], AsyncIterator[Any]] = self._handlers[path].unary_stream
        context = ReplicaContext(metadata)
        queued: list[Any] = []
        ready = asyncio.Event()
        pump = asyncio.ensure_future(_pump(behavior(request, context), queued, ready))
        last = None
        first = True
        try:
            while True:
                await ready.wait()
                if not first and not pump.done():
                    await asyncio.sleep(STREAM_FLUSH_S)
                ready.clear()
                batch = merge_deltas([*((last,) if last is not None else ()), *queued])
                queued.clear()
                last = batch.pop() if batch and _has_usage(batch[-1]) else None
                if batch:
                    first = False
                    yield StreamItem(tuple(batch))
                if pump.done() and not queued:
                    break
            pump.result()
        except Aborted as failed:
            yield StreamItem((last,) if last is not None else (), self._named(failed.status))
            return
        finally:
            pump.cancel()
        yield StreamItem((last,) if last is not None else (), self._named(Status(OK, "", context.trailers)))

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
