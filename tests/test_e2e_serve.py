"""A real `tokenwire serve` process, driven by the `tokenwire` CLI as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ServeProcess, wait_serving
from tokenwire.client import Client

pytestmark = pytest.mark.e2e
TOKENWIRE = str(Path(sys.executable).with_name("tokenwire"))


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([TOKENWIRE, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def config_file(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "models.toml"
    path.write_text(f"""
[server]
grace_period_s = 5

[[models]]
name = "llama"
path = "{demo_models_dir / "tiny-llama"}"
max_new_tokens = 32

[[models]]
name = "bert"
path = "{demo_models_dir / "tiny-bert"}"
tasks = ["fill_mask"]
""")
    return path


@pytest.fixture(scope="module")
def served(config_file: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess("--config", str(config_file)).start()
    try:
        with Client(proc.target) as c:
            wait_serving(c, "")
        yield proc
    finally:
        proc.kill()


def test_cli_models_json(served: ServeProcess) -> None:
    out = cli("models", "--target", served.target, "--json").stdout.splitlines()
    infos = [json.loads(line) for line in out]
    assert [i["name"] for i in infos] == ["bert", "llama"]
    llama = infos[1]
    assert llama["tasks"] == ["TASK_GENERATE"] and llama["state"] == "MODEL_STATE_READY"
    assert llama["maxNewTokens"] == 32 and llama["architecture"] == "LlamaForCausalLM"
    assert infos[0]["tasks"] == ["TASK_FILL_MASK"]  # the configured subset, not all it could do


def test_cli_tokenize_round_trip(served: ServeProcess) -> None:
    enc = json.loads(
        cli(
            "tokenize",
            "--target",
            served.target,
            "--json",
            "--model",
            "llama",
            "--no-special-tokens",
            "naïve café 東京",
        ).stdout
    )
    ids = [str(i) for i in enc["ids"]]
    text = cli("detokenize", "--target", served.target, "--model", "llama", *ids).stdout
    assert text == "naïve café 東京\n"


def test_cli_reports_errors_with_field(served: ServeProcess) -> None:
    result = cli("detokenize", "--target", served.target, "--model", "llama", "999999", check=False)
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "field ids[0]" in result.stderr
    result = cli("generate", "--target", served.target, "--model", "bert", "hi", check=False)
    assert result.returncode == 1 and "FAILED_PRECONDITION" in result.stderr
    result = cli("generate", "--target", served.target, "--model", "llama", "--top-p", "1.5", "hi", check=False)
    assert result.returncode == 1 and "field sampling.top_p: top_p must be in (0, 1], got 1.5" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_generate_stream_prints_tokens_as_they_come(served: ServeProcess) -> None:
    streamed = cli(
        "generate",
        "--target",
        served.target,
        "--model",
        "llama",
        "--stream",
        "--max-new-tokens",
        "12",
        "Once upon a time",
    ).stdout
    unary = cli(
        "generate", "--target", served.target, "--model", "llama", "--max-new-tokens", "12", "Once upon a time"
    ).stdout
    assert streamed == unary and streamed.strip()
    lines = cli(
        "generate",
        "--target",
        served.target,
        "--model",
        "llama",
        "--stream",
        "--json",
        "--max-new-tokens",
        "4",
        "--seed",
        "3",
        "hi",
    ).stdout.splitlines()
    messages = [json.loads(line) for line in lines]
    assert messages[0]["seed"] == "3" and messages[-1]["usage"]["completionTokens"] == 4
    assert sum(len(m.get("tokenIds", [])) for m in messages) == 4


def _first_line_then_close(*args: str) -> tuple[bytes, bytes, int]:
    """Run the CLI, read its first line and close the pipe, as `... | head -1` does."""
    proc = subprocess.Popen([TOKENWIRE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    return first, err, proc.returncode


def test_cli_output_into_a_closed_pipe_stops_quietly(served: ServeProcess) -> None:
    """`tokenwire ... | head -1`: one line out, no traceback, and the exit status of a tool
    that SIGPIPE ended (141). Tokenizing a long text prints far more than a pipe buffers, so the
    CLI is still writing when the reader goes away."""
    first, err, code = _first_line_then_close(
        "tokenize", "--target", served.target, "--model", "llama", "hello world " * 5000
    )
    assert first.strip() and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert code == 141
    # a stream: it may finish before the reader leaves (0) or not (141); never a traceback
    first, err, code = _first_line_then_close(
        "generate",
        "--target",
        served.target,
        "--model",
        "llama",
        "--stream",
        "--json",
        "--max-new-tokens",
        "32",
        "--ignore-eos",
        "Once upon a time",
    )
    assert json.loads(first)["tokenIds"] and code in (0, 141)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_cli_picks_a_model_for_the_task_when_none_is_named(served: ServeProcess) -> None:
    generated = json.loads(cli("generate", "--target", served.target, "--json", "--max-new-tokens", "3", "hi").stdout)
    assert generated["model"] == "llama"
    masks = json.loads(cli("fill-mask", "--target", served.target, "--json", "the [MASK] sat .").stdout)
    assert len(masks["masks"]) == 1
    result = cli("classify-image", "--target", served.target, "--image", "/dev/null", "a", "b", check=False)
    assert result.returncode != 0 and "no ready model" in result.stderr and "classify_image" in result.stderr


def test_sigterm_drains_and_exits_zero(config_file: Path) -> None:
    proc = ServeProcess("--config", str(config_file)).start()
    try:
        with Client(proc.target) as c:
            wait_serving(c, "")
        assert proc.terminate() == 0
        assert "shutting down" in "".join(proc.output)
    finally:
        proc.kill()


def test_bad_config_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[models]]\nname = "m"\npath = "./missing"\nquantization = "int3"\nmax_bach_size = 4\n')
    result = subprocess.run(
        [TOKENWIRE, "serve", "--config", str(path), "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "model 'm' (models[0]), key 'path'" in result.stderr
    assert "key 'quantization'" in result.stderr
    assert "unknown key 'max_bach_size' (did you mean 'max_batch_size'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_that_cannot_fit_refuses_to_start(demo_models_dir: Path, tmp_path: Path) -> None:
    """Placement and quantization mistakes stop start-up (files that cannot be read only fail
    their own model, see test_health_reflection)."""
    path = tmp_path / "tight.toml"
    path.write_text(
        f'[[models]]\nname = "big"\npath = "{demo_models_dir / "tiny-llama"}"\n'
        'device_map = "auto"\nmax_memory = { cpu = 100000 }\n'
        f'[[models]]\nname = "fine"\npath = "{demo_models_dir / "tiny-gpt2"}"\n'
    )
    result = subprocess.run(
        [TOKENWIRE, "serve", "--config", str(path), "--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "model 'big', key 'max_memory'" in result.stderr and "does not fit" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_artifacts_installed() -> None:
    """`pip install .` compiled the core and generated the pb modules with .pyi stubs."""
    import tokenwire._core as core
    import tokenwire.v1 as v1

    assert "tokenwire core" in core.build_info()
    stubs = {p.name for p in Path(v1.__file__).parent.glob("*_pb2.pyi")}
    assert stubs == {f"{n}_pb2.pyi" for n in ("common", "generation", "understanding", "multimodal", "models")}
