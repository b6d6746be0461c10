"""The Models service: what is loaded, and the tokenizer of each model."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from ..engine.engines import Engines
from ..errors import FailedPrecondition, InvalidArgument
from ..models.loader import LoadedModel
from ..models.registry import ModelEntry, ModelRegistry
from ..v1 import models_pb2, models_pb2_grpc
from .convert import PB_TO_TASK, model_info

# Text longer than this is refused before the tokenizer sees it (bytes of UTF-8).
MAX_TOKENIZE_BYTES = 4 * 2**20


def _transformers_tokenizer(model: LoadedModel) -> Any:
    """The model's tokenizer when it is a transformers one (a native open_clip tokenizer has no
    offsets, tokens or decode options): FAILED_PRECONDITION otherwise."""
    tok = model.tokenizer
    if not hasattr(tok, "convert_ids_to_tokens"):
        raise FailedPrecondition(
            f"model {model.spec.name!r} has a {type(tok).__name__} tokenizer, "
            "which Tokenize and Detokenize do not support"
        )
    return tok


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, registry: ModelRegistry, engines: Engines) -> None:
        self._registry = registry
        self._engines = engines

    def _info(self, entry: ModelEntry) -> models_pb2.ModelInfo:
        return model_info(entry, self._engines.decode_info(entry.spec.name))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        task = PB_TO_TASK.get(request.task)
        if request.task and task is None:
            raise InvalidArgument("task", f"must be a known Task value, got {request.task}")
        entries = sorted(
            (e for e in self._registry.entries.values() if task is None or task in e.tasks), key=lambda e: e.spec.name
        )
        return models_pb2.ListModelsResponse(models=[self._info(e) for e in entries])

    async def GetModelInfo(
        self, request: models_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.ModelInfo:
        return self._info(self._registry.entry(request.model))

    async def Tokenize(
        self, request: models_pb2.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.TokenizeResponse:
        model = self._registry.resolve(request.model)
        if not request.text:
            raise InvalidArgument("text", "must not be empty")
        if len(request.text.encode()) > MAX_TOKENIZE_BYTES:
            raise InvalidArgument("text", f"must be at most {MAX_TOKENIZE_BYTES} bytes")
        add_special = request.add_special_tokens if request.HasField("add_special_tokens") else True
        tok = _transformers_tokenizer(model)
        # Tokenizing a long text takes milliseconds: keep it off the event loop.
        enc = await asyncio.to_thread(tok, request.text, add_special_tokens=add_special, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        return models_pb2.TokenizeResponse(
            ids=ids,
            tokens=tok.convert_ids_to_tokens(ids),
            offsets=[models_pb2.Offset(start=s, end=e) for s, e in enc["offset_mapping"]],
        )

    async def Detokenize(
        self, request: models_pb2.DetokenizeRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.DetokenizeResponse:
        model = self._registry.resolve(request.model)
        _transformers_tokenizer(model)
        limit = model.vocab_size
        for i, token_id in enumerate(request.ids):
            if token_id >= limit:
                raise InvalidArgument(f"ids[{i}]", f"must be below the vocabulary size {limit}, got {token_id}")
        text = await asyncio.to_thread(
            model.tokenizer.decode, list(request.ids), skip_special_tokens=request.skip_special_tokens
        )
        return models_pb2.DetokenizeResponse(text=text)
