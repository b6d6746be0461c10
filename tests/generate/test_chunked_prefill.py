"""Chunked prefill: a prompt longer than `prefill_chunk_tokens` is prefilled a chunk per
scheduler iteration. Its output is exactly what a whole-prompt prefill gives (greedy against
transformers, beams and seeded sampling against the unchunked demo server), running streams
keep receiving tokens while it is prefilled, and it can be cancelled half-way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config
from tokenwire.demo_config import demo_config
from tokenwire.engine.request import Event, Failed, Finished, FinishReason, GenerationRequest, SequenceDelta
from tokenwire.errors import ResourceExhausted
from tokenwire.services.generation_params import parse_generate_request
from tokenwire.tasks import Task
from tokenwire.v1 import common_pb2, generation_pb2

CHUNK = 8
MODELS = ("tiny-llama", "tiny-gpt2")


def long_prompt(n: int, salt: int = 0) -> list[int]:
    return [5 + (i * 7 + salt) % 400 for i in range(n)]


@pytest.fixture(scope="module")
def chunked(demo_models_dir: Path) -> Iterator[InProcessServer]:
    base = demo_config(demo_models_dir)
    specs = tuple(replace(s, prefill_chunk_tokens=CHUNK) for s in base.models if s.name in MODELS)
    with InProcessServer(Config(server=base.server, models=specs)) as server:
        yield server


def request(model: str, ids: list[int], max_new: int, **kw: Any) -> generation_pb2.GenerateRequest:
    return generation_pb2.GenerateRequest(
        model=model, input_ids=ids, stopping=common_pb2.StoppingParams(max_new_tokens=max_new), **kw
    )


@pytest.mark.parametrize("model", MODELS)
def test_greedy_equals_transformers(chunked: InProcessServer, references, model: str) -> None:  # type: ignore[no-untyped-def]
    with Client(chunked.target) as c:
        for n in (CHUNK + 1, 3 * CHUNK, 61, 130):
            ids = long_prompt(n, salt=n)
            reply = c.generation.Generate(request(model, ids, 12))
            assert list(reply.sequences[0].token_ids) == references[model].greedy(ids, 12), n


def test_beams_and_seeded_samples_equal_the_unchunked_server(chunked: InProcessServer, client: Client) -> None:
    ids = long_prompt(77, salt=3)
    beam = dict(
        method=common_pb2.DECODING_METHOD_BEAM_SEARCH, beam=common_pb2.BeamParams(num_beams=3), num_return_sequences=2
    )
    sample = dict(
        method=common_pb2.DECODING_METHOD_SAMPLE,
        num_return_sequences=2,
        sampling=common_pb2.SamplingParams(seed=17, temperature=0.9, top_p=0.95),
    )
    with Client(chunked.target) as c:
        for kw in (beam, sample):
            mine = c.generation.Generate(request("tiny-llama", ids, 10, **kw))
            theirs = client.generation.Generate(request("tiny-llama", ids, 10, **kw))
            assert [list(s.token_ids) for s in mine.sequences] == [list(s.token_ids) for s in theirs.sequences]


def _engine(server: InProcessServer) -> Any:
    """tiny-llama's scheduler in `server` (its KV backend `state.kv` and methods are what the tests spy on)."""
    assert server.server is not None
    return server.server.engines.get(server.server.registry.resolve("tiny-llama", Task.GENERATE), Task.GENERATE)


def _job(engine: Any, ids: list[int], max_new: int) -> GenerationRequest:
    """A generation request for `engine`, submitted straight to it (call on the server's loop);
    EOS is ignored, so it produces exactly `max_new` tokens unless it is ended early."""
    pb = generation_pb2.GenerateRequest(
        model="tiny-llama", input_ids=ids, stopping=common_pb2.StoppingParams(max_new_tokens=max_new, ignore_eos=True)
    )
    return GenerationRequest(
        parse_generate_request(pb, engine.model, engine.defaults, engine.max_rows), asyncio.get_running_loop()
    )


async def _until_end(job: GenerationRequest) -> list[Event]:
    """The request's events up to its end (Finished or Failed)."""
    events: list[Event] = []
    while not events or not isinstance(events[-1], Finished | Failed):
        events.append(await asyncio.wait_for(job.events.get(), 60))
    return events


async def _long_prompt_beside_a_stream(
    server: InProcessServer, cancel_after_chunks: int = 0, expire_after_chunks: int = 0
) -> tuple[list[str], list[Event]]:
    """A short request decodes while a 160-token prompt arrives. Returns the scheduler's
    forward calls from then on ("prefill", "chunk", "decode", as its thread made them), and
    the long request's events. `cancel_after_chunks` / `expire_after_chunks`: the long request's
    client leaves, or its time is up, after that many chunks."""
    engine = _engine(server)
    short, long = _job(engine, long_prompt(5), 400), _job(engine, long_prompt(160, salt=9), 2)
    calls: list[str] = []
    runner = engine.state.kv

    def spy(name: str, forward: Any) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:  # runs on the scheduler thread
            calls.append(name)
            if name == "chunk" and calls.count("chunk") == cancel_after_chunks:
                long.cancel()
            if name == "chunk" and calls.count("chunk") == expire_after_chunks:
                long.deadline = time.monotonic()  # its time_limit_ms / deadline has passed
            return forward(*args, **kwargs)

        return called

    engine.submit(short)
    await short.events.get()  # it is decoding
    for name, attribute in (("prefill", "prefill"), ("chunk", "prefill_chunk"), ("decode", "decode")):
        setattr(runner, attribute, spy(name, getattr(runner, attribute)))
    try:
        engine.submit(long)
        long_events = await _until_end(long)
        short.cancel()
        await _until_end(short)
    finally:
        for attribute in ("prefill", "prefill_chunk", "decode"):
            delattr(runner, attribute)  # the class's methods again
    return calls, long_events


def test_running_streams_keep_decoding_during_a_long_prefill(
    chunked: InProcessServer, demo_server: InProcessServer
) -> None:
    calls, events = chunked.run(_long_prompt_beside_a_stream(chunked))
    chunks = [i for i, c in enumerate(calls) if c == "chunk"]
    assert len(chunks) == 160 // CHUNK and "prefill" not in calls
    # a decode step of the running batch after every chunk: the stream never waits for the prompt
    assert all(calls[i + 1] == "decode" for i in chunks)
    assert sum(len(e.token_ids) for e in events if isinstance(e, SequenceDelta)) == 2
    # Without chunking (the demo server: 2048-token chunks) the prompt goes in one forward.
    calls, _ = demo_server.run(_long_prompt_beside_a_stream(demo_server))
    assert "chunk" not in calls and "prefill" in calls


@pytest.mark.parametrize("how, reason", [("cancel", FinishReason.CANCELLED), ("expire", FinishReason.TIME_LIMIT)])
def test_a_long_prompt_can_end_half_way(chunked: InProcessServer, how: str, reason: FinishReason) -> None:
    calls, events = chunked.run(_long_prompt_beside_a_stream(chunked, **{f"{how}_after_chunks": 3}))
    assert calls.count("chunk") == 3  # no chunk after the client left or its time ran out
    deltas = [e for e in events if isinstance(e, SequenceDelta)]
    assert [d.finish_reason for d in deltas] == [reason] and not deltas[0].token_ids
    assert isinstance(events[-1], Finished) and events[-1].completion_tokens == 0
    with Client(chunked.target) as c:  # and the model still serves
        assert len(c.generation.Generate(request("tiny-llama", long_prompt(40), 3)).sequences[0].token_ids) == 3


async def _two_long_prompts_and_a_short_one(server: InProcessServer) -> tuple[list[tuple[str, int]], list[list[Event]]]:
    """Two long prompts then a short one, queued together. Returns the forward calls as
    (kind, first position) and each request's events."""
    engine = _engine(server)
    calls: list[tuple[str, int]] = []
    runner = engine.state.kv
    prefill, chunk = runner.prefill, runner.prefill_chunk

    def spy_prefill(prompts: list[list[int]], *rest: Any) -> Any:
        calls.append(("prefill", len(prompts[0])))
        return prefill(prompts, *rest)

    def spy_chunk(ids: list[int], start: int, last: bool) -> Any:
        calls.append(("chunk", start))
        return chunk(ids, start, last)

    runner.prefill, runner.prefill_chunk = spy_prefill, spy_chunk  # type: ignore[method-assign]
    try:
        jobs = [_job(engine, ids, 2) for ids in (long_prompt(160, salt=1), long_prompt(160, salt=2), long_prompt(5))]
        for job in jobs:
            engine.submit(job)
        results = [await _until_end(job) for job in jobs]
    finally:
        del runner.prefill, runner.prefill_chunk
    return calls, results


def test_a_short_prompt_passes_a_long_one_waiting_for_its_turn(chunked: InProcessServer) -> None:
    calls, results = chunked.run(_two_long_prompts_and_a_short_one(chunked))
    firsts = [i for i, call in enumerate(calls) if call == ("chunk", 0)]
    assert len(firsts) == 2  # one long prompt after the other
    # The short prompt went while the first long one was still being chunked (before its last
    # chunk), not only when the second long one could start.
    assert calls.index(("prefill", 5)) < calls.index(("chunk", 160 - CHUNK))
    for events in results:
        assert sum(len(e.token_ids) for e in events if isinstance(e, SequenceDelta)) == 2


def test_a_failure_while_joining_fails_the_long_request(chunked: InProcessServer) -> None:
    async def scenario() -> list[Event]:
        engine = _engine(chunked)
        join = engine._join

        def failing(requests: list[GenerationRequest], *rest: Any) -> None:
            if len(requests[0].params.prompt_ids) == 40:
                raise RuntimeError("injected: no memory to merge this prompt's cache")
            join(requests, *rest)

        engine._join = failing  # type: ignore[method-assign]
        try:
            job = _job(engine, long_prompt(40), 3)
            engine.submit(job)
            return await _until_end(job)
        finally:
            del engine._join

    events = chunked.run(scenario())
    assert len(events) == 1 and isinstance(events[0], Failed) and "injected" in str(events[0].error)
    with Client(chunked.target) as c:  # the model still serves, the long path included
        assert len(c.generation.Generate(request("tiny-llama", long_prompt(40), 3)).sequences[0].token_ids) == 3


@pytest.mark.parametrize("prompt_len", [5, 40], ids=["batched-prefill", "chunked-prefill"])
def test_a_prefill_out_of_memory_fails_that_request_only(chunked: InProcessServer, prompt_len: int) -> None:
    """A new prompt that runs out of memory in its prefill fails alone (RESOURCE_EXHAUSTED);
    the stream already decoding finishes untouched."""

    async def scenario() -> tuple[list[Event], list[Event]]:
        engine = _engine(chunked)
        runner = engine.state.kv
        prefill, chunk = runner.prefill, runner.prefill_chunk

        def oom(forward: Any, doomed: Any) -> Any:
            def call(ids: list[Any], *rest: Any) -> Any:
                if doomed(ids):
                    raise torch.OutOfMemoryError("injected: CUDA out of memory")
                return forward(ids, *rest)

            return call

        running, doomed = _job(engine, long_prompt(6), 60), _job(engine, long_prompt(prompt_len, salt=5), 5)
        engine.submit(running)
        await running.events.get()
        runner.prefill = oom(prefill, lambda prompts: len(prompts[0]) == prompt_len)  # type: ignore[method-assign]
        runner.prefill_chunk = oom(chunk, lambda _: True)  # type: ignore[method-assign]  # only its prompt is long
        try:
            engine.submit(doomed)
            doomed_events = await _until_end(doomed)
        finally:
            del runner.prefill, runner.prefill_chunk
        return doomed_events, await _until_end(running)

    doomed, running = chunked.run(scenario())
    assert isinstance(doomed[-1], Failed) and isinstance(doomed[-1].error, ResourceExhausted)
    assert isinstance(running[-1], Finished) and running[-1].completion_tokens == 60
