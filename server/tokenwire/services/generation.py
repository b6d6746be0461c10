"""The Generation service: validate → submit to the model's scheduler → relay its events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import grpc

from ..engine.engines import Engines
from ..engine.params import GenerationParams, Method
from ..engine.request import Event, Failed, Finished, GenerationRequest, SequenceDelta
from ..errors import DeadlineExceeded
from ..models.loader import LoadedModel
from ..models.registry import ModelRegistry
from ..observability.context import add_trailers
from ..tasks import Task
from ..v1 import common_pb2, generation_pb2, generation_pb2_grpc
from .coalesce import coalesce
from .constraint_params import compiled_constraint
from .generation_convert import SequenceBuilder, stream_message, usage
from .generation_params import parse_generate_request


# A stream ends with FINISH_REASON_TIME_LIMIT a little before the client's deadline, so the
# last message reaches the client before gRPC cuts the call: 10% of the time left, at least
# 50 ms (a decode step and a message on a loaded machine), at most 1 s.
def stream_deadline_margin(remaining_s: float) -> float:
    return min(1.0, max(0.05, 0.1 * remaining_s))


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, registry: ModelRegistry, engines: Engines) -> None:
        self._registry = registry
        self._engines = engines

    async def Generate(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.GenerateResponse:
        job, model = await submit(self._registry, self._engines, request, context, streaming=False)
        return await collect(job, context, model.spec.name)

    async def GenerateStream(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerateStreamResponse]:
        job, model = await submit(self._registry, self._engines, request, context, streaming=True)
        async with aclosing(relay(job, model.spec.name)) as messages:
            async for message in messages:
                yield message


def _timing_trailers(job: GenerationRequest, event: Finished) -> None:
    """queue-ms, ttft-ms, total-ms, prompt-tokens, generated-tokens on the call's trailers."""
    now = time.monotonic()

    def ms(t: float | None) -> str:
        return f"{(t - job.arrival) * 1000:.1f}" if t is not None else ""

    add_trailers(
        ("queue-ms", ms(job.admitted_at)),
        ("ttft-ms", ms(job.first_token_at)),
        ("total-ms", ms(now)),
        ("prompt-tokens", str(event.prompt_tokens)),
        ("generated-tokens", str(event.completion_tokens)),
    )


async def submit(
    registry: ModelRegistry,
    engines: Engines,
    request: Any,
    context: grpc.aio.ServicerContext,
    *,
    streaming: bool,
    task: Task = Task.GENERATE,
    parse: Callable[..., GenerationParams] = parse_generate_request,
) -> tuple[GenerationRequest, LoadedModel]:
    """Resolve the model, validate the request with `parse` (off the event loop: tokenizing
    and image processing take milliseconds), and queue it on the model's scheduler.
    `parse(request, model, defaults, max_rows, arrival)` returns the GenerationParams."""
    arrival = time.monotonic()
    model = registry.resolve(request.model, task)
    engine = engines.get(model, task)
    params: GenerationParams = await asyncio.to_thread(parse, request, model, engine.defaults, engine.max_rows, arrival)
    constraint = await compiled_constraint(request, model)
    if constraint is not None:
        params = replace(params, constraint=constraint)
    job = GenerationRequest(params, asyncio.get_running_loop())
    remaining = context.time_remaining()
    if remaining is not None:
        client_deadline = arrival + remaining - (stream_deadline_margin(remaining) if streaming else 0.0)
        if job.deadline is None or client_deadline < job.deadline:
            job.deadline, job.deadline_is_client = client_deadline, True
    engine.submit(job)
    return job, model


async def events_of(job: GenerationRequest) -> AsyncGenerator[Event, None]:
    """`job`'s events until its end (Finished or Failed, yielded last). Deltas that queued up
    while the loop was busy come merged, one per sequence. Leaving early — the caller went away,
    or failed — cancels the job, so nothing keeps decoding for nobody: use it under `aclosing`,
    which runs that on the spot rather than whenever the generator is collected."""
    ended = False
    try:
        while True:
            queued: list[Event] = [await job.events.get()]
            while not job.events.empty():
                queued.append(job.events.get_nowait())
            for event in coalesce(queued):
                ended = isinstance(event, Finished | Failed)
                yield event
                if ended:
                    return
    finally:
        if not ended:
            job.cancel()


async def collect(
    job: GenerationRequest, context: grpc.aio.ServicerContext, model_name: str
) -> generation_pb2.GenerateResponse:
    """Wait for every sequence of `job`; cancel it if the caller goes away first."""
    params = job.params
    builders = [SequenceBuilder() for _ in range(params.n)]
    async with aclosing(events_of(job)) as events:
        async for event in events:
            if isinstance(event, SequenceDelta):
                builders[event.index].add(event)
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Finished):
                _timing_trailers(job, event)
                sequences = [b.build() for b in builders]
                if params.method is Method.BEAM:
                    sequences.sort(key=lambda s: -s.score)
                timed_out = any(s.finish_reason == common_pb2.FINISH_REASON_TIME_LIMIT for s in sequences)
                if timed_out and job.deadline_is_client:
                    raise DeadlineExceeded("the client's deadline passed during generation")
                return generation_pb2.GenerateResponse(
                    sequences=sequences,
                    usage=usage(event),
                    model=model_name,
                    **({"seed": job.seed} if params.method is Method.SAMPLE and job.seed is not None else {}),
                )
    raise AssertionError("events_of ends with Finished or Failed")


async def relay(job: GenerationRequest, model_name: str) -> AsyncGenerator[generation_pb2.GenerateStreamResponse, None]:
    """Stream `job`'s deltas as they come; the first message carries seed and model."""
    params = job.params
    first = True
    async with aclosing(events_of(job)) as events:
        async for event in events:
            if isinstance(event, SequenceDelta):
                message = stream_message(event)
                if first:
                    message.model = model_name
                    if params.method is Method.SAMPLE and job.seed is not None:
                        message.seed = job.seed
                    first = False
                yield message
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Finished):
                _timing_trailers(job, event)
                yield generation_pb2.GenerateStreamResponse(usage=usage(event))
