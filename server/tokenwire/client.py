"""The Python client: typed stubs over one channel, plus helpers for the error details.

    from tokenwire.client import Client
    with Client("127.0.0.1:50051") as c:
        print(c.models.ListModels(pb.ListModelsRequest()))

Each service's stub is an attribute (`generation`, `understanding`, `multimodal`, `models`,
`health`); requests are the generated messages from `tokenwire.v1`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from .v1 import generation_pb2_grpc, models_pb2_grpc, multimodal_pb2_grpc, understanding_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"


class Client:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        options: list[tuple[str, Any]] | None = None,
        tls_ca: bytes | None = None,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
        token: str | None = None,
        tls: bool = False,
    ) -> None:
        """`tls` or `tls_ca`: connect with TLS (`tls_ca` = the server's CA, default the system
        roots); `tls_cert`/`tls_key`: client certificate for mutual TLS; `token`: bearer token
        sent with every call."""
        options = options or [
            ("grpc.max_receive_message_length", 64 * 2**20),
            ("grpc.max_send_message_length", 64 * 2**20),
        ]
        if tls or tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(tls_ca, tls_key, tls_cert)
            if token:
                credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            interceptors = [_BearerToken(token)] if token else []
            self.channel = grpc.intercept_channel(grpc.insecure_channel(target, options=options), *interceptors)
        self.generation = generation_pb2_grpc.GenerationStub(self.channel)
        self.understanding = understanding_pb2_grpc.UnderstandingStub(self.channel)
        self.multimodal = multimodal_pb2_grpc.MultimodalStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def is_serving(self, service: str = "", timeout: float = 2.0) -> bool:
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` on a plaintext channel (gRPC only attaches call
    credentials to TLS channels)."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]  # grpcio ships no types
    def __init__(self, base: Any, metadata: Any) -> None:
        self.method, self.timeout, self.metadata = base.method, base.timeout, metadata
        self.credentials, self.wait_for_ready = base.credentials, base.wait_for_ready
        self.compression = getattr(base, "compression", None)


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs of an INVALID_ARGUMENT's google.rpc.BadRequest detail."""
    status = rpc_status.from_call(error)
    out: list[tuple[str, str]] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


def request_id(error: grpc.RpcError) -> str | None:
    """The server's request id for a failed call (quote it in bug reports)."""
    for key, value in error.trailing_metadata() or ():
        if key == "x-request-id":
            return str(value)
    return None
