"""Property-based fuzzing of every request message against a live server: a client mistake is
never INTERNAL, nothing crashes or hangs, every call is answered."""

from __future__ import annotations

from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2, multimodal_pb2, understanding_pb2

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
MODELS = [
    "tiny-llama",
    "tiny-gpt2",
    "tiny-bert",
    "tiny-bert-qa",
    "tiny-llava",
    "tiny-clip",
    "tiny-bert-classifier",
    "tiny-bert-ner",
    "tiny-bert-embed",
    "tiny-bert-reranker",
    "tiny-bert-sentiment",
]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.sampled_from(["", " ", "[MASK]", "<image>", "\x00", "\ud7ff\ue000", "🙂" * 50, "a" * 20000, "é́́́́"]),
)
models = st.one_of(st.sampled_from(MODELS), st.text(max_size=20))
u32 = st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1))
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
ids = st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 1100), max_size=30)


def check(call: Any, request: Any, stream: bool = False) -> None:
    try:
        result = call(request, timeout=60)
        if stream:
            for _ in result:
                pass
    except grpc.RpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details(), request)
        assert "Traceback" not in (err.details() or "")


@st.composite
def sampling(draw: Any) -> common_pb2.SamplingParams:
    p = common_pb2.SamplingParams()
    for name in (
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "repetition_penalty",
        "frequency_penalty",
        "presence_penalty",
    ):
        if draw(st.booleans()):
            setattr(p, name, draw(f32))
    for name in ("top_k", "no_repeat_ngram_size"):
        if draw(st.booleans()):
            setattr(p, name, draw(u32))
    if draw(st.booleans()):
        p.seed = draw(st.integers(0, 2**64 - 1))
    for k, v in draw(st.dictionaries(st.integers(0, 2**32 - 1) | st.integers(0, 1100), f32, max_size=5)).items():
        p.logit_bias[k] = v
    p.bad_words.extend(draw(st.lists(texts, max_size=3)))
    return p


constraints = st.one_of(
    st.just(common_pb2.Constraint()),
    st.builds(common_pb2.Constraint, json_schema=texts | st.sampled_from(['{"type": "integer"}', "{}", "true", "[]"])),
    st.builds(common_pb2.Constraint, json_object=st.booleans()),
    st.builds(common_pb2.Constraint, regex=texts | st.sampled_from(["[ab]+", "(", "\\", "a{2,1}"])),
    st.builds(common_pb2.Constraint, grammar=texts | st.sampled_from(['root ::= "x"', "root ::= root", "::="])),
    st.builds(common_pb2.Constraint, choices=st.builds(common_pb2.ChoiceList, values=st.lists(texts, max_size=4))),
)


@st.composite
def generate_requests(draw: Any) -> generation_pb2.GenerateRequest:
    stopping = common_pb2.StoppingParams(
        min_new_tokens=draw(st.integers(0, 8) | u32),
        stop=draw(st.lists(texts, max_size=4)),
        stop_token_ids=draw(st.lists(st.integers(0, 1100) | u32, max_size=4)),
        ignore_eos=draw(st.booleans()),
        include_stop_in_output=draw(st.booleans()),
        time_limit_ms=draw(st.sampled_from([0, 1, 50, 2**32 - 1])),
    )
    stopping.max_new_tokens = draw(st.integers(0, 24) | st.sampled_from([2049, 2**32 - 1]))
    beam = common_pb2.BeamParams(early_stopping=draw(st.integers(0, 5)))
    if draw(st.booleans()):
        beam.num_beams = draw(st.integers(0, 6) | u32)
    if draw(st.booleans()):
        beam.length_penalty = draw(f32)
    return generation_pb2.GenerateRequest(
        model=draw(models),
        prompt=draw(texts),
        input_ids=draw(st.one_of(st.just([]), ids)),
        method=draw(st.integers(0, 5)),
        sampling=draw(sampling()),
        beam=beam,
        stopping=stopping,
        num_return_sequences=draw(st.integers(0, 4) | u32),
        logprobs=common_pb2.LogprobsParams(
            enabled=draw(st.booleans()), top_n=draw(st.integers(0, 25)), mode=draw(st.integers(0, 3))
        ),
        constraint=draw(constraints),
    )


@FUZZ
@given(generate_requests(), st.booleans())
def test_fuzz_generate(client: Client, request: generation_pb2.GenerateRequest, stream: bool) -> None:
    check(client.generation.GenerateStream if stream else client.generation.Generate, request, stream)


@FUZZ
@given(models, texts, ids, st.booleans())
def test_fuzz_models_service(client: Client, model: str, text: str, token_ids: list[int], flag: bool) -> None:
    check(client.models.Tokenize, models_pb2.TokenizeRequest(model=model, text=text, add_special_tokens=flag))
    check(client.models.Detokenize, models_pb2.DetokenizeRequest(model=model, ids=token_ids, skip_special_tokens=flag))
    check(client.models.GetModelInfo, models_pb2.GetModelInfoRequest(model=model))
    check(client.models.ListModels, models_pb2.ListModelsRequest(task=len(text) % 12))


@FUZZ
@given(models, texts, texts, u32, st.lists(texts, max_size=3), st.booleans())
def test_fuzz_understanding(client: Client, model: str, a: str, b: str, k: int, targets: list[str], flag: bool) -> None:
    u = client.understanding
    check(u.FillMask, understanding_pb2.FillMaskRequest(model=model, text=a, top_k=k, targets=targets, truncate=flag))
    check(u.NextSentence, understanding_pb2.NextSentenceRequest(model=model, sentence_a=a, sentence_b=b, truncate=flag))
    check(
        u.AnswerQuestion,
        understanding_pb2.AnswerQuestionRequest(
            model=model,
            question=a,
            context=b,
            top_k=k % 50,
            max_answer_length=k,
            doc_stride=k % 600,
            handle_impossible_answer=flag,
        ),
    )


enum_values = st.integers(0, 6) | st.integers(0, 2**31 - 1)


@FUZZ
@given(models, st.lists(texts, max_size=40), texts, u32, enum_values, st.booleans())
def test_fuzz_encoder_tasks(
    client: Client, model: str, batch: list[str], a: str, k: int, enum: int, flag: bool
) -> None:
    u = client.understanding
    inputs = [understanding_pb2.TextInput(text=t, text_pair=a if flag else "") for t in batch]
    check(
        u.ClassifyText,
        understanding_pb2.ClassifyTextRequest(model=model, inputs=inputs, top_k=k, function=enum, truncate=flag),  # type: ignore[arg-type]
    )
    check(
        u.ClassifyTokens,
        understanding_pb2.ClassifyTokensRequest(
            model=model,
            text=a,
            aggregation=enum,  # type: ignore[arg-type]
            ignore_labels=batch[:3],
            truncate=flag,
        ),
    )
    check(
        u.EmbedText,
        understanding_pb2.EmbedTextRequest(
            model=model,
            texts=batch,
            pooling=enum,  # type: ignore[arg-type]
            normalize=flag,
            dimensions=k,
            truncate=flag,
        ),
    )
    check(
        u.Rerank,
        understanding_pb2.RerankRequest(
            model=model, query=a, documents=batch, top_n=k, truncate=flag, raw_scores=not flag
        ),
    )


images = st.builds(
    common_pb2.Image,
    data=st.binary(max_size=300) | st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]),
    mime_type=st.sampled_from(["", "image/png", "image/jpeg", "text/plain", "image/webp"]),
)


@FUZZ
@given(models, texts, st.lists(images, max_size=3), st.lists(texts, max_size=4), st.booleans())
def test_fuzz_multimodal(client: Client, model: str, text: str, imgs: list[Any], labels: list[str], flag: bool) -> None:
    m = client.multimodal
    parts = [multimodal_pb2.ContentPart(text=text)] + [multimodal_pb2.ContentPart(image=i) for i in imgs]
    chat = multimodal_pb2.MultimodalChatRequest(
        model=model,
        messages=[multimodal_pb2.ChatMessage(role=text[:10], parts=parts)],
        stopping=common_pb2.StoppingParams(max_new_tokens=4),
    )
    check(m.MultimodalChat, chat)
    check(m.MultimodalChatStream, chat, stream=True)
    check(
        m.ClassifyImage,
        multimodal_pb2.ClassifyImageRequest(
            model=model, image=imgs[0] if imgs else None, labels=labels, hypothesis_template=text
        ),
    )
    check(m.Embed, multimodal_pb2.EmbedRequest(model=model, texts=labels, images=imgs, normalize=flag))


def test_server_is_healthy_and_idle_after_fuzzing(client: Client, demo_server: Any) -> None:
    import time

    assert client.is_serving("")
    deadline = time.monotonic() + 30
    schedulers = demo_server.server.engines._schedulers
    while any(s.running_rows for s in schedulers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(s.running_rows == 0 for s in schedulers.values())
    reply = client.generation.Generate(
        generation_pb2.GenerateRequest(
            model="tiny-llama", prompt="still fine", stopping=common_pb2.StoppingParams(max_new_tokens=3)
        )
    )
    assert len(reply.sequences[0].token_ids) == 3
