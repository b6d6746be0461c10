"""A stream's queued deltas go out merged, one message per sequence, and still concatenate to
exactly what was produced."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from types import SimpleNamespace
from typing import Any

from tokenwire.engine.params import Method
from tokenwire.engine.request import Event, Finished, FinishReason, SequenceDelta, TokenInfo
from tokenwire.services.coalesce import coalesce
from tokenwire.services.generation import events_of, relay
from tokenwire.v1 import common_pb2


def delta(index: int, text: str, token: int, finish: FinishReason | None = None, **kw: Any) -> SequenceDelta:
    return SequenceDelta(index=index, text=text, token_ids=[token], finish_reason=finish, **kw)


def test_consecutive_deltas_of_each_sequence_merge() -> None:
    events: list[Event] = [
        delta(0, "He", 1),
        delta(1, "A", 7),
        delta(0, "llo", 2),
        delta(1, "B", 8, FinishReason.STOP_SEQUENCE, matched_stop="C"),
        delta(0, "!", 3, FinishReason.LENGTH, cumulative_logprob=-1.5),
    ]
    out = coalesce(events)
    assert [(d.index, d.text, d.token_ids) for d in out if isinstance(d, SequenceDelta)] == [
        (0, "Hello!", [1, 2, 3]),
        (1, "AB", [7, 8]),
    ]
    first, second = out
    assert isinstance(first, SequenceDelta) and isinstance(second, SequenceDelta)
    assert first.finish_reason is FinishReason.LENGTH and first.cumulative_logprob == -1.5
    assert second.finish_reason is FinishReason.STOP_SEQUENCE and second.matched_stop == "C"


def test_logprobs_stay_one_per_token_and_the_end_stays_last() -> None:
    info = [TokenInfo(t, str(t), -0.1 * t, 1) for t in (4, 5)]
    events: list[Event] = [SequenceDelta(0, "a", [4], [info[0]]), SequenceDelta(0, "b", [5], [info[1]]), Finished(3, 2)]
    out = coalesce(events)
    assert len(out) == 2 and isinstance(out[1], Finished)
    merged = out[0]
    assert isinstance(merged, SequenceDelta) and [i.token_id for i in merged.logprobs] == merged.token_ids == [4, 5]


def test_a_single_delta_is_left_alone() -> None:
    one = delta(0, "x", 1)
    assert coalesce([one]) == [one]


def test_relay_sends_what_queued_as_one_message() -> None:
    async def run() -> list[Any]:
        job = SimpleNamespace(
            events=asyncio.Queue(),
            params=SimpleNamespace(method=Method.GREEDY),
            seed=None,
            arrival=0.0,
            admitted_at=None,
            first_token_at=None,
            cancelled=False,
        )
        job.cancel = lambda: None
        for event in (delta(0, "a", 1), delta(0, "b", 2), delta(0, "c", 3, FinishReason.LENGTH), Finished(2, 3)):
            job.events.put_nowait(event)  # all queued before the relay looks: a busy loop
        return [m async for m in relay(job, "m")]  # type: ignore[arg-type]

    messages = asyncio.run(run())
    assert len(messages) == 2
    assert messages[0].text == "abc" and list(messages[0].token_ids) == [1, 2, 3]
    assert messages[0].finish_reason == common_pb2.FINISH_REASON_LENGTH and messages[0].model == "m"
    assert messages[1].usage.completion_tokens == 3


def _job(*events: Event) -> SimpleNamespace:
    job = SimpleNamespace(events=asyncio.Queue(), cancelled=False)
    job.cancel = lambda: setattr(job, "cancelled", True)
    for event in events:
        job.events.put_nowait(event)
    return job


def test_leaving_early_cancels_the_job_and_reading_to_the_end_does_not() -> None:
    async def run(read_all: bool) -> bool:
        job = _job(delta(0, "a", 1), Finished(1, 1)) if read_all else _job(delta(0, "a", 1))
        async with aclosing(events_of(job)) as events:  # type: ignore[arg-type]
            async for _ in events:
                if not read_all:
                    break  # the caller went away
        return bool(job.cancelled)

    assert asyncio.run(run(read_all=False)) is True
    assert asyncio.run(run(read_all=True)) is False
