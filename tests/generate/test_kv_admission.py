"""Admission by KV memory: requests beyond the pool's free rows wait (none fails), and a
request that could never fit the pool is refused at once with RESOURCE_EXHAUSTED and the
numbers. The fallback path (no KV reservation) still serves, exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config
from tokenwire.demo_config import demo_config
from tokenwire.engine.request import Finished, FinishReason, GenerationRequest, SequenceDelta
from tokenwire.services.generation_params import parse_generate_request
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

# tiny-llama holds K and V of 2 kv heads × 16 dims × 4 bytes × 2 layers = 512 bytes a token.
# 8 KiB is 16 tokens: one KV row of 16 tokens (less than one full-context row).
SMALL_POOL = 8 * 1024
ROW_TOKENS = 16


@pytest.fixture(scope="module")
def small(demo_models_dir: Path) -> Iterator[InProcessServer]:
    base = demo_config(demo_models_dir)
    specs = tuple(
        replace(s, kv_cache_reserve=SMALL_POOL, max_input_tokens=32, max_new_tokens=16)
        if s.name == "tiny-llama"
        else replace(s, kv_cache_reserve=0)
        for s in base.models
        if s.name in ("tiny-llama", "tiny-gpt2")
    )
    with InProcessServer(Config(server=base.server, models=specs)) as server:
        yield server


def _request(model: str, ids: list[int], max_new: int, **kw: object) -> generation_pb2.GenerateRequest:
    return generation_pb2.GenerateRequest(
        model=model, input_ids=ids, stopping=common_pb2.StoppingParams(max_new_tokens=max_new, ignore_eos=True), **kw
    )  # type: ignore[arg-type]


def test_the_pool_is_reported(small: InProcessServer) -> None:
    with Client(small.target) as c:
        info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
    assert (info.decode_path, info.kv_cache_slots, info.kv_cache_slot_tokens) == ("kv_pool", 1, ROW_TOKENS)
    assert info.kv_cache_capacity_tokens == ROW_TOKENS
    assert info.kv_cache_bytes_per_device["cpu"] == SMALL_POOL


def test_a_flood_beyond_the_pool_is_queued_not_failed(small: InProcessServer) -> None:
    """12 requests for a pool of one row: they take turns; every one completes in full."""
    with Client(small.target) as c, ThreadPoolExecutor(12) as pool:
        replies = list(
            pool.map(lambda i: c.generation.Generate(_request("tiny-llama", [5 + i, 6, 7, 8], 10)), range(12))
        )
    assert [len(r.sequences[0].token_ids) for r in replies] == [10] * 12


def test_a_request_that_can_never_fit_is_refused_with_the_numbers(small: InProcessServer) -> None:
    with Client(small.target) as c, pytest.raises(grpc.RpcError) as err:
        c.generation.Generate(_request("tiny-llama", list(range(5, 15)), 10))  # 10 + 10 > 16 tokens
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "20 tokens" in err.value.details() and f"holds {ROW_TOKENS}" in err.value.details()
    with Client(small.target) as c:  # and the model still serves
        assert len(c.generation.Generate(_request("tiny-llama", [5, 6], 3)).sequences[0].token_ids) == 3


def test_without_a_reservation_the_fallback_serves_exactly(small: InProcessServer, references) -> None:  # type: ignore[no-untyped-def]
    with Client(small.target) as c:
        info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-gpt2"))
        assert info.decode_path == "dynamic_cache" and "kv_cache_reserve" in info.decode_path_reason
        ref = references["tiny-gpt2"]
        prompts = [ref.ids("Once upon a time"), ref.ids("a")]
        with ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda ids: c.generation.Generate(
                        generation_pb2.GenerateRequest(
                            model="tiny-gpt2", input_ids=ids, stopping=common_pb2.StoppingParams(max_new_tokens=9)
                        )
                    ),
                    prompts,
                )
            )
        for ids, reply in zip(prompts, replies, strict=True):
            assert list(reply.sequences[0].token_ids) == ref.greedy(ids, 9)


def test_the_fallback_forks_and_follows_beams_like_the_pool(small: InProcessServer, client: Client, references) -> None:  # type: ignore[no-untyped-def]
    """Beams and n > 1 on the DynamicCache path (tiny-gpt2 here) give what the KV pool path
    (the demo server) gives, also while another request decodes beside them."""
    ids = references["tiny-gpt2"].ids("The quick brown fox")
    beam = dict(
        method=common_pb2.DECODING_METHOD_BEAM_SEARCH, beam=common_pb2.BeamParams(num_beams=3), num_return_sequences=2
    )
    sample = dict(
        method=common_pb2.DECODING_METHOD_SAMPLE,
        num_return_sequences=3,
        sampling=common_pb2.SamplingParams(seed=5, temperature=0.9),
    )
    with Client(small.target) as fallback, ThreadPoolExecutor(3) as pool:
        for kw in (beam, sample):
            beside = pool.submit(fallback.generation.Generate, _request("tiny-gpt2", [7, 8, 9], 12))
            mine = pool.submit(fallback.generation.Generate, _request("tiny-gpt2", ids, 8, **kw))
            theirs = client.generation.Generate(_request("tiny-gpt2", ids, 8, **kw))
            assert [list(s.token_ids) for s in mine.result().sequences] == [list(s.token_ids) for s in theirs.sequences]
            assert len(beside.result().sequences[0].token_ids) == 12


def test_a_request_cancelled_behind_one_that_waits_for_room_ends_at_once(small: InProcessServer) -> None:
    """The pool's one row is busy and the next request waits for it: a request queued behind
    that one whose client leaves ends now, not when it reaches the head of the queue."""

    async def scenario() -> tuple[list[Any], bool]:
        assert small.server is not None
        engine = small.server.engines.get(small.server.registry.resolve("tiny-llama"))

        def job(ids: list[int], max_new: int) -> GenerationRequest:
            pb = _request("tiny-llama", ids, max_new)
            return GenerationRequest(
                parse_generate_request(pb, engine.model, engine.defaults, engine.max_rows), asyncio.get_running_loop()
            )

        running, head, behind = job([5, 6], 14), job([7, 8], 14), job([9, 10], 14)
        engine.submit(running)
        await running.events.get()  # it holds the only row
        engine.submit(head)
        engine.submit(behind)
        behind.cancel()
        events = []
        while not events or not isinstance(events[-1], Finished):
            events.append(await asyncio.wait_for(behind.events.get(), 30))
        # the request holding the row has not finished yet (its end is not among its queued events)
        still_running = not any(isinstance(e, Finished) for e in list(running.events._queue))  # type: ignore[attr-defined]
        for j in (running, head):
            while not isinstance(await asyncio.wait_for(j.events.get(), 30), Finished):
                pass
        return events, still_running

    events, still_running = small.run(scenario())
    assert [e.finish_reason for e in events if isinstance(e, SequenceDelta)] == [FinishReason.CANCELLED]
    assert still_running
