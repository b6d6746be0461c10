"""A LoRA adapter (peft) named in the registry is merged at load time: the served model decodes
exactly like transformers' model with the same adapter merged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec, parse_config
from tokenwire.errors import ConfigError
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def adapter_dir(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(demo_models_dir / "tiny-llama")
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # lora_B starts at zero (no effect): make the adapter matter
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(out)
    return out


def test_adapter_is_merged_and_changes_the_output(demo_models_dir: Path, adapter_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(demo_models_dir / "tiny-llama")
    ids = tok("Once upon a time")["input_ids"]

    def reference(merge: bool) -> list[int]:
        model = AutoModelForCausalLM.from_pretrained(demo_models_dir / "tiny-llama")
        if merge:
            model = peft.PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        with torch.inference_mode():
            out = model.eval().generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        return out[0, len(ids) :].tolist()

    specs = (
        ModelSpec(name="base", path=str(demo_models_dir / "tiny-llama")),
        ModelSpec(name="tuned", path=str(demo_models_dir / "tiny-llama"), adapter=str(adapter_dir)),
    )
    server = InProcessServer(Config(models=specs)).start()
    try:
        with Client(server.target) as c:

            def served(model: str) -> list[int]:
                reply = c.generation.Generate(
                    generation_pb2.GenerateRequest(
                        model=model,
                        input_ids=ids,
                        stopping=common_pb2.StoppingParams(max_new_tokens=12, ignore_eos=True),
                    )
                )
                return list(reply.sequences[0].token_ids)

            assert served("tuned") == reference(merge=True)
            assert served("base") == reference(merge=False)
            assert served("tuned") != served("base")  # the adapter does something
    finally:
        server.stop()


def test_bad_adapter_marks_the_model_failed(demo_models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "not-an-adapter").mkdir()
    specs = (ModelSpec(name="m", path=str(demo_models_dir / "tiny-llama"), adapter=str(tmp_path / "not-an-adapter")),)
    server = InProcessServer(Config(models=specs)).start()
    try:
        with Client(server.target) as c:
            info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="m"))
            assert info.state == models_pb2.MODEL_STATE_FAILED
            assert "key 'adapter'" in info.error and "adapter_config.json" in info.error
    finally:
        server.stop()


def test_adapter_key_is_resolved_and_checked(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "lora").mkdir()
    config = parse_config({"models": [{"name": "m", "path": "m", "adapter": "lora"}]}, tmp_path)
    assert config.models[0].adapter == str((tmp_path / "lora").resolve())
    with pytest.raises(ConfigError, match="key 'adapter': must be an existing directory"):
        parse_config({"models": [{"name": "m", "path": "m", "adapter": "nowhere"}]}, tmp_path)
