"""CPU + disk offload (accelerate hooks, weights read back from an offload folder) serves the
same greedy tokens as the plain model, through the server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

PROMPTS = ("the cat sat on", "once upon a time", "hello world, this is", "a b c d e f g")
_SMALL = {"max_batch_size": 4, "max_input_tokens": 32, "max_new_tokens": 16}
EXPLICIT = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "lm_head": "disk",
}


@pytest.fixture(scope="module")
def offload_server(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    path = str(demo_models_dir / "tiny-llama")
    specs = (
        ModelSpec(name="plain", path=path, **_SMALL),  # type: ignore[arg-type]
        ModelSpec(
            name="explicit",
            path=path,
            device_map=EXPLICIT,
            offload_folder=str(tmp_path_factory.mktemp("offload")),
            **_SMALL,
        ),  # type: ignore[arg-type]
        # A CPU budget that holds the embedding and one layer next to the reservation.
        ModelSpec(
            name="sequential", path=path, device_map="sequential", max_memory={"cpu": 900_000, "disk": 2**30}, **_SMALL
        ),  # type: ignore[arg-type]
    )
    with InProcessServer(Config(models=specs)) as server:
        yield server


@pytest.fixture()
def oclient(offload_server: InProcessServer) -> Iterator[Client]:
    with Client(offload_server.target) as c:
        yield c


def _greedy(c: Client, model: str, prompt: str) -> list[int]:
    reply = c.generation.Generate(
        generation_pb2.GenerateRequest(
            model=model, prompt=prompt, stopping=common_pb2.StoppingParams(max_new_tokens=16, ignore_eos=True)
        )
    )
    return list(reply.sequences[0].token_ids)


@pytest.mark.parametrize("model", ["explicit", "sequential"])
def test_offloaded_model_reports_its_placement(oclient: Client, model: str) -> None:
    info = oclient.models.GetModelInfo(models_pb2.GetModelInfoRequest(model=model))
    assert info.state == models_pb2.MODEL_STATE_READY, info.error
    assert set(info.device_map.values()) == {"cpu", "disk"}
    assert info.memory_per_device["cpu"] > 0 and info.memory_per_device["disk"] > 0
    assert sum(info.memory_per_device.values()) == info.memory_footprint_bytes
    # Layers on disk compute on the CPU: the whole reservation is there.
    assert set(info.reserved_memory_per_device) == {"cpu"}
    assert info.placement == model
    # Offloaded layers compute elsewhere than they live: they keep the DynamicCache path.
    assert info.decode_path == "dynamic_cache" and "offloaded" in info.decode_path_reason
    if model == "explicit":
        assert dict(info.device_map) == EXPLICIT


@pytest.mark.parametrize("model", ["explicit", "sequential"])
def test_offload_gives_the_plain_greedy_output(oclient: Client, model: str) -> None:
    for prompt in PROMPTS:
        assert _greedy(oclient, model, prompt) == _greedy(oclient, "plain", prompt)
    # Batched: concurrent requests share the offloaded forward passes.
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        batched = list(pool.map(lambda p: _greedy(oclient, model, p), PROMPTS))
    assert batched == [_greedy(oclient, "plain", p) for p in PROMPTS]
