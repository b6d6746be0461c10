"""The registry file: valid files parse, every mistake is reported with model and key."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from tokenwire.config import Config, ModelSpec, load_config, parse_config, parse_memory
from tokenwire.errors import ConfigError
from tokenwire.tasks import Task, tasks_for_architecture


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m1").mkdir(exist_ok=True)
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_full_entry_parses(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
        [server]
        port = 6000
        [[models]]
        name = "m1"
        path = "m1"
        tasks = ["generate"]
        dtype = "bfloat16"
        quantization = "nf4"
        bnb_4bit_use_double_quant = true
        device_map = { "model.embed_tokens" = "0", "lm_head" = "cpu" }
        max_memory = { "0" = "20GiB", cpu = "64GB" }
        max_input_tokens = 1024
        max_new_tokens = 64
        max_batch_size = 8
        prefill_chunk_tokens = 512
        cuda_graphs = false
    """,
        )
    )
    assert config.server.port == 6000
    (spec,) = config.models
    assert spec == ModelSpec(
        name="m1",
        path=str((tmp_path / "m1").resolve()),
        is_local=True,
        tasks=(Task.GENERATE,),
        dtype="bfloat16",
        quantization="nf4",
        bnb_4bit_use_double_quant=True,
        device_map={"model.embed_tokens": "0", "lm_head": "cpu"},
        max_memory={"0": 20 * 2**30, "cpu": 64 * 10**9},
        max_input_tokens=1024,
        max_new_tokens=64,
        max_batch_size=8,
        prefill_chunk_tokens=512,
        cuda_graphs=False,
    )


def test_hub_id_is_not_a_local_path(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[models]]\nname = "x"\npath = "meta-llama/Llama-3.2-1B"\n'))
    assert config.models[0].path == "meta-llama/Llama-3.2-1B"
    assert not config.models[0].is_local


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            'name = "m1"\npath = "m1"\nquantisation = "nf4"',
            "model 'm1' (models[0]): unknown key 'quantisation' (did you mean 'quantization'?)",
        ),
        ('name = "m1"\npath = "./nowhere"', "model 'm1' (models[0]), key 'path': must be an existing directory"),
        (
            'name = "m1"\npath = "m1"\nquantization = "int4"',
            "model 'm1' (models[0]), key 'quantization': must be one of none, int8, nf4, fp4, got 'int4'",
        ),
        ('name = "m1"\npath = "m1"\ntasks = ["chat"]', "model 'm1' (models[0]), key 'tasks': unknown task 'chat'"),
        (
            'name = "m1"\npath = "m1"\nmax_batch_size = 0',
            "model 'm1' (models[0]), key 'max_batch_size': must be a positive integer, got 0",
        ),
        (
            'name = "m1"\npath = "m1"\nprefill_chunk_tokens = -8',
            "model 'm1' (models[0]), key 'prefill_chunk_tokens': must be an integer >= 0, got -8",
        ),
        (
            'name = "m1"\npath = "m1"\ncuda_graphs = "yes"',
            "model 'm1' (models[0]), key 'cuda_graphs': must be true or false",
        ),
        (
            'name = "m1"\npath = "m1"\nmax_memory = { "0" = "lots" }',
            "key 'max_memory': size for '0' must be a positive byte count",
        ),
        ('name = "m1"\npath = "m1"\ndevice_map = "everywhere"', "key 'device_map': must be one of auto, balanced"),
        ('name = "m1"\npath = "m1"\ndtype = "fp8"', "key 'dtype': must be one of auto"),
        ('path = "m1"', "models[0]: missing required key 'name'"),
        ('name = "has space"\npath = "m1"', "key 'name': must be 1-128 letters"),
    ],
)
def test_mistakes_name_model_and_key(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in problems(tmp_path, f"[[models]]\n{body}\n")


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        """
        [[models]]
        name = "a"
        path = "m1"
        dtype = "fp8"
        [[models]]
        name = "a"
        path = "m1"
        max_new_tokens = -1
    """,
    )
    assert "key 'dtype'" in text and "key 'max_new_tokens'" in text
    assert "key 'name' is used by more than one model" in text


def test_file_level_errors(tmp_path: Path) -> None:
    assert "no such file" in str(pytest.raises(ConfigError, load_config, tmp_path / "none.toml").value)
    assert "not valid TOML" in problems(tmp_path, "[[models]\n")
    assert "needs at least one [[models]] table" in problems(tmp_path, "[server]\nport = 1\n")
    assert "unknown key 'model'" in problems(tmp_path, '[[model]]\nname = "a"\n')
    assert "[server], key 'port'" in problems(tmp_path, '[server]\nport = 70000\n[[models]]\nname="a"\npath="m1"\n')


def test_parse_memory() -> None:
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_memory(1024) == 1024
    for bad in ("", "1 parsec", -5, True):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_parse_config_without_file(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    config = parse_config({"models": [{"name": "m", "path": "m"}]}, tmp_path)
    assert config.models[0].tasks == ()  # inferred at load time


@pytest.mark.parametrize(
    "architecture, tasks",
    [
        ("LlamaForCausalLM", (Task.GENERATE,)),
        ("GPT2LMHeadModel", (Task.GENERATE,)),
        ("BertLMHeadModel", (Task.GENERATE,)),
        ("BertForPreTraining", (Task.FILL_MASK, Task.NEXT_SENTENCE)),
        ("RobertaForMaskedLM", (Task.FILL_MASK,)),
        ("BertForQuestionAnswering", (Task.ANSWER_QUESTION,)),
        ("LlavaForConditionalGeneration", (Task.MULTIMODAL_CHAT,)),
        ("CLIPModel", (Task.CLASSIFY_IMAGE, Task.EMBED)),
        ("T5ForConditionalGeneration", ()),
    ],
)
def test_tasks_inferred_from_architecture(architecture: str, tasks: tuple[Task, ...]) -> None:
    assert tasks_for_architecture(architecture) == tasks


def test_core_threads(tmp_path: Path) -> None:
    models = '[[models]]\nname = "m1"\npath = "m1"\n'
    assert load_config(write(tmp_path, models)).server.core_threads is None  # the affinity's cores
    assert load_config(write(tmp_path, f"[server]\ncore_threads = 4\n{models}")).server.core_threads == 4
    for bad in ("0", "-2", '"4"', "2.5", "true"):
        text = problems(tmp_path, f"[server]\ncore_threads = {bad}\n{models}")
        assert "[server], key 'core_threads': must be a positive integer, got " in text, text


def test_torch_threads_is_validated_and_applied(tmp_path: Path) -> None:
    import torch

    from tokenwire.app import TokenwireServer

    models = '[[models]]\nname = "m1"\npath = "m1"\n'
    assert load_config(write(tmp_path, models)).server.torch_threads is None  # torch's own choice
    for bad in ("0", "-1", '"2"'):
        text = problems(tmp_path, f"[server]\ntorch_threads = {bad}\n{models}")
        assert "[server], key 'torch_threads': must be a positive integer, got " in text, text
    before = torch.get_num_threads()
    try:
        config = load_config(write(tmp_path, f"[server]\ntorch_threads = 1\n{models}"))

        async def build() -> None:  # grpc.aio's server wants a running loop
            TokenwireServer(config)

        asyncio.run(build())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_serve_flags_override_the_server_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenwire.app
    from tokenwire.cli import main

    served: list[Config] = []

    async def fake_serve(config: Config) -> None:
        served.append(config)

    monkeypatch.setattr(tokenwire.app, "serve", fake_serve)
    path = write(tmp_path, '[server]\nport = 6000\ncore_threads = 2\n[[models]]\nname = "m1"\npath = "m1"\n')
    assert main(["serve", "--config", str(path)]) == 0
    assert main(["serve", "--config", str(path), "--core-threads", "3", "--port", "0", "--torch-threads", "1"]) == 0
    assert [(c.server.core_threads, c.server.port) for c in served] == [(2, 6000), (3, 0)]
    assert [c.server.torch_threads for c in served] == [None, 1]
    with pytest.raises(SystemExit):
        main(["serve", "--config", str(path), "--core-threads", "0"])


def test_every_command_shows_an_example_in_its_help() -> None:
    from tokenwire.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"serve", "demo-models", "generate", "tokenize", "embed"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example:\n  tokenwire " + name in text, name
