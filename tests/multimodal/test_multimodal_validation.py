"""Every bad MultimodalChat / ClassifyImage / Embed request gets the right status, and a
google.rpc.BadRequest naming the field (for images: the message and part)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from test_multimodal_images import bomb_png

from mm_helpers import encode, noise_image, pb_image, user
from tokenwire.client import Client, field_violations, request_id
from tokenwire.v1 import common_pb2, multimodal_pb2

ContentPart = multimodal_pb2.ContentPart


def _error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(request)
        if not hasattr(result, "ListFields"):
            list(result)
    return info.value


def _invalid(call: Any, request: Any, field: str, words: str = "") -> str:
    err = _error(call, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    violations = dict(field_violations(err))
    assert field in violations, violations
    assert words in violations[field], violations[field]
    return violations[field]


def chat(*messages: multimodal_pb2.ChatMessage, **kwargs: Any) -> multimodal_pb2.MultimodalChatRequest:
    kwargs.setdefault("model", "tiny-llava")
    return multimodal_pb2.MultimodalChatRequest(messages=list(messages), **kwargs)


IMAGE = noise_image(0)
BAD_CHATS = [
    (chat(), "messages", "at least one message"),
    (chat(multimodal_pb2.ChatMessage(role="", parts=[ContentPart(text="hi")])), "messages[0].role", "empty"),
    (chat(user("hi"), multimodal_pb2.ChatMessage(role="user")), "messages[1].parts", "at least one part"),
    (
        chat(multimodal_pb2.ChatMessage(role="user", parts=[ContentPart(text="a"), ContentPart()])),
        "messages[0].parts[1]",
        "exactly one of text and image",
    ),
    (chat(user("look: <image> here")), "messages[0].parts[0].text", "image placeholder"),
    (chat(user(*[IMAGE] * 5), user(*[IMAGE] * 4)), "messages", "at most 8 images per request, got 9"),
    (
        chat(
            user("a"),
            multimodal_pb2.ChatMessage(
                role="user",
                parts=[
                    ContentPart(text="b"),
                    ContentPart(image=common_pb2.Image(data=b"garbage", mime_type="image/png")),
                ],
            ),
        ),
        "messages[1].parts[1].image",
        "not a decodable",
    ),
    (
        chat(
            multimodal_pb2.ChatMessage(
                role="user", parts=[ContentPart(text="b"), ContentPart(image=pb_image(IMAGE, "JPEG", mime="image/png"))]
            )
        ),
        "messages[0].parts[1].image",
        "mime_type is image/png but the data is a JPEG image",
    ),
    (
        chat(
            multimodal_pb2.ChatMessage(
                role="user",
                parts=[ContentPart(image=common_pb2.Image(data=bomb_png(30_000, 30_000), mime_type="image/png"))],
            )
        ),
        "messages[0].parts[0].image",
        "",
    ),
    (
        chat(multimodal_pb2.ChatMessage(role="user", parts=[ContentPart(image=common_pb2.Image())])),
        "messages[0].parts[0].image",
        "data must not be empty",
    ),
    (chat(user(IMAGE, "word " * 3000)), "messages", "image tokens included), more than the model's limit of 2048"),
    # The decoding options are validated exactly as for Generate.
    (
        chat(
            user(IMAGE, "hi"), method=common_pb2.DECODING_METHOD_SAMPLE, sampling=common_pb2.SamplingParams(top_p=1.5)
        ),
        "sampling.top_p",
        "(0, 1]",
    ),
    (
        chat(user(IMAGE, "hi"), stopping=common_pb2.StoppingParams(max_new_tokens=100_000)),
        "stopping.max_new_tokens",
        "",
    ),
    (chat(user(IMAGE, "hi"), num_return_sequences=2), "num_return_sequences", "greedy"),
]


@pytest.mark.parametrize("rpc", ["MultimodalChat", "MultimodalChatStream"])
@pytest.mark.parametrize("request_, field, words", BAD_CHATS)
def test_bad_chat_requests_name_the_field(client: Client, rpc: str, request_: Any, field: str, words: str) -> None:
    _invalid(getattr(client.multimodal, rpc), request_, field, words)


def test_model_errors(client: Client) -> None:
    err = _error(client.multimodal.MultimodalChat, multimodal_pb2.MultimodalChatRequest(model="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "tiny-llava" in err.details()
    err = _error(client.multimodal.MultimodalChat, chat(user("hi"), model="tiny-clip"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "classify_image, embed" in err.details()
    err = _error(client.multimodal.ClassifyImage, multimodal_pb2.ClassifyImageRequest(model="tiny-llava"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "multimodal_chat" in err.details()
    err = _error(client.multimodal.Embed, multimodal_pb2.EmbedRequest(model="tiny-llama", texts=["a"]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and request_id(err)
    err = _error(client.multimodal.Embed, multimodal_pb2.EmbedRequest())
    assert err.code() == grpc.StatusCode.NOT_FOUND and "model is required" in err.details()


def classify(**kwargs: Any) -> multimodal_pb2.ClassifyImageRequest:
    kwargs.setdefault("image", pb_image(IMAGE))
    kwargs.setdefault("labels", ["cat", "dog"])
    return multimodal_pb2.ClassifyImageRequest(model="tiny-clip", **kwargs)


@pytest.mark.parametrize(
    "request_, field, words",
    [
        (classify(labels=[]), "labels", "at least one"),
        (classify(labels=["x"] + [f"l{i}" for i in range(1000)]), "labels", "at most 1000"),
        (classify(labels=["cat", ""]), "labels[1]", "empty"),
        (classify(labels=["cat", "dog", "cat"]), "labels[2]", "duplicates labels[0]"),
        (classify(labels=["cat", "word " * 80]), "labels[1]", "more than the model's limit of 77"),
        (classify(hypothesis_template="a photo"), "hypothesis_template", "exactly once"),
        (classify(hypothesis_template="{} or {}"), "hypothesis_template", "exactly once"),
        (multimodal_pb2.ClassifyImageRequest(model="tiny-clip", labels=["a"]), "image", "required"),
        (classify(image=common_pb2.Image(data=b"\xff\xd8\xff garbage")), "image", "not a decodable"),
        (classify(image=common_pb2.Image(data=encode(IMAGE, "PNG"), mime_type="image/svg+xml")), "image", "mime_type"),
    ],
)
def test_bad_classify_requests_name_the_field(client: Client, request_: Any, field: str, words: str) -> None:
    _invalid(client.multimodal.ClassifyImage, request_, field, words)


def embed(**kwargs: Any) -> multimodal_pb2.EmbedRequest:
    return multimodal_pb2.EmbedRequest(model="tiny-clip", **kwargs)


@pytest.mark.parametrize(
    "request_, field, words",
    [
        (embed(), "texts", "at least one text or image"),
        (embed(texts=["a", ""]), "texts[1]", "empty"),
        (embed(texts=["a"] * 20, images=[pb_image(IMAGE)] * 13), "images", "at most 32"),
        (embed(texts=["a", "word " * 80]), "texts[1]", "set truncate"),
        (embed(texts=["a"], images=[pb_image(IMAGE), common_pb2.Image(data=b"nope")]), "images[1]", "not a decodable"),
    ],
)
def test_bad_embed_requests_name_the_field(client: Client, request_: Any, field: str, words: str) -> None:
    _invalid(client.multimodal.Embed, request_, field, words)
