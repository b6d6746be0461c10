"""The Models service on the demo models, through a real server on port 0."""

from __future__ import annotations

import grpc
import pytest
from transformers import AutoTokenizer

from tokenwire.client import Client, field_violations
from tokenwire.demo_config import demo_config
from tokenwire.v1 import models_pb2

EXPECTED_TASKS = {
    "tiny-llama": [models_pb2.TASK_GENERATE],
    "tiny-gpt2": [models_pb2.TASK_GENERATE],
    "tiny-bert": [models_pb2.TASK_FILL_MASK, models_pb2.TASK_NEXT_SENTENCE],
    "tiny-bert-qa": [models_pb2.TASK_ANSWER_QUESTION],
    "tiny-llava": [models_pb2.TASK_MULTIMODAL_CHAT],
    "tiny-clip": [models_pb2.TASK_CLASSIFY_IMAGE, models_pb2.TASK_EMBED],
    "tiny-bert-classifier": [models_pb2.TASK_CLASSIFY_TEXT],
    "tiny-bert-ner": [models_pb2.TASK_CLASSIFY_TOKENS],
    "tiny-bert-embed": [models_pb2.TASK_EMBED_TEXT],
    "tiny-bert-reranker": [models_pb2.TASK_CLASSIFY_TEXT, models_pb2.TASK_RERANK],
    "tiny-bert-sentiment": [models_pb2.TASK_CLASSIFY_TEXT, models_pb2.TASK_RERANK],
}


def test_list_models_reports_every_demo_model_ready(client: Client) -> None:
    models = client.models.ListModels(models_pb2.ListModelsRequest()).models
    assert [m.name for m in models] == sorted(EXPECTED_TASKS)
    for info in models:
        assert list(info.tasks) == EXPECTED_TASKS[info.name]
        assert info.state == models_pb2.MODEL_STATE_READY, info.error


def test_list_models_filters_by_task(client: Client) -> None:
    reply = client.models.ListModels(models_pb2.ListModelsRequest(task=models_pb2.TASK_GENERATE))
    assert sorted(m.name for m in reply.models) == ["tiny-gpt2", "tiny-llama"]


def test_model_info_fields(client: Client, demo_models_dir) -> None:  # type: ignore[no-untyped-def]
    info = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
    tok = AutoTokenizer.from_pretrained(demo_models_dir / "tiny-llama")
    assert info.architecture == "LlamaForCausalLM"
    assert info.source == str((demo_models_dir / "tiny-llama").resolve())
    assert info.dtype == "float32"
    assert info.quantization == "none"
    assert dict(info.device_map) == {"": "cpu"}
    assert info.vocab_size == len(tok)
    assert info.max_total_tokens > 0 and info.max_input_tokens <= info.max_total_tokens
    assert info.bos_token_id == tok.bos_token_id
    assert tok.eos_token_id in info.eos_token_ids
    assert info.memory_footprint_bytes > 0
    assert info.special_tokens["eos_token"] == tok.eos_token

    bert = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-bert"))
    assert bert.special_tokens["mask_token"] == "[MASK]"
    assert bert.HasField("mask_token_id") and bert.HasField("cls_token_id")
    assert not bert.HasField("bos_token_id") or bert.bos_token_id != bert.mask_token_id


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2", "tiny-llava"])
def test_tokenize_detokenize_round_trip_non_ascii(client: Client, model: str) -> None:
    text = "naïve café 東京 — ok?"
    enc = client.models.Tokenize(models_pb2.TokenizeRequest(model=model, text=text, add_special_tokens=False))
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) > 0
    dec = client.models.Detokenize(models_pb2.DetokenizeRequest(model=model, ids=enc.ids))
    assert dec.text == text


def test_tokenize_matches_transformers_with_offsets(client: Client, demo_models_dir) -> None:  # type: ignore[no-untyped-def]
    text = "The capital of France, [MASK], contains the Eiffel Tower."
    tok = AutoTokenizer.from_pretrained(demo_models_dir / "tiny-bert")
    enc = client.models.Tokenize(models_pb2.TokenizeRequest(model="tiny-bert", text=text))
    ref = tok(text, return_offsets_mapping=True)
    assert list(enc.ids) == ref["input_ids"]
    assert [(o.start, o.end) for o in enc.offsets] == [tuple(o) for o in ref["offset_mapping"]]
    assert enc.tokens[0] == "[CLS]" and "[MASK]" in enc.tokens
    # Offsets are code-point positions into the original text.
    mask = list(enc.tokens).index("[MASK]")
    assert text[enc.offsets[mask].start : enc.offsets[mask].end] == "[MASK]"


def test_add_special_tokens_defaults_to_true(client: Client) -> None:
    with_special = client.models.Tokenize(models_pb2.TokenizeRequest(model="tiny-llama", text="hello"))
    without = client.models.Tokenize(
        models_pb2.TokenizeRequest(model="tiny-llama", text="hello", add_special_tokens=False)
    )
    assert len(with_special.ids) == len(without.ids) + 1


def test_detokenize_skip_special_tokens(client: Client) -> None:
    enc = client.models.Tokenize(models_pb2.TokenizeRequest(model="tiny-llama", text="hello world"))
    kept = client.models.Detokenize(models_pb2.DetokenizeRequest(model="tiny-llama", ids=enc.ids))
    skipped = client.models.Detokenize(
        models_pb2.DetokenizeRequest(model="tiny-llama", ids=enc.ids, skip_special_tokens=True)
    )
    assert skipped.text == "hello world" and kept.text != skipped.text


def _error(call, request):  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value


def test_bad_tokenize_and_detokenize_input(client: Client) -> None:
    err = _error(client.models.Tokenize, models_pb2.TokenizeRequest(model="tiny-llama", text=""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err) == [("text", "must not be empty")]

    vocab = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama")).vocab_size
    err = _error(client.models.Detokenize, models_pb2.DetokenizeRequest(model="tiny-llama", ids=[1, 2, vocab + 5]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = field_violations(err)
    assert field == "ids[2]" and str(vocab) in description


def test_unknown_model_lists_available(client: Client) -> None:
    for call, request in [
        (client.models.GetModelInfo, models_pb2.GetModelInfoRequest(model="gpt-5")),
        (client.models.Tokenize, models_pb2.TokenizeRequest(model="gpt-5", text="hi")),
    ]:
        err = _error(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert "'gpt-5' not found" in err.details() and "tiny-llama" in err.details()


def test_demo_config_serves_every_demo_model(demo_models_dir) -> None:  # type: ignore[no-untyped-def]
    names = [spec.name for spec in demo_config(demo_models_dir).models]
    assert sorted(names) == sorted(EXPECTED_TASKS)


def test_model_info_reports_the_decode_path(client: Client) -> None:
    llama = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
    assert llama.decode_path == "kv_pool", llama.decode_path_reason
    assert llama.decode_path_reason == ""
    assert llama.attention_backend
    assert llama.kv_cache_capacity_tokens > 0
    assert llama.kv_cache_slots >= 1
    assert llama.kv_cache_bytes_per_device["cpu"] > 0

    listed = {m.name: m for m in client.models.ListModels(models_pb2.ListModelsRequest()).models}
    assert listed["tiny-llama"].decode_path == "kv_pool"

    bert = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-bert"))
    assert bert.decode_path == "" and bert.kv_cache_capacity_tokens == 0
    assert not bert.HasField("cuda_graphs")
