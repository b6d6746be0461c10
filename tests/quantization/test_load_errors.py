"""A quantization or placement that cannot work fails its model before any weight is read, with a
message naming the model, the registry key and what to change; like every load failure, the
model is FAILED (ModelInfo.error) and the server serves the others. A request that runs out of
device memory fails alone with RESOURCE_EXHAUSTED and the server goes on."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.models.loader import ModelLoadError, load_model
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

FAILED, READY = models_pb2.MODEL_STATE_FAILED, models_pb2.MODEL_STATE_READY


def _serve(specs: tuple[ModelSpec, ...]) -> Iterator[tuple[InProcessServer, Client]]:
    server = InProcessServer(Config(models=specs)).start()
    try:
        with Client(server.target) as client:
            yield server, client
    finally:
        server.stop()


def _info(client: Client, name: str) -> models_pb2.ModelInfo:
    return client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model=name))


def _generates(client: Client, name: str) -> bool:
    reply = client.generation.Generate(
        generation_pb2.GenerateRequest(
            model=name, prompt="hi", stopping=common_pb2.StoppingParams(max_new_tokens=3, ignore_eos=True)
        )
    )
    return len(reply.sequences[0].token_ids) == 3


def _llama(demo_models_dir: Path, name: str, **kw: Any) -> ModelSpec:
    return ModelSpec(name=name, path=str(demo_models_dir / "tiny-llama"), **kw)


@pytest.fixture(scope="module")
def misconfigured(demo_models_dir: Path) -> Iterator[tuple[InProcessServer, Client]]:
    yield from _serve(
        (
            _llama(demo_models_dir, "good", quantization="nf4"),
            _llama(demo_models_dir, "too-big", device_map="auto", max_memory={"cpu": 100_000}),
            _llama(
                demo_models_dir,
                "typo-map",
                device_map={"model.embed_tokens": "cpu", "model.layer": "cpu", "model.norm": "cpu", "lm_head": "cpu"},
            ),
            _llama(demo_models_dir, "typo-skip", quantization="int8", llm_int8_skip_modules=("lm_haed",)),
            _llama(
                demo_models_dir,
                "quantized-on-disk",
                quantization="nf4",
                device_map="sequential",
                max_memory={"cpu": 700_000, "disk": 2**30},
                max_batch_size=2,
                max_input_tokens=32,
                max_new_tokens=16,
            ),
        )
    )


# model → fragments its error must contain (model, key, what to change).
EXPECTED: dict[str, tuple[str, ...]] = {
    "too-big": (
        "model 'too-big', key 'max_memory'",
        "does not fit",
        "disk",
        "raise max_memory",
        'quantization = "nf4"',
        "max_batch_size",
    ),
    "typo-map": ("model 'typo-map', key 'device_map'", "unknown module 'model.layer'", "did you mean 'model.layers'"),
    "typo-skip": ("model 'typo-skip', key 'llm_int8_skip_modules'", "'lm_haed' matches no module", "'lm_head'"),
    "quantized-on-disk": ("model 'quantized-on-disk', key 'device_map'", "disk without a GPU", 'quantization = "none"'),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_misconfigured_model_fails_with_a_message_naming_model_key_and_fix(
    misconfigured: tuple[InProcessServer, Client], name: str
) -> None:
    _, client = misconfigured
    info = _info(client, name)
    assert info.state == FAILED
    for fragment in EXPECTED[name]:
        assert fragment in info.error, info.error
    with pytest.raises(grpc.RpcError) as err:
        _generates(client, name)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and name in err.value.details()


def test_the_others_still_serve(misconfigured: tuple[InProcessServer, Client]) -> None:
    _, client = misconfigured
    assert _info(client, "good").state == READY and _generates(client, "good")
    assert client.is_serving("")


def test_bitsandbytes_missing(demo_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    for _, client in _serve((_llama(demo_models_dir, "q", quantization="int8"), _llama(demo_models_dir, "plain"))):
        info = _info(client, "q")
        assert info.state == FAILED
        assert "model 'q', key 'quantization' = 'int8' needs bitsandbytes, which is not installed" in info.error
        assert "pip install 'tokenwire[quantization]'" in info.error and 'quantization = "none"' in info.error
        assert _generates(client, "plain")


def test_bitsandbytes_without_a_backend_for_the_device(demo_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bitsandbytes

    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"}, raising=False)
    with pytest.raises(ModelLoadError) as err:
        load_model(_llama(demo_models_dir, "q", quantization="nf4"))
    message = str(err.value)
    assert "model 'q', key 'quantization' = 'nf4'" in message
    assert "no supported backend for cpu (it supports: cuda)" in message and 'quantization = "none"' in message


def test_checkpoint_quantized_otherwise_than_asked(demo_models_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "nf4"
    load_model(_llama(demo_models_dir, "q", quantization="nf4")).first_module().save_pretrained(saved)
    for f in (demo_models_dir / "tiny-llama").iterdir():
        if "token" in f.name:
            shutil.copy(f, saved / f.name)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelSpec(name="saved", path=str(saved), quantization="int8"))
    assert "model 'saved', key 'quantization'" in str(err.value)
    assert "saved already quantized (nf4)" in str(err.value) and 'quantization = "none"' in str(err.value)


def _inject(scheduler: Any, attribute: str, exc: Callable[[], BaseException]) -> Callable[[], None]:
    real = getattr(scheduler.state.kv, attribute)
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc()
        return real(*args, **kwargs)

    setattr(scheduler.state.kv, attribute, flaky)
    return lambda: setattr(scheduler.state.kv, attribute, real)


@pytest.mark.parametrize("step", ["prefill", "decode"])
def test_out_of_memory_fails_the_request_and_the_server_goes_on(
    misconfigured: tuple[InProcessServer, Client], step: str
) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    server, client = misconfigured
    assert _generates(client, "good")  # the scheduler exists
    scheduler = server.server.engines._schedulers["good"]  # type: ignore[union-attr]
    restore = _inject(scheduler, step, lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    try:
        with pytest.raises(grpc.RpcError) as err:
            _generates(client, "good")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ran out of memory" in err.value.details() and "good" in err.value.details()
        status = rpc_status.from_call(err.value)
        assert status is not None and any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        assert _generates(client, "good")  # the next request is served
    finally:
        restore()


# One-shot tasks (the dynamic batcher) and multimodal chat (the generation scheduler) too: the
# model's forward itself raises, whatever engine calls it.
ONE_SHOT_OOM = [
    ("tiny-llava-nf4", "multimodal_chat", False),
    ("tiny-bert-nf4", "fill_mask", True),
    ("tiny-clip-int8", "classify_image", True),
]


@pytest.mark.parametrize(("model", "task", "one_shot"), ONE_SHOT_OOM)
def test_out_of_memory_in_any_task_is_resource_exhausted(
    quantized_server: InProcessServer,
    qclient: Client,
    model: str,
    task: str,
    one_shot: bool,
    request: pytest.FixtureRequest,
) -> None:
    from test_quantized_rpcs import RPCS

    from tokenwire.tasks import Task

    # one_shot: the dynamic batcher re-raises the exception and the interceptor maps it.
    rpc = next(r for r in RPCS if r.task is Task(task))
    rpc.call(qclient, model)
    entry = quantized_server.server.registry.entries[model]  # type: ignore[union-attr]
    assert entry.loaded is not None
    module = entry.loaded.modules[Task(task)]
    calls = {"n": 0}

    def fail_once(*_: Any) -> None:  # on every submodule: whatever part the engine runs
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handles = [m.register_forward_pre_hook(fail_once) for m in module.modules()]
    try:
        with pytest.raises(grpc.RpcError) as err:
            rpc.call(qclient, model)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert rpc.check(rpc.call(qclient, model))  # the next request is served
    finally:
        for handle in handles:
            handle.remove()
