"""Protobuf and gRPC modules generated from proto/tokenwire/v1 at build time (never committed).

The proto package is `tokenwire.v1`, so protoc's absolute imports (`from tokenwire.v1 import
common_pb2`) resolve to this very package without rewriting.
"""
