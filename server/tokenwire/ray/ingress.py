"""The ingress deployment: Serve's gRPC proxy hands it every call; it routes by `model`.

Serve's proxy calls the ingress method named like the RPC (`Generate`, `FillMask`, `Check`…),
with the request already parsed and a `grpc_context` (Serve's `RayServegRPCContext`). The
methods are made from `methods.RPCS` below: a routed RPC goes to the deployment of the model
its request names (NOT_FOUND listing the models otherwise, as the plain server says it);
ListModels asks every model and merges; grpc.health.v1 is answered here from what the model
deployments report.

What Serve's proxy (2.60) carries back, and how this module lives with it:

- A context is copied onto the client's call only together with a returned or streamed
  message. A unary failure is therefore *returned* (an empty response, with code, message
  and trailers set on the context): the client gets the status code, the message and the
  trailers — `grpc-status-details-bin` (BadRequest, RetryInfo) and `x-request-id` included.
- A stream that fails before or between messages can only *raise* with the code set on the
  context: the client gets the code and the message, not the details or trailers. A stream
  that ends well sends its trailers (timings, `x-request-id`) with its last message (the one
  with `usage`, held back by the replica for that).
- The client's deadline is not passed on (the context has no `time_remaining`); a call whose
  deadline passes is cancelled, and the cancellation reaches the replica's scheduler.
- Serve adds a `request_id` trailer of its own.

A replica that dies (`ray.kill`, a crashed node) fails the streams that had already sent it
messages with UNAVAILABLE; a unary call, or a stream that had sent nothing yet, is sent again to
another replica (`REPLICA_ATTEMPTS`): nothing was delivered, and generation has no side effects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from ray.exceptions import RayActorError

from ..errors import NotFound, TokenwireError, Unavailable
from ..interceptor import REQUEST_ID_KEY, request_id, status_for
from ..tasks import SERVICE_OF_TASK, Task
from .methods import RPCS, Rpc
from .proxy_services import TOKENWIRE_SERVICES
from .wire import CODES, OK, Metadata, ModelDescription, Reply, Status

log = logging.getLogger(__name__)

MODELS_SERVICE = "tokenwire.v1.Models"
DESCRIBE_TIMEOUT_S = 5.0
WATCH_INTERVAL_S = 1.0
_SERVING: int = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING

try:  # Ray ≥ 2.44 names a replica that is gone for good apart from one that is restarting
    from ray.exceptions import ActorUnavailableError

    _REPLICA_GONE: tuple[type[BaseException], ...] = (RayActorError, ActorUnavailableError)
except ImportError:  # pragma: no cover
    _REPLICA_GONE = (RayActorError,)


REPLICA_ATTEMPTS = 3
"""A call whose replica dies before anything reached the client is sent again (Serve's router
drops the dead replica), at most this many times in all; one that had sent messages fails
UNAVAILABLE."""


def _gone(model: str) -> Unavailable:
    return Unavailable(f"the replica serving model {model!r} went away; retry")


class RpcFailed(Exception):
    """Raised from a stream with the status already set on Serve's context."""


def _call_metadata(grpc_context: Any) -> tuple[str, Metadata]:
    """The request id (the client's `x-request-id`, else a fresh one, shared by every replica a
    call reaches) and the metadata the replica sees."""
    rid = request_id(grpc_context)
    kept = tuple((k, v) for k, v in grpc_context.invocation_metadata() if k != REQUEST_ID_KEY)
    return rid, ((REQUEST_ID_KEY, rid), *kept)


def _failure(exc: TokenwireError, rid: str, rpc: Rpc) -> Status:
    code, message, trailers = status_for(exc, rid, rpc.path)
    return Status(code.value[0], message, ((REQUEST_ID_KEY, rid), *trailers))


def _set_status(grpc_context: Any, status: Status) -> None:
    grpc_context.set_trailing_metadata(list(status.trailers))
    if status.code != OK:
        grpc_context.set_code(CODES[status.code])
        grpc_context.set_details(status.message)


class Ingress:
    """Routes each call to its model's deployment. Methods named like the RPCs are added below."""

    def __init__(self, models: dict[str, Any]) -> None:
        """`models`: model name → DeploymentHandle of its ModelReplica deployment."""
        self._models = models
        self._tasks: dict[str, tuple[str, ...]] = {}
        self.draining = False

    # ---- routing ----

    def _handle(self, name: str) -> Any:
        if self.draining:
            raise Unavailable("the server is shutting down; retry on another instance")
        try:
            return self._models[name]
        except KeyError:
            available = ", ".join(sorted(self._models)) or "none"
            if not name:
                raise NotFound(f"model is required; available models: {available}") from None
            raise NotFound(f"model {name!r} not found; available models: {available}") from None

    async def unary(self, rpc: Rpc, request: Any, grpc_context: Any) -> Any:
        rid, metadata = _call_metadata(grpc_context)
        try:
            if rpc.routed:
                handle = self._handle(request.model)
                for attempt in range(REPLICA_ATTEMPTS):
                    try:
                        reply: Reply = await handle.call.remote(rpc.path, request, metadata)
                        break
                    except _REPLICA_GONE as exc:
                        if attempt + 1 == REPLICA_ATTEMPTS:
                            raise _gone(request.model) from exc
                        log.info("%s: replica went away; retrying on another (%s)", rpc.name, exc)
            else:
                reply = await self._fan_out(rpc, request, metadata)
        except TokenwireError as exc:
            reply = Reply(None, _failure(exc, rid, rpc))
        _set_status(grpc_context, reply.status)
        return reply.response if reply.status.code == OK else rpc.response()

    async def stream(self, rpc: Rpc, request: Any, grpc_context: Any) -> AsyncIterator[Any]:
        rid, metadata = _call_metadata(grpc_context)
        try:
            handle = self._handle(request.model)
        except TokenwireError as exc:
            _set_status(grpc_context, _failure(exc, rid, rpc))
            raise RpcFailed(exc.message) from exc
        streaming = handle.options(stream=True)
        for attempt in range(REPLICA_ATTEMPTS):
            sent = False
            try:
                async for item in streaming.call_stream.remote(rpc.path, request, metadata):
                    *messages, last = item.messages or (None,)
                    for message in messages:
                        sent = True
                        yield message
                    if item.end is not None:
                        _set_status(grpc_context, item.end)
                    if last is not None:
                        sent = True
                        yield last
                    if item.end is not None and item.end.code != OK:
                        raise RpcFailed(item.end.message)
                return
            except _REPLICA_GONE as exc:
                if sent or attempt + 1 == REPLICA_ATTEMPTS:
                    status = _failure(_gone(request.model), rid, rpc)
                    _set_status(grpc_context, status)
                    raise RpcFailed(status.message) from exc
                log.info("%s: replica went away before any message; retrying on another (%s)", rpc.name, exc)

    async def _fan_out(self, rpc: Rpc, request: Any, metadata: Metadata) -> Reply:
        """ListModels: every model deployment answers for its model; merged by name. A model
        whose replicas do not answer is left out (it is not serving)."""
        if self.draining:
            raise Unavailable("the server is shutting down; retry on another instance")
        replies = await asyncio.gather(
            *(handle.call.remote(rpc.path, request, metadata) for handle in self._models.values()),
            return_exceptions=True,
        )
        merged: Any = rpc.response()
        trailers: Metadata = ()
        for reply in replies:
            if isinstance(reply, BaseException):
                log.warning("%s: a model deployment did not answer: %s", rpc.name, reply)
                continue
            if reply.status.code != OK:
                failed: Reply = reply
                return failed
            merged.MergeFrom(reply.response)
            trailers = trailers or reply.status.trailers
        if "models" in merged.DESCRIPTOR.fields_by_name:
            ordered = sorted(merged.models, key=lambda m: m.name)
            del merged.models[:]
            merged.models.extend(ordered)
        return Reply(merged, Status(OK, "", trailers))

    # ---- health ----

    async def _describe(self, name: str, handle: Any) -> ModelDescription | None:
        try:
            described: ModelDescription = await asyncio.wait_for(_await(handle.describe.remote()), DESCRIBE_TIMEOUT_S)
        except Exception as exc:  # no replica answers: the model is not serving
            log.info("model %s not serving: %s", name, exc)
            return None
        self._tasks[name] = described.tasks
        return described

    async def _status(self, service: str) -> int | None:
        """The health of `service` (None: unknown service)."""
        if service not in ("", *TOKENWIRE_SERVICES):
            return None
        if self.draining:
            return _NOT_SERVING
        if service == MODELS_SERVICE:
            return _SERVING
        described = await asyncio.gather(*(self._describe(n, h) for n, h in self._models.items()))
        ready: dict[str, bool] = {}
        for name, d in zip(self._models, described, strict=True):
            for task in self._tasks.get(name, ()):
                key = SERVICE_OF_TASK[Task(task)]
                ready[key] = ready.get(key, False) or (d is not None and d.ready)
        serving = any(ready.values()) if service == "" else ready.get(service, False)
        return _SERVING if serving else _NOT_SERVING

    async def Check(self, request: Any, grpc_context: Any) -> health_pb2.HealthCheckResponse:
        status = await self._status(request.service)
        if status is None:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: Any, grpc_context: Any) -> Any:
        response = health_pb2.HealthListResponse()
        for service in ("", *TOKENWIRE_SERVICES):
            status = await self._status(service)
            response.statuses[service].status = status if status is not None else _NOT_SERVING
        return response

    async def Watch(self, request: Any, grpc_context: Any) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: int | None = -1
        while True:
            status = await self._status(request.service)
            current = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status
            if current != last:
                last = current
                yield health_pb2.HealthCheckResponse(status=current)
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def drain(self) -> None:
        """SIGTERM: health NOT_SERVING and new calls UNAVAILABLE; calls in flight go on."""
        self.draining = True


async def _await(response: Any) -> Any:
    return await response


def _method(rpc: Rpc) -> Callable[..., Any]:
    if rpc.streaming:

        async def streaming(self: Ingress, request: Any, grpc_context: Any) -> AsyncIterator[Any]:
            async for message in self.stream(rpc, request, grpc_context):
                yield message

        method: Callable[..., Any] = streaming
    else:

        async def unary(self: Ingress, request: Any, grpc_context: Any) -> Any:
            return await self.unary(rpc, request, grpc_context)

        method = unary
    method.__name__ = method.__qualname__ = rpc.name
    method.__doc__ = f"{rpc.path}"
    return method


for _rpc in RPCS.values():
    setattr(Ingress, _rpc.name, _method(_rpc))
