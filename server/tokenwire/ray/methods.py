"""The RPC table of the Ray application, derived from the generated descriptors.

One row per method of the four tokenwire services: its path, whether it streams, its response
class, and whether its request names a model (those are routed to that model's deployment;
ListModels, which has no `model` field, is asked of every model deployment and merged).
Dispatch goes through this table, so a new RPC in the .proto files needs no code here.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import message_factory
from google.protobuf.message import Message

from ..v1 import generation_pb2, models_pb2, multimodal_pb2, understanding_pb2

_FILES = (
    (generation_pb2.DESCRIPTOR, "Generation"),
    (understanding_pb2.DESCRIPTOR, "Understanding"),
    (multimodal_pb2.DESCRIPTOR, "Multimodal"),
    (models_pb2.DESCRIPTOR, "Models"),
)

# Import paths Serve's gRPC proxy calls as `fn(servicer, server)` (gRPCOptions). The health
# service is answered by the ingress like any user service; reflection is registered by
# `proxy_services.add_reflection` so that it runs in the proxy itself.
SERVICER_FUNCTIONS: tuple[str, ...] = (
    "tokenwire.v1.generation_pb2_grpc.add_GenerationServicer_to_server",
    "tokenwire.v1.understanding_pb2_grpc.add_UnderstandingServicer_to_server",
    "tokenwire.v1.multimodal_pb2_grpc.add_MultimodalServicer_to_server",
    "tokenwire.v1.models_pb2_grpc.add_ModelsServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
    "tokenwire.ray.proxy_services.add_reflection",
)


@dataclass(frozen=True)
class Rpc:
    path: str
    """`/tokenwire.v1.Generation/Generate`: the key handlers are registered under."""
    service: str
    name: str
    streaming: bool
    response: type[Message]
    routed: bool
    """The request has a `model` field: the call goes to that model's deployment."""


def _table() -> dict[str, Rpc]:
    rpcs: dict[str, Rpc] = {}
    for file, service_name in _FILES:
        service = file.services_by_name[service_name]
        for method in service.methods:
            rpcs[method.name] = Rpc(
                path=f"/{service.full_name}/{method.name}",
                service=service.full_name,
                name=method.name,
                streaming=method.server_streaming,
                response=message_factory.GetMessageClass(method.output_type),
                routed="model" in method.input_type.fields_by_name,
            )
    return rpcs


RPCS: dict[str, Rpc] = _table()
"""By method name: Serve's proxy calls the ingress method named like the RPC, so method names
must be unique across the services (checked at import)."""

assert len(RPCS) == sum(len(f.services_by_name[s].methods) for f, s in _FILES), "RPC names must be unique"
