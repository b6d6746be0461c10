"""Health per service follows model loading; reflection lists every service."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from harness import InProcessServer, wait_serving
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.demo_config import demo_config
from tokenwire.engine.engines import Engines
from tokenwire.models.loader import LoadedModel, load_model
from tokenwire.models.registry import ModelRegistry
from tokenwire.v1 import models_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ALL_SERVICES = [
    "",
    "tokenwire.v1.Generation",
    "tokenwire.v1.Understanding",
    "tokenwire.v1.Multimodal",
    "tokenwire.v1.Models",
]


def status(client: Client, service: str) -> int:
    return client.health.Check(health_pb2.HealthCheckRequest(service=service)).status


def test_every_service_serving_once_loaded(client: Client) -> None:
    for service in ALL_SERVICES:
        assert status(client, service) == SERVING, service
    with pytest.raises(grpc.RpcError) as info:
        status(client, "no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_and_resolves_messages(client: Client) -> None:
    db = ProtoReflectionDescriptorDatabase(client.channel)
    services = set(db.get_services())
    assert {
        "tokenwire.v1.Generation",
        "tokenwire.v1.Understanding",
        "tokenwire.v1.Multimodal",
        "tokenwire.v1.Models",
        "grpc.health.v1.Health",
    } <= services
    generate = db.FindFileContainingSymbol("tokenwire.v1.GenerateRequest")
    assert generate.package == "tokenwire.v1"


def test_health_not_serving_while_models_load(demo_models_dir: Path) -> None:
    """A model still loading: its service NOT_SERVING, its calls UNAVAILABLE, its state LOADING."""
    release = threading.Event()

    def slow_loader(spec: ModelSpec):  # type: ignore[no-untyped-def]
        if spec.name == "tiny-llama":
            assert release.wait(60)
        return load_model(spec)

    config = demo_config(demo_models_dir)
    by_name = {s.name: s for s in config.models}
    subset = Config(models=(by_name["tiny-bert"], by_name["tiny-llama"]))  # loaded in this order
    server = InProcessServer(
        subset, registry_factory=lambda c: ModelRegistry(c.models, slow_loader), load=False
    ).start()
    try:
        with Client(server.target) as c:
            wait_serving(c, "tokenwire.v1.Understanding", timeout=60)  # tiny-bert loads first…
            assert status(c, "tokenwire.v1.Generation") == NOT_SERVING  # …tiny-llama is stuck
            assert status(c, "") == NOT_SERVING
            assert status(c, "tokenwire.v1.Models") == SERVING
            info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
            assert info.state == models_pb2.MODEL_STATE_LOADING
            with pytest.raises(grpc.RpcError) as err:
                c.models.Tokenize(models_pb2.TokenizeRequest(model="tiny-llama", text="hi"))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            release.set()
            wait_serving(c, "", timeout=60)
            assert status(c, "tokenwire.v1.Generation") == SERVING
            assert status(c, "tokenwire.v1.Multimodal") == NOT_SERVING  # no model serves it
    finally:
        release.set()
        server.stop()


def test_failed_model_is_reported_while_others_serve(demo_models_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    config = demo_config(demo_models_dir)
    specs = tuple(s for s in config.models if s.name == "tiny-gpt2") + (ModelSpec(name="broken", path=str(broken)),)
    server = InProcessServer(Config(models=specs)).start()
    try:
        with Client(server.target) as c:
            info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="broken"))
            assert info.state == models_pb2.MODEL_STATE_FAILED and info.error
            with pytest.raises(grpc.RpcError) as err:
                c.models.Tokenize(models_pb2.TokenizeRequest(model="broken", text="hi"))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "failed to load" in err.value.details()
            assert status(c, "tokenwire.v1.Generation") == SERVING  # tiny-gpt2 still serves
            assert c.models.Tokenize(models_pb2.TokenizeRequest(model="tiny-gpt2", text="hi")).ids
    finally:
        server.stop()


def test_model_whose_engine_cannot_start_fails(demo_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines.start (the KV pool's allocation) runs before a model turns READY; when it
    raises, that model is FAILED with the reason and the others serve."""
    start = Engines.start

    def failing_start(self: Engines, model: LoadedModel) -> None:
        if model.spec.name == "tiny-llama":
            raise RuntimeError("KV pool does not fit")
        start(self, model)

    monkeypatch.setattr(Engines, "start", failing_start)
    by_name = {s.name: s for s in demo_config(demo_models_dir).models}
    with (
        InProcessServer(Config(models=(by_name["tiny-llama"], by_name["tiny-gpt2"]))) as server,
        Client(server.target) as c,
    ):
        info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
        assert info.state == models_pb2.MODEL_STATE_FAILED
        assert info.error == "KV pool does not fit"
        assert (
            c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-gpt2")).state
            == models_pb2.MODEL_STATE_READY
        )
        assert status(c, "tokenwire.v1.Generation") == SERVING
        assert status(c, "") == SERVING
