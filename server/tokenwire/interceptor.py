"""The one interceptor that turns domain errors into gRPC statuses.

Handlers raise `tokenwire.errors` exceptions; this maps each to its status code with rich
details (BadRequest field violations, RetryInfo), attaches the request id (`x-request-id`,
taken from the client when sent) to the trailers, and turns anything unexpected into INTERNAL
with that id and no traceback (the traceback goes to the server log under the same id).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import InvalidArgument, ResourceExhausted, TokenwireError

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
_CLIENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The client's `x-request-id` when it is sane, else a fresh one."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _CLIENT_ID_RE.match(value):
            return value
    return uuid.uuid4().hex[:16]


def _details(exc: TokenwireError) -> list[any_pb2.Any]:
    packed: list[any_pb2.Any] = []
    if isinstance(exc, InvalidArgument):
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations])
        packed.append(any_pb2.Any())
        packed[-1].Pack(bad)
    if isinstance(exc, ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after_s * 1000))
        packed.append(any_pb2.Any())
        packed[-1].Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return packed


def status_for(exc: BaseException, rid: str, method: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """(code, message, trailing metadata) a client sees for `exc`; logs unexpected ones."""
    if isinstance(exc, TokenwireError):
        code, message, details = exc.code, exc.message, _details(exc)
    else:
        log.error("request %s: %s failed unexpectedly", rid, method, exc_info=exc)
        code, message, details = (grpc.StatusCode.INTERNAL,
                                  f"internal error (request id {rid})", [])
    proto = status_pb2.Status(code=code.value[0], message=message, details=details)
    status = rpc_status.to_status(proto)
    return code, message, (*status.trailing_metadata, (REQUEST_ID_KEY, rid))


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, rid: str, method: str) -> None:
    code, message, metadata = status_for(exc, rid, method)
    await context.abort(code, message, metadata)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        rid = request_id(context)
        try:
            response = await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _abort(context, exc, rid, method)
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        return response
    return handler


def _wrap_stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # A coroutine that writes with context.write() (e.g. Health.Watch).
        return _wrap_unary(behavior, method)

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        rid = request_id(context)
        try:
            async for item in behavior(request, context):
                yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _abort(context, exc, rid, method)
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-response and server-streaming handler with the error mapping."""

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
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        return handler
