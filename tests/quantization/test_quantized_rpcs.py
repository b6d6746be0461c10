"""Every RPC a quantized model's tasks allow still answers, for every demo model and scheme.

The RPCs are a table (task → request builder and reply check): a new RPC is one row.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from quant_support import SCHEMES, image, quantized_name
from tokenwire.client import Client
from tokenwire.models.demo import DEMO_MODEL_NAMES
from tokenwire.tasks import Task
from tokenwire.v1 import (
    common_pb2,
    generation_pb2,
    models_pb2,
    multimodal_pb2,
    understanding_pb2,
)


def _png() -> common_pb2.Image:
    buf = io.BytesIO()
    image().save(buf, format="PNG")
    return common_pb2.Image(data=buf.getvalue(), mime_type="image/png")


_STOP = common_pb2.StoppingParams(max_new_tokens=6, ignore_eos=True)


def _generate(c: Client, model: str) -> Any:
    return c.generation.Generate(generation_pb2.GenerateRequest(model=model, prompt="the cat", stopping=_STOP))


def _generate_stream(c: Client, model: str) -> Any:
    return list(
        c.generation.GenerateStream(generation_pb2.GenerateRequest(model=model, prompt="the cat", stopping=_STOP))
    )


def _chat_request(model: str) -> multimodal_pb2.MultimodalChatRequest:
    return multimodal_pb2.MultimodalChatRequest(
        model=model,
        stopping=_STOP,
        messages=[
            multimodal_pb2.ChatMessage(
                role="user",
                parts=[multimodal_pb2.ContentPart(image=_png()), multimodal_pb2.ContentPart(text="what is it")],
            )
        ],
    )


@dataclass(frozen=True)
class Rpc:
    name: str
    task: Task | None  # None: any model
    call: Callable[[Client, str], Any]
    check: Callable[[Any], bool]


RPCS: tuple[Rpc, ...] = (
    Rpc(
        "Models.GetModelInfo",
        None,
        lambda c, m: c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model=m)),
        lambda r: r.state == models_pb2.MODEL_STATE_READY and r.quantization != "none" and bool(r.memory_per_device),
    ),
    Rpc(
        "Models.Tokenize",
        None,
        lambda c, m: c.models.Tokenize(models_pb2.TokenizeRequest(model=m, text="a photo of a cat")),
        lambda r: len(r.ids) > 0,
    ),
    Rpc(
        "Models.Detokenize",
        None,
        lambda c, m: c.models.Detokenize(models_pb2.DetokenizeRequest(model=m, ids=[5, 6, 7])),
        lambda r: isinstance(r.text, str),
    ),
    Rpc("Generation.Generate", Task.GENERATE, _generate, lambda r: len(r.sequences[0].token_ids) == 6),
    Rpc(
        "Generation.GenerateStream",
        Task.GENERATE,
        _generate_stream,
        lambda r: (
            sum(len(m.token_ids) for m in r) == 6 and any(m.finish_reason == common_pb2.FINISH_REASON_LENGTH for m in r)
        ),
    ),
    Rpc(
        "Understanding.FillMask",
        Task.FILL_MASK,
        lambda c, m: c.understanding.FillMask(
            understanding_pb2.FillMaskRequest(model=m, text="the cat sat on the [MASK] .", top_k=3)
        ),
        lambda r: len(r.masks) == 1 and len(r.masks[0].candidates) == 3,
    ),
    Rpc(
        "Understanding.NextSentence",
        Task.NEXT_SENTENCE,
        lambda c, m: c.understanding.NextSentence(
            understanding_pb2.NextSentenceRequest(
                model=m, sentence_a="the cat sat on the mat .", sentence_b="it was sunny ."
            )
        ),
        lambda r: abs(r.is_next_probability + r.not_next_probability - 1) < 1e-4,
    ),
    Rpc(
        "Understanding.AnswerQuestion",
        Task.ANSWER_QUESTION,
        lambda c, m: c.understanding.AnswerQuestion(
            understanding_pb2.AnswerQuestionRequest(
                model=m, question="where is the cat ?", context="the cat sat on the mat in the house ."
            )
        ),
        lambda r: len(r.answers) >= 1,
    ),
    Rpc(
        "Multimodal.MultimodalChat",
        Task.MULTIMODAL_CHAT,
        lambda c, m: c.multimodal.MultimodalChat(_chat_request(m)),
        lambda r: len(r.sequences[0].token_ids) == 6,
    ),
    Rpc(
        "Multimodal.MultimodalChatStream",
        Task.MULTIMODAL_CHAT,
        lambda c, m: list(c.multimodal.MultimodalChatStream(_chat_request(m))),
        lambda r: sum(len(m.token_ids) for m in r) == 6,
    ),
    Rpc(
        "Multimodal.ClassifyImage",
        Task.CLASSIFY_IMAGE,
        lambda c, m: c.multimodal.ClassifyImage(
            multimodal_pb2.ClassifyImageRequest(model=m, image=_png(), labels=["cat", "dog", "car"])
        ),
        lambda r: len(r.scores) == 3 and abs(sum(s.score for s in r.scores) - 1) < 1e-3,
    ),
    Rpc(
        "Multimodal.Embed",
        Task.EMBED,
        lambda c, m: c.multimodal.Embed(multimodal_pb2.EmbedRequest(model=m, texts=["a cat"], images=[_png()])),
        lambda r: len(r.embeddings) == 2 and r.dimensions > 0,
    ),
    Rpc(
        "Understanding.ClassifyText",
        Task.CLASSIFY_TEXT,
        lambda c, m: c.understanding.ClassifyText(
            understanding_pb2.ClassifyTextRequest(model=m, inputs=[understanding_pb2.TextInput(text="a fine day")])
        ),
        lambda r: len(r.results) == 1 and len(r.results[0].labels) >= 1,
    ),
    Rpc(
        "Understanding.ClassifyTokens",
        Task.CLASSIFY_TOKENS,
        lambda c, m: c.understanding.ClassifyTokens(
            understanding_pb2.ClassifyTokensRequest(model=m, text="Ada lives in London", ignore_labels=["-"])
        ),
        lambda r: len(r.entities) >= 4,
    ),
    Rpc(
        "Understanding.EmbedText",
        Task.EMBED_TEXT,
        lambda c, m: c.understanding.EmbedText(understanding_pb2.EmbedTextRequest(model=m, texts=["a", "b"])),
        lambda r: len(r.embeddings) == 2 and r.dimensions == 64,
    ),
    Rpc(
        "Understanding.Rerank",
        Task.RERANK,
        lambda c, m: c.understanding.Rerank(understanding_pb2.RerankRequest(model=m, query="q", documents=["a", "b"])),
        lambda r: sorted(x.index for x in r.results) == [0, 1],
    ),
)

_TASKS = {
    "tiny-llama": {Task.GENERATE},
    "tiny-gpt2": {Task.GENERATE},
    "tiny-bert": {Task.FILL_MASK, Task.NEXT_SENTENCE},
    "tiny-bert-qa": {Task.ANSWER_QUESTION},
    "tiny-llava": {Task.MULTIMODAL_CHAT},
    "tiny-clip": {Task.CLASSIFY_IMAGE, Task.EMBED},
    "tiny-bert-classifier": {Task.CLASSIFY_TEXT},
    "tiny-bert-ner": {Task.CLASSIFY_TOKENS},
    "tiny-bert-embed": {Task.EMBED_TEXT},
    "tiny-bert-reranker": {Task.CLASSIFY_TEXT, Task.RERANK},
    "tiny-bert-sentiment": {Task.CLASSIFY_TEXT, Task.RERANK},
}
assert set(_TASKS) == set(DEMO_MODEL_NAMES)
CASES = [
    pytest.param(quantized_name(model, scheme), rpc, id=f"{quantized_name(model, scheme)}-{rpc.name}")
    for model in DEMO_MODEL_NAMES
    for scheme in SCHEMES
    for rpc in RPCS
    if rpc.task is None or rpc.task in _TASKS[model]
]


@pytest.mark.parametrize(("model", "rpc"), CASES)
def test_rpc_answers_on_quantized_model(qclient: Client, model: str, rpc: Rpc) -> None:
    reply = rpc.call(qclient, model)
    assert rpc.check(reply), reply


def test_list_models_reports_every_quantized_model(qclient: Client) -> None:
    models = qclient.models.ListModels(models_pb2.ListModelsRequest()).models
    by_name = {m.name: m for m in models}
    for model in DEMO_MODEL_NAMES:
        for scheme in SCHEMES:
            info = by_name[quantized_name(model, scheme)]
            assert info.state == models_pb2.MODEL_STATE_READY, info.error
            assert info.quantization == scheme and info.dtype == "float32"
            assert info.placement == "cpu" and dict(info.device_map) == {"": "cpu"}
            assert sum(info.memory_per_device.values()) == info.memory_footprint_bytes > 0
            assert info.reserved_memory_per_device["cpu"] > 0 and info.unquantized_modules
            # 4- and 8-bit layers change no attention: generative models decode on the KV pool,
            # which holds exactly the KV part of the reservation
            generative = _TASKS[model] & {Task.GENERATE, Task.MULTIMODAL_CHAT}
            assert info.decode_path == ("kv_pool" if generative else ""), info.decode_path_reason
            if generative:
                assert sum(info.kv_cache_bytes_per_device.values()) == info.kv_cache_reserved_bytes
    llava = by_name[quantized_name("tiny-llava", "nf4")]
    assert "model.vision_tower" in llava.unquantized_modules
    assert llava.kv_cache_reserved_bytes > 0 and llava.kv_cache_context_tokens > 0
    assert by_name[quantized_name("tiny-bert", "int8")].kv_cache_reserved_bytes == 0
