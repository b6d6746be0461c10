"""Server reflection (v1alpha) that also resolves method names.

ghz asks reflection for `tokenwire.v1.Models.Tokenize` (package.Service.Method); the upb-based
descriptor pool behind grpcio-reflection knows services but not their methods as symbols and
answers "Symbol not found". A name the pool cannot find is retried as its parent (the service),
whose file is the right answer. grpcurl, which asks for services, is unaffected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer


class _MethodAwareReflection(ReflectionServicer):  # type: ignore[misc]  # grpcio ships no types
    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            self._pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            parent = fully_qualified_name.rpartition(".")[0]
            if parent:
                return super()._file_containing_symbol(request, parent)
        return super()._file_containing_symbol(request, fully_qualified_name)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(_MethodAwareReflection(tuple(service_names)), server)
