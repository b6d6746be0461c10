"""What users hit elsewhere must never happen here: ids beyond the tokenizer, a crash on an
inconsistent generation_config.json, a batch failure taking the server down, an unbounded queue."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertLMHeadModel, LlamaConfig, LlamaForCausalLM

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.v1 import common_pb2, generation_pb2

SAMPLE = common_pb2.DECODING_METHOD_SAMPLE


def _copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if "token" in f.name or f.name == "special_tokens_map.json":
            shutil.copy(f, dst / f.name)


@pytest.fixture(scope="module")
def odd_models(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("odd")
    tok = AutoTokenizer.from_pretrained(demo_models_dir / "tiny-llama")
    torch.manual_seed(0)

    # 1. Output layer 64 ids wider than the tokenizer, and those ids made the most likely.
    padded = root / "padded-vocab"
    _copy_tokenizer(demo_models_dir / "tiny-llama", padded)
    cfg = LlamaConfig(
        vocab_size=len(tok) + 64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[len(tok) :] *= 200
    model.save_pretrained(padded)

    # 2. A generation_config.json transformers calls invalid, with defaults we must honour.
    inconsistent = root / "inconsistent-gen-config"
    shutil.copytree(demo_models_dir / "tiny-llama", inconsistent)
    (inconsistent / "generation_config.json").write_text(
        json.dumps(
            {
                "do_sample": False,
                "temperature": 0.3,
                "top_p": 0.5,
                "num_return_sequences": 3,
                "max_new_tokens": 7,
                "max_length": -5,
                "repetition_penalty": -1.0,
                "eos_token_id": [tok.eos_token_id, 5],
                "bos_token_id": tok.bos_token_id,
            }
        )
    )

    # 3. BERT set up as a decoder (next-word prediction with BERT).
    bert_decoder = root / "bert-decoder"
    _copy_tokenizer(demo_models_dir / "tiny-bert", bert_decoder)
    bert_tok = AutoTokenizer.from_pretrained(bert_decoder)
    bert = BertLMHeadModel(
        BertConfig(
            vocab_size=len(bert_tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            is_decoder=True,
            max_position_embeddings=128,
            pad_token_id=bert_tok.pad_token_id,
        )
    )
    bert.save_pretrained(bert_decoder)
    return {"padded": padded, "inconsistent": inconsistent, "bert-decoder": bert_decoder}


@pytest.fixture(scope="module")
def odd_server(odd_models: dict[str, Path]) -> Iterator[InProcessServer]:
    specs = (
        ModelSpec(name="padded", path=str(odd_models["padded"])),
        ModelSpec(name="inconsistent", path=str(odd_models["inconsistent"])),
        ModelSpec(name="bert-decoder", path=str(odd_models["bert-decoder"])),
        ModelSpec(name="tiny-queue", path=str(odd_models["padded"]), max_batch_size=1, max_queue=1, max_new_tokens=500),
    )
    with InProcessServer(Config(models=specs)) as server:
        yield server


@pytest.fixture()
def odd(odd_server: InProcessServer) -> Iterator[Client]:
    with Client(odd_server.target) as c:
        yield c


def test_never_an_id_beyond_the_tokenizer(odd: Client, odd_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(odd_models["padded"])
    # The test can fail: the raw model does prefer the padded ids.
    raw = LlamaForCausalLM.from_pretrained(odd_models["padded"])
    with torch.no_grad():
        assert raw(torch.tensor([[1, 50, 60]])).logits[0, -1].argmax().item() >= len(tok)
    for method, sampling in [
        (common_pb2.DECODING_METHOD_GREEDY, None),
        (SAMPLE, common_pb2.SamplingParams(seed=3, temperature=2.0)),
        (common_pb2.DECODING_METHOD_BEAM_SEARCH, None),
    ]:
        reply = odd.generation.Generate(
            generation_pb2.GenerateRequest(
                model="padded",
                prompt="hello",
                method=method,
                sampling=sampling,
                stopping=common_pb2.StoppingParams(max_new_tokens=40),
            )
        )
        for seq in reply.sequences:
            assert seq.token_ids and max(seq.token_ids) < len(tok)
            assert odd.models.Detokenize(
                __import__("tokenwire.v1.models_pb2", fromlist=["x"]).DetokenizeRequest(
                    model="padded", ids=seq.token_ids
                )
            ).text == tok.decode(list(seq.token_ids))


def test_inconsistent_generation_config_loads_serves_and_honours_defaults(odd: Client, caplog: Any) -> None:
    reply = odd.generation.Generate(generation_pb2.GenerateRequest(model="inconsistent", prompt="hello"))
    seq = reply.sequences[0]
    assert len(seq.token_ids) == 7 or seq.finish_reason == common_pb2.FINISH_REASON_EOS_TOKEN  # max_new_tokens=7
    info = odd.models.GetModelInfo(
        __import__("tokenwire.v1.models_pb2", fromlist=["x"]).GetModelInfoRequest(model="inconsistent")
    )
    assert 5 in info.eos_token_ids  # generation_config's extra EOS id is honoured
    # A request overrides the model default.
    longer = odd.generation.Generate(
        generation_pb2.GenerateRequest(
            model="inconsistent", prompt="hello", stopping=common_pb2.StoppingParams(max_new_tokens=9, ignore_eos=True)
        )
    )
    assert len(longer.sequences[0].token_ids) == 9


def test_inconsistent_generation_config_warns(odd_models: dict[str, Path], caplog: Any) -> None:
    from tokenwire.engine.defaults import generation_defaults
    from tokenwire.models.loader import load_model

    loaded = load_model(ModelSpec(name="inconsistent", path=str(odd_models["inconsistent"])))
    with caplog.at_level(logging.WARNING):
        defaults = generation_defaults(next(iter(loaded.modules.values())), "inconsistent")
    assert defaults.max_new_tokens == 7 and defaults.temperature == 0.3
    assert defaults.repetition_penalty is None and defaults.max_length is None
    assert "repetition_penalty=-1.0 is invalid" in caplog.text and "max_length=-5 is invalid" in caplog.text


def test_bert_as_a_decoder_matches_transformers(odd: Client, odd_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(odd_models["bert-decoder"])
    model = BertLMHeadModel.from_pretrained(odd_models["bert-decoder"]).eval()
    ids = tok("the cat sat on the", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ref = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )[0, len(ids) :].tolist()
    reply = odd.generation.Generate(
        generation_pb2.GenerateRequest(
            model="bert-decoder", input_ids=ids, stopping=common_pb2.StoppingParams(max_new_tokens=8)
        )
    )
    assert list(reply.sequences[0].token_ids) == ref


def test_full_queue_is_resource_exhausted_with_retry_hint(odd: Client, odd_server: InProcessServer) -> None:
    import time

    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    long = generation_pb2.GenerateRequest(
        model="tiny-queue", prompt="x", stopping=common_pb2.StoppingParams(max_new_tokens=400, ignore_eos=True)
    )
    odd.generation.Generate(generation_pb2.GenerateRequest(model="tiny-queue", prompt="x"))  # scheduler exists
    scheduler = odd_server.server.engines._schedulers["tiny-queue"]  # type: ignore[union-attr]
    real = scheduler.state.kv.decode

    def slow(*args: Any, **kwargs: Any) -> Any:  # 400 steps now take >= 4 s: nothing finishes early
        time.sleep(0.01)
        return real(*args, **kwargs)

    scheduler.state.kv.decode = slow  # type: ignore[method-assign]
    running = odd.generation.GenerateStream(long)  # takes the one batch row
    queued = None
    try:
        next(running)
        queued = odd.generation.GenerateStream(long)  # takes the one queue slot
        deadline = time.monotonic() + 10
        while scheduler.admission.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert scheduler.admission.waiting == 1
        with pytest.raises(grpc.RpcError) as err:
            odd.generation.Generate(long, timeout=10)
    finally:
        running.cancel()
        if queued is not None:
            queued.cancel()
        scheduler.state.kv.decode = real  # type: ignore[method-assign]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue" in err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None and any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


def test_failing_step_fails_its_requests_and_the_server_goes_on(odd: Client, odd_server: InProcessServer) -> None:
    request = generation_pb2.GenerateRequest(
        model="padded", prompt="boom", stopping=common_pb2.StoppingParams(max_new_tokens=5)
    )
    odd.generation.Generate(request)  # make sure the scheduler exists
    scheduler = odd_server.server.engines._schedulers["padded"]  # type: ignore[union-attr]
    real = scheduler.state.kv.decode
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault in the forward pass")
        return real(*args, **kwargs)

    scheduler.state.kv.decode = flaky  # type: ignore[method-assign]
    try:
        with pytest.raises(grpc.RpcError) as err:
            odd.generation.Generate(request)
        assert err.value.code() == grpc.StatusCode.INTERNAL and "request id" in err.value.details()
        assert "injected" not in err.value.details()
        assert odd.generation.Generate(request).sequences[0].token_ids  # next one is fine
    finally:
        scheduler.state.kv.decode = real  # type: ignore[method-assign]
