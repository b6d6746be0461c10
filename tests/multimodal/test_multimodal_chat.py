"""MultimodalChat on tiny-llava: token-identical to transformers' generate() (alone, and batched
with other image and text-only chats), streaming, the shared decoding options, cancellation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

from mm_helpers import noise_image, user
from tokenwire.client import Client
from tokenwire.v1 import common_pb2, multimodal_pb2

GREEDY = common_pb2.DECODING_METHOD_GREEDY
SAMPLE = common_pb2.DECODING_METHOD_SAMPLE
BEAM = common_pb2.DECODING_METHOD_BEAM_SEARCH
Conversation = list[tuple[str, list[str | Image.Image]]]

CONVERSATIONS: list[Conversation] = [
    [("user", [noise_image(0), "What is in this picture?"])],
    [("user", ["Compare", noise_image(1), "with", noise_image(2, (20, 60))])],
    [("user", ["Hello there, who are you?"])],  # text only: shares batched prefills
    [
        ("system", ["Be brief."]),
        ("user", [noise_image(3), "Describe it."]),
        ("assistant", ["A square."]),
        ("user", ["And the colours?"]),
    ],
    [("user", [noise_image(4, (64, 64))])],
]


def chat(conversation: Conversation, max_new: int, **kwargs: Any) -> multimodal_pb2.MultimodalChatRequest:
    stopping = kwargs.pop("stopping", common_pb2.StoppingParams(max_new_tokens=max_new))
    return multimodal_pb2.MultimodalChatRequest(
        model="tiny-llava",
        messages=[user(*parts, role=role) for role, parts in conversation],
        stopping=stopping,
        **kwargs,
    )


def _scheduler(demo_server: Any) -> Any:
    return demo_server.server.engines._schedulers["tiny-llava:multimodal_chat"]


def test_greedy_equals_transformers_alone(client: Client, llava_ref) -> None:  # type: ignore[no-untyped-def]
    for i, conversation in enumerate(CONVERSATIONS):
        max_new = 6 + 5 * i
        reply = client.multimodal.MultimodalChat(chat(conversation, max_new, method=GREEDY))
        seq = reply.sequences[0]
        expected = llava_ref.greedy(conversation, max_new)
        assert list(seq.token_ids) == expected, i
        # (The engine decodes in context, so the reply keeps the space after "ASSISTANT:".)
        assert seq.text.lstrip() == llava_ref.processor.tokenizer.decode(expected, skip_special_tokens=True).lstrip()
        prompt_len = llava_ref.inputs(conversation)["input_ids"].shape[1]
        assert reply.usage.prompt_tokens == prompt_len  # image tokens included
        assert reply.usage.completion_tokens == len(expected)
        assert reply.model == "tiny-llava"


def test_greedy_equals_transformers_in_a_mixed_batch(client: Client, llava_ref, demo_server) -> None:  # type: ignore[no-untyped-def]
    """Image chats (prefilled one by one) and text-only chats (prefilled together) decode in one
    batch; each still equals its own generate()."""
    cases = [(conversation, 12 + 3 * i) for i, conversation in enumerate(CONVERSATIONS * 2)]
    expected = [llava_ref.greedy(conversation, max_new) for conversation, max_new in cases]
    scheduler = _scheduler(demo_server)
    steps_before = scheduler.steps
    with ThreadPoolExecutor(len(cases)) as pool:
        replies = list(pool.map(lambda c: client.multimodal.MultimodalChat(chat(c[0], c[1])), cases))
    for i, (reply, want) in enumerate(zip(replies, expected, strict=True)):
        assert list(reply.sequences[0].token_ids) == want, i
    # They shared decode steps: far fewer forwards than tokens generated.
    assert scheduler.steps - steps_before < sum(len(w) for w in expected) / 2


def test_repetition_penalty_and_beam_search_equal_transformers(client: Client, llava_ref) -> None:  # type: ignore[no-untyped-def]
    conversation = CONVERSATIONS[0]
    reply = client.multimodal.MultimodalChat(
        chat(conversation, 14, sampling=common_pb2.SamplingParams(repetition_penalty=1.3))
    )
    assert list(reply.sequences[0].token_ids) == llava_ref.greedy(conversation, 14, repetition_penalty=1.3)

    reply = client.multimodal.MultimodalChat(
        chat(conversation, 8, method=BEAM, num_return_sequences=2, beam=common_pb2.BeamParams(num_beams=3))
    )
    out, prompt_len = llava_ref.generate(
        conversation,
        max_new_tokens=8,
        do_sample=False,
        num_beams=3,
        num_return_sequences=2,
        output_scores=True,
        return_dict_in_generate=True,
    )
    expected = [_strip(row[prompt_len:].tolist(), llava_ref) for row in out.sequences]
    assert [list(s.token_ids) for s in reply.sequences] == expected
    assert [s.score for s in reply.sequences] == pytest.approx(out.sequences_scores.tolist(), abs=1e-5)


def _strip(tokens: list[int], ref: Any) -> list[int]:
    """A generate() row → the hypothesis: up to its EOS, trailing padding dropped."""
    for i, t in enumerate(tokens):
        if t in ref.eos:
            return tokens[: i + 1]
    pad = ref.processor.tokenizer.pad_token_id
    while tokens and tokens[-1] == pad:
        tokens = tokens[:-1]
    return tokens


def test_stream_deltas_concatenate_to_the_unary_reply(client: Client) -> None:
    for conversation in CONVERSATIONS[:2]:
        request = chat(conversation, 16)
        unary = client.multimodal.MultimodalChat(request)
        messages = list(client.multimodal.MultimodalChatStream(request))
        assert messages[0].model == "tiny-llava"
        assert "".join(m.text for m in messages) == unary.sequences[0].text
        assert [t for m in messages for t in m.token_ids] == list(unary.sequences[0].token_ids)
        assert messages[-1].usage == unary.usage
        assert [m.finish_reason for m in messages if m.finish_reason] == [unary.sequences[0].finish_reason]


def test_seeded_sampling_is_reproducible_and_reports_the_seed(client: Client) -> None:
    def sample(seed: int | None) -> Any:
        sampling = common_pb2.SamplingParams(temperature=1.5, top_k=50)
        if seed is not None:
            sampling.seed = seed
        return client.multimodal.MultimodalChat(
            chat(CONVERSATIONS[0], 12, method=SAMPLE, sampling=sampling, num_return_sequences=2)
        )

    a, b, c = sample(7), sample(7), sample(None)
    assert [list(s.token_ids) for s in a.sequences] == [list(s.token_ids) for s in b.sequences]
    assert a.seed == 7 and c.HasField("seed")
    again = sample(c.seed)
    assert [list(s.token_ids) for s in again.sequences] == [list(s.token_ids) for s in c.sequences]


def test_stop_strings_and_stop_tokens(client: Client, llava_ref) -> None:  # type: ignore[no-untyped-def]
    conversation = CONVERSATIONS[1]
    full = llava_ref.greedy(conversation, 16)
    stop_token = full[3]
    reply = client.multimodal.MultimodalChat(
        chat(conversation, 16, stopping=common_pb2.StoppingParams(max_new_tokens=16, stop_token_ids=[stop_token]))
    )
    seq = reply.sequences[0]
    assert seq.finish_reason == common_pb2.FINISH_REASON_STOP_TOKEN
    assert list(seq.token_ids) == full[: full.index(stop_token) + 1]
    text = llava_ref.processor.tokenizer.decode(full, skip_special_tokens=True)
    k = next(k for k in range(len(text) // 2, len(text) - 1) if text[k : k + 2].isalnum())
    stop = text[k : k + 2]
    reply = client.multimodal.MultimodalChat(
        chat(conversation, 16, stopping=common_pb2.StoppingParams(max_new_tokens=16, stop=[stop]))
    )
    seq = reply.sequences[0]
    assert seq.finish_reason == common_pb2.FINISH_REASON_STOP_SEQUENCE and seq.matched_stop == stop
    assert text.startswith(seq.text.lstrip()) and stop not in seq.text


def test_cancelled_stream_leaves_the_batch(client: Client, demo_server) -> None:  # type: ignore[no-untyped-def]
    scheduler = _scheduler(demo_server)
    request = chat(CONVERSATIONS[0], 1500, stopping=common_pb2.StoppingParams(max_new_tokens=1500, ignore_eos=True))
    stream = client.multimodal.MultimodalChatStream(request)
    assert next(stream).token_ids
    stream.cancel()
    deadline = time.monotonic() + 10
    while scheduler.running_rows and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scheduler.running_rows == 0
    # The model keeps serving.
    assert client.multimodal.MultimodalChat(chat(CONVERSATIONS[2], 3)).sequences[0].token_ids


def test_time_limit_ends_the_sequence(client: Client) -> None:
    reply = client.multimodal.MultimodalChat(
        chat(
            CONVERSATIONS[0],
            0,
            stopping=common_pb2.StoppingParams(max_new_tokens=2000, ignore_eos=True, time_limit_ms=150),
        )
    )
    assert reply.sequences[0].finish_reason == common_pb2.FINISH_REASON_TIME_LIMIT
