"""The one interceptor every call passes through.

For each call it opens a scope (request id, trailers), refuses calls while draining
(UNAVAILABLE) or without valid credentials (UNAUTHENTICATED), turns domain errors into status
codes with rich details (BadRequest field violations, RetryInfo), turns anything unexpected into
INTERNAL with the request id and no traceback (the traceback goes to the log under that id),
sends `x-request-id` (the client's own when it sent one) and the call's trailers, and records
the request metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import InvalidArgument, ResourceExhausted, TokenwireError, Unauthenticated, Unavailable
from .observability import metrics
from .observability.context import open_scope
from .security import TokenAuth

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
_CLIENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
_HEALTH_PREFIX = "/grpc.health.v1.Health/"


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The client's `x-request-id` when it is sane, else a fresh one."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _CLIENT_ID_RE.match(value):
            return value
    return uuid.uuid4().hex[:16]


def _details(exc: TokenwireError) -> list[any_pb2.Any]:
    packed: list[any_pb2.Any] = []
    if isinstance(exc, InvalidArgument):
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in exc.violations
            ]
        )
        packed.append(any_pb2.Any())
        packed[-1].Pack(bad)
    if isinstance(exc, ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after_s * 1000))
        packed.append(any_pb2.Any())
        packed[-1].Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return packed


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA), without importing torch into the interceptor."""
    return any(t.__name__ == "OutOfMemoryError" and t.__module__.startswith("torch") for t in type(exc).__mro__)


def status_for(exc: BaseException, rid: str, method: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """(code, message, trailing metadata) a client sees for `exc`; logs unexpected ones."""
    if _is_out_of_memory(exc):
        exc = ResourceExhausted(
            "the model ran out of device memory on this request; retry later, or with a shorter input or fewer tokens"
        )
    if isinstance(exc, TokenwireError):
        code, message, details = exc.code, exc.message, _details(exc)
    else:
        log.error("%s failed unexpectedly", method, exc_info=exc)
        code, message, details = grpc.StatusCode.INTERNAL, f"internal error (request id {rid})", []
    proto = status_pb2.Status(code=code.value[0], message=message, details=details)
    return code, message, tuple(rpc_status.to_status(proto).trailing_metadata)


class _Call:
    """Book-keeping of one call: scope, checks, outcome, metrics."""

    def __init__(self, owner: ServerInterceptor, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.rid = request_id(context)
        self.trailers = open_scope(self.rid)
        self.start = time.perf_counter()
        self.code = "OK"
        self.model = ""
        self._owner = owner
        self._recorded = False

    def admit(self, request: Any) -> None:
        self.model = str(getattr(request, "model", "") or "")
        owner = self._owner
        if owner.draining and not self.method.startswith(_HEALTH_PREFIX):
            raise Unavailable("the server is shutting down; retry on another instance")
        if (
            owner.auth is not None
            and owner.auth.required_for(self.method)
            and not owner.auth.allows(self.context.invocation_metadata())
        ):
            raise Unauthenticated("missing or invalid credentials: send 'authorization: Bearer <token>'")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.rid), *self.trailers)

    async def fail(self, exc: BaseException) -> None:
        code, message, details = status_for(exc, self.rid, self.method)
        self.code = code.name
        self.done()  # before the status goes out: a client that reads the metrics next sees it
        await self.context.abort(code, message, (*details, *self.metadata()))

    def done(self) -> None:
        """Record the call's outcome (once)."""
        if self._recorded or self.method.startswith(_HEALTH_PREFIX):
            return
        self._recorded = True
        rpc = self.method.rsplit("/", 1)[-1]
        metrics.REQUESTS.labels(rpc, self.model, self.code).inc()
        metrics.REQUEST_SECONDS.labels(rpc, self.model).observe(time.perf_counter() - self.start)


def _wrap_unary(
    owner: ServerInterceptor, behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(owner, method, context)
        try:
            call.admit(request)
            response = await behavior(request, context)
        except asyncio.CancelledError:
            call.code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await call.fail(exc)
        finally:
            call.done()
        context.set_trailing_metadata(call.metadata())
        return response

    return handler


def _wrap_stream(owner: ServerInterceptor, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # A coroutine that writes with context.write() (e.g. Health.Watch).
        return _wrap_unary(owner, behavior, method)

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(owner, method, context)
        try:
            call.admit(request)
            async for item in behavior(request, context):
                yield item
        except asyncio.CancelledError:
            call.code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await call.fail(exc)
        finally:
            call.done()
        context.set_trailing_metadata(call.metadata())

    return handler


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpcio ships no types
    """Wraps every unary-response and server-streaming handler (reflection, a bidi stream,
    passes through untouched; it is authenticated only through `auth_exempt`)."""

    def __init__(self, auth: TokenAuth | None = None) -> None:
        self.auth = auth
        self.draining = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_wrap_unary(self, handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_wrap_stream(self, handler.unary_stream, method))
        if handler.stream_stream is not None and self.auth is not None and self.auth.required_for(method):
            return handler._replace(stream_stream=_guard_bidi(self.auth, handler.stream_stream))
        return handler


def _guard_bidi(auth: TokenAuth, behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Reflection (a bidi stream): check credentials once, then delegate."""

    async def guarded(request_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if not auth.allows(context.invocation_metadata()):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or invalid credentials: send 'authorization: Bearer <token>'"
            )
        result = behavior(request_iterator, context)
        if inspect.isasyncgen(result):
            async for item in result:
                yield item
        else:
            await result

    return guarded
