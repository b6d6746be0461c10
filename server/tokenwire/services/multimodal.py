"""The Multimodal service: LLaVA-family chat through the generation engine; CLIP / OpenCLIP
classification and embeddings through a per-model dynamic batcher.

MultimodalChat reuses the Generation servicer's submit / collect / relay, so a chat request
decodes in the same scheduler, core and parameters as Generate (sampling, beams, stop
strings, streaming, cancellation, seeds); only the prompt differs (chat template + images,
prefilled on their own). Image decoding, processing and tokenization run in worker threads;
forwards run on the scheduler's or the batcher's thread; the event loop only routes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from ..engine.batcher import BatchLimits, DynamicBatcher
from ..engine.engines import Engines
from ..models.loader import LoadedModel
from ..models.registry import ModelRegistry
from ..multimodal.chat import chat_parser
from ..multimodal.clip import ClipItem, prepare_classify, prepare_embed, run_batch
from ..multimodal.encoders import DualEncoder, encoder_for
from ..multimodal.images import ImageLimits
from ..tasks import Task
from ..v1 import generation_pb2, multimodal_pb2, multimodal_pb2_grpc
from .generation import collect, relay, submit


def image_limits_from(server: Any) -> ImageLimits:
    """ImageLimits from the [server] config, for whichever of its keys the config has."""
    defaults = ImageLimits()
    return ImageLimits(
        max_bytes=getattr(server, "max_image_bytes", None) or defaults.max_bytes,
        max_pixels=getattr(server, "max_image_pixels", None) or defaults.max_pixels,
        max_aspect_ratio=getattr(server, "max_image_aspect_ratio", None) or defaults.max_aspect_ratio,
        max_images_per_request=getattr(server, "max_images_per_request", None) or defaults.max_images_per_request,
    )


class _Encoding:
    """One CLIP-style model's encoder and batcher (shared by ClassifyImage and Embed)."""

    def __init__(self, model: LoadedModel, task: Task) -> None:
        self.model = model
        self.module = model.modules[task]
        self.encoder: DualEncoder = encoder_for(model, task)
        spec = model.spec
        self.batcher: DynamicBatcher[ClipItem, Any] = DynamicBatcher(
            spec.name,
            functools.partial(run_batch, self.encoder),
            BatchLimits(
                max_batch_size=spec.max_batch_size,
                max_batch_tokens=spec.max_batch_tokens,
                max_wait_ms=spec.max_wait_ms,
                max_queue=spec.max_queue,
            ),
            cost=lambda item: item.cost,
        )


class MultimodalServicer(multimodal_pb2_grpc.MultimodalServicer):
    def __init__(self, registry: ModelRegistry, engines: Engines, limits: ImageLimits | None = None) -> None:
        self._registry = registry
        self._limits = limits or ImageLimits()
        self._engines = engines
        self._parse_chat = chat_parser(self._limits)
        self._encodings: dict[str, _Encoding] = {}

    # --- chat ---------------------------------------------------------------------------------

    async def MultimodalChat(
        self, request: multimodal_pb2.MultimodalChatRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.GenerateResponse:
        job, _ = await submit(
            self._registry,
            self._engines,
            request,
            context,
            streaming=False,
            task=Task.MULTIMODAL_CHAT,
            parse=self._parse_chat,
        )
        return await collect(job, context, request.model)

    async def MultimodalChatStream(
        self, request: multimodal_pb2.MultimodalChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerateStreamResponse]:
        job, _ = await submit(
            self._registry,
            self._engines,
            request,
            context,
            streaming=True,
            task=Task.MULTIMODAL_CHAT,
            parse=self._parse_chat,
        )
        async with aclosing(relay(job, request.model)) as messages:
            async for message in messages:
                yield message

    # --- CLIP-style encoders ----------------------------------------------------------------

    def _encoding(self, model: LoadedModel, task: Task) -> _Encoding:
        """The model's encoder and batcher; ClassifyImage and Embed share them when one module
        serves both (CLIPModel does)."""
        key = f"{model.spec.name}\0{id(model.modules[task])}"
        current = self._encodings.get(key)
        if current is None or current.model is not model:
            if current is not None:  # the model was reloaded
                current.batcher.close()
            current = self._encodings[key] = _Encoding(model, task)
        return current

    async def ClassifyImage(
        self, request: multimodal_pb2.ClassifyImageRequest, context: grpc.aio.ServicerContext
    ) -> multimodal_pb2.ClassifyImageResponse:
        model = self._registry.resolve(request.model, Task.CLASSIFY_IMAGE)
        encoding = self._encoding(model, Task.CLASSIFY_IMAGE)
        item = await asyncio.to_thread(prepare_classify, request, encoding.encoder, self._limits)
        scores = await encoding.batcher.submit(item)
        return multimodal_pb2.ClassifyImageResponse(
            scores=[multimodal_pb2.LabelScore(label=label, score=score) for label, score in scores]
        )

    async def Embed(
        self, request: multimodal_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> multimodal_pb2.EmbedResponse:
        model = self._registry.resolve(request.model, Task.EMBED)
        encoding = self._encoding(model, Task.EMBED)
        item = await asyncio.to_thread(
            prepare_embed, request, encoding.encoder, self._limits, model.spec.max_batch_size
        )
        vectors, dimensions = await encoding.batcher.submit(item)
        return multimodal_pb2.EmbedResponse(
            embeddings=[multimodal_pb2.Embedding(values=v) for v in vectors], dimensions=dimensions
        )

    def close(self) -> None:
        """Stop the batchers (call on the event loop, at shutdown)."""
        for encoding in self._encodings.values():
            encoding.batcher.close()
        self._encodings.clear()
