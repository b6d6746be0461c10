"""Code that runs inside Serve's gRPC proxy actor (named in `methods.SERVICER_FUNCTIONS`).

Serve's own reflection (`gRPCOptions.enable_reflection`) uses grpcio-reflection as it is, which
cannot resolve method symbols (`tokenwire.v1.Models.Tokenize`) that ghz asks for. The proxy
calls every servicer function as `fn(mock_servicer, server)` and routes the handlers it
registers to the application, except for services marked "passthrough", which it runs itself.
`add_reflection` marks reflection passthrough and registers tokenwire's method-aware
reflection (`tokenwire.reflection`), listing the same services as the plain server.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from ..reflection import enable_reflection

TOKENWIRE_SERVICES: tuple[str, ...] = (
    "tokenwire.v1.Generation",
    "tokenwire.v1.Understanding",
    "tokenwire.v1.Multimodal",
    "tokenwire.v1.Models",
)


def add_reflection(servicer: Any, server: Any) -> None:
    """A servicer function for gRPCOptions: `servicer` (Serve's mock) is not used."""
    mark = getattr(server, "add_passthrough_service", None)
    if mark is None:  # a Serve without passthrough services would route reflection to the app
        raise RuntimeError("this Ray Serve cannot run reflection in its proxy; use ray[serve]>=2.60")
    mark(reflection.SERVICE_NAME)
    enable_reflection((*TOKENWIRE_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
