"""Protobuf requests of the batched encoder RPCs → the task modules' params (enums by table;
an enum value this server does not know is INVALID_ARGUMENT naming the field)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidArgument
from ..understanding.classify_text import ClassifyTextParams
from ..understanding.classify_tokens import ClassifyTokensParams
from ..understanding.embed_text import EmbedTextParams
from ..understanding.rerank import RerankParams
from ..v1 import understanding_pb2 as pb

# "" = the model's own.
CLASSIFY_FUNCTIONS: dict[int, str] = {
    pb.CLASSIFY_FUNCTION_UNSPECIFIED: "",
    pb.CLASSIFY_FUNCTION_SOFTMAX: "softmax",
    pb.CLASSIFY_FUNCTION_SIGMOID: "sigmoid",
    pb.CLASSIFY_FUNCTION_NONE: "none",
}
AGGREGATIONS: dict[int, str] = {
    pb.AGGREGATION_UNSPECIFIED: "none",
    pb.AGGREGATION_NONE: "none",
    pb.AGGREGATION_SIMPLE: "simple",
    pb.AGGREGATION_FIRST: "first",
    pb.AGGREGATION_AVERAGE: "average",
    pb.AGGREGATION_MAX: "max",
}
POOLINGS: dict[int, str] = {
    pb.POOLING_UNSPECIFIED: "",
    pb.POOLING_CLS: "cls",
    pb.POOLING_MEAN: "mean",
    pb.POOLING_MAX: "max",
    pb.POOLING_LAST: "last",
}


def _enum(field: str, value: int, table: Mapping[int, str]) -> str:
    if value not in table:
        raise InvalidArgument(field, f"unknown value {value}")
    return table[value]


def classify_text(request: pb.ClassifyTextRequest) -> ClassifyTextParams:
    return ClassifyTextParams(
        tuple((i.text, i.text_pair) for i in request.inputs),
        request.top_k,
        _enum("function", request.function, CLASSIFY_FUNCTIONS),
        request.truncate,
    )


def classify_tokens(request: pb.ClassifyTokensRequest) -> ClassifyTokensParams:
    return ClassifyTokensParams(
        request.text,
        _enum("aggregation", request.aggregation, AGGREGATIONS),
        tuple(request.ignore_labels),
        request.truncate,
    )


def embed_text(request: pb.EmbedTextRequest) -> EmbedTextParams:
    return EmbedTextParams(
        tuple(request.texts),
        _enum("pooling", request.pooling, POOLINGS),
        request.normalize,
        request.dimensions,
        request.truncate,
    )


def rerank(request: pb.RerankRequest) -> RerankParams:
    return RerankParams(request.query, tuple(request.documents), request.top_n, request.truncate, request.raw_scores)
