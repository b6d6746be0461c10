"""GenerateStream: deltas, stop conditions, finish reasons, usage, cancellation and time."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2

SAMPLE = common_pb2.DECODING_METHOD_SAMPLE


def req(
    model: str = "tiny-llama", prompt: str = "Once upon a time", max_new: int = 24, **kw: Any
) -> generation_pb2.GenerateRequest:
    stopping = kw.pop("stopping", common_pb2.StoppingParams())
    if not stopping.HasField("max_new_tokens"):
        stopping.max_new_tokens = max_new
    return generation_pb2.GenerateRequest(model=model, prompt=prompt, stopping=stopping, **kw)


def stream(client: Client, request: generation_pb2.GenerateRequest) -> list[generation_pb2.GenerateStreamResponse]:
    return list(client.generation.GenerateStream(request))


def joined(messages: list[generation_pb2.GenerateStreamResponse], index: int = 0) -> tuple[str, list[int]]:
    mine = [m for m in messages if m.index == index and not m.HasField("usage")]
    return "".join(m.text for m in mine), [t for m in mine for t in m.token_ids]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("prompt", ["Once upon a time", "naïve café 東京", "emoji 🙂 and"])
def test_stream_concatenates_to_unary(client: Client, model: str, prompt: str) -> None:
    for kw in ({}, {"method": SAMPLE, "sampling": common_pb2.SamplingParams(seed=5)}):
        unary = client.generation.Generate(req(model, prompt, 40, **kw))
        messages = stream(client, req(model, prompt, 40, **kw))
        text, tokens = joined(messages)
        assert tokens == list(unary.sequences[0].token_ids)
        assert text == unary.sequences[0].text
        assert "\ufffd" not in text or "\ufffd" in unary.sequences[0].text


def test_stream_message_shape(client: Client) -> None:
    messages = stream(
        client, req(method=SAMPLE, num_return_sequences=2, max_new=6, sampling=common_pb2.SamplingParams(seed=11))
    )
    assert messages[0].model == "tiny-llama" and messages[0].seed == 11
    final = messages[-1]
    assert final.HasField("usage") and not final.token_ids
    assert final.usage.completion_tokens == 12 and final.usage.prompt_tokens > 0
    for index in (0, 1):
        mine = [m for m in messages[:-1] if m.index == index]
        assert [m.finish_reason for m in mine[:-1]] == [common_pb2.FINISH_REASON_UNSPECIFIED] * (len(mine) - 1)
        assert mine[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
        assert sum(len(m.token_ids) for m in mine) == 6


def test_stop_string_across_tokens_is_trimmed_or_kept(client: Client) -> None:
    base = client.generation.Generate(req(max_new=30)).sequences[0]
    text = base.text
    assert len(text) > 12
    stop = text[5:11]  # very likely spans a token boundary
    for include in (False, True):
        stopping = common_pb2.StoppingParams(stop=[stop, "never-there"], include_stop_in_output=include)
        unary = client.generation.Generate(req(max_new=30, stopping=stopping)).sequences[0]
        assert unary.finish_reason == common_pb2.FINISH_REASON_STOP_SEQUENCE
        assert unary.matched_stop == stop
        assert unary.text == (text[:11] if include else text[:5])
        messages = stream(client, req(max_new=30, stopping=stopping))
        assert joined(messages)[0] == unary.text
        # No message ever showed text beyond the stop string's start (nothing taken back).
        shown = ""
        for m in messages:
            shown += m.text
            assert text.startswith(shown)


def test_stop_token_ids_and_eos(client: Client) -> None:
    base = client.generation.Generate(req(max_new=20)).sequences[0]
    stop_id = base.token_ids[4]
    first = list(base.token_ids).index(stop_id)
    seq = client.generation.Generate(
        req(max_new=20, stopping=common_pb2.StoppingParams(stop_token_ids=[stop_id]))
    ).sequences[0]
    assert seq.finish_reason == common_pb2.FINISH_REASON_STOP_TOKEN
    assert list(seq.token_ids) == list(base.token_ids[: first + 1])
    assert seq.matched_stop
    # min_new_tokens suppresses it until enough tokens exist
    seq = client.generation.Generate(
        req(max_new=20, stopping=common_pb2.StoppingParams(stop_token_ids=[stop_id], min_new_tokens=first + 2))
    ).sequences[0]
    assert stop_id not in list(seq.token_ids[: first + 2])
    # EOS: force it with logit_bias, then ignore_eos
    eos = 2  # tiny-llama's </s>
    forced = client.generation.Generate(
        req(max_new=20, sampling=common_pb2.SamplingParams(logit_bias={eos: 100}))
    ).sequences[0]
    assert list(forced.token_ids) == [eos] and forced.finish_reason == common_pb2.FINISH_REASON_EOS_TOKEN
    assert forced.text == ""
    ignored = client.generation.Generate(
        req(
            max_new=5,
            sampling=common_pb2.SamplingParams(logit_bias={eos: 100}),
            stopping=common_pb2.StoppingParams(ignore_eos=True),
        )
    ).sequences[0]
    assert list(ignored.token_ids) == [eos] * 5 and ignored.finish_reason == common_pb2.FINISH_REASON_LENGTH
    min_new = client.generation.Generate(
        req(
            max_new=8,
            sampling=common_pb2.SamplingParams(logit_bias={eos: 100}),
            stopping=common_pb2.StoppingParams(min_new_tokens=3),
        )
    ).sequences[0]
    assert len(min_new.token_ids) == 4 and min_new.token_ids[3] == eos and eos not in min_new.token_ids[:3]


def _scheduler_rows(demo_server: Any, model: str) -> int:
    engines = demo_server.server.engines
    return engines._schedulers[model].running_rows  # type: ignore[no-any-return]


def test_cancelled_stream_leaves_the_batch(client: Client, demo_server: Any) -> None:
    call = client.generation.GenerateStream(req(max_new=2000, stopping=common_pb2.StoppingParams(ignore_eos=True)))
    first = next(call)
    assert first.token_ids
    call.cancel()
    deadline = time.monotonic() + 10
    while _scheduler_rows(demo_server, "tiny-llama") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _scheduler_rows(demo_server, "tiny-llama") == 0
    # the server still serves
    assert client.generation.Generate(req(max_new=3)).sequences[0].token_ids


def test_time_limit_ends_with_time_limit_and_ok(client: Client) -> None:
    reply = client.generation.Generate(
        req(max_new=2000, stopping=common_pb2.StoppingParams(ignore_eos=True, time_limit_ms=300))
    )
    seq = reply.sequences[0]
    assert seq.finish_reason == common_pb2.FINISH_REASON_TIME_LIMIT
    # (a machine busy enough may not even reach the first token in 300 ms: 0 tokens is fine)
    assert len(seq.token_ids) < 2000 and reply.usage.completion_tokens == len(seq.token_ids)


def test_client_deadline_unary_is_deadline_exceeded(client: Client, demo_server: Any) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.generation.Generate(req(max_new=2000, stopping=common_pb2.StoppingParams(ignore_eos=True)), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 10
    while _scheduler_rows(demo_server, "tiny-llama") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _scheduler_rows(demo_server, "tiny-llama") == 0


def test_client_deadline_stream_ends_with_time_limit(client: Client) -> None:
    messages = list(
        client.generation.GenerateStream(
            req(max_new=2000, stopping=common_pb2.StoppingParams(ignore_eos=True)), timeout=1.0
        )
    )
    last = [m for m in messages if not m.HasField("usage")][-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TIME_LIMIT
    assert messages[-1].HasField("usage")


def test_many_streams_at_once_all_complete(client: Client) -> None:
    results: dict[int, tuple[str, list[int]]] = {}

    def run(i: int) -> None:
        results[i] = joined(
            stream(
                client,
                req(
                    prompt=f"Request number {i}",
                    max_new=10 + i,
                    method=SAMPLE,
                    sampling=common_pb2.SamplingParams(seed=i),
                ),
            )
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(16))
    for i, (_, tokens) in results.items():
        assert len(tokens) == 10 + i
