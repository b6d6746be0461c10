"""Status codes of PROTOCOL.md: wrong task, unknown model, request ids, and the unexpected."""

from __future__ import annotations

import grpc
import pytest

from harness import InProcessServer
from tokenwire.client import Client, request_id
from tokenwire.config import Config
from tokenwire.v1 import (
    common_pb2,
    generation_pb2,
    models_pb2,
    multimodal_pb2,
    understanding_pb2,
)


def _error(call, request, **kwargs):  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        result = call(request, **kwargs)
        for _ in result if hasattr(result, "__iter__") and not hasattr(result, "ListFields") else ():
            pass
    return info.value


def test_wrong_task_is_failed_precondition_naming_the_tasks(client: Client) -> None:
    err = _error(client.generation.Generate, generation_pb2.GenerateRequest(model="tiny-bert", prompt="hi"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fill_mask, next_sentence" in err.details()
    err = _error(client.understanding.FillMask, understanding_pb2.FillMaskRequest(model="tiny-llama", text="a [MASK]"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "generate" in err.details()


def test_unknown_model_is_not_found_on_every_service(client: Client) -> None:
    err = _error(client.generation.GenerateStream, generation_pb2.GenerateRequest(model="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = _error(client.multimodal.Embed, multimodal_pb2.EmbedRequest())
    assert err.code() == grpc.StatusCode.NOT_FOUND and "model is required" in err.details()


def test_client_request_id_is_echoed(client: Client) -> None:
    err = _error(
        client.models.GetModelInfo, models_pb2.GetModelInfoRequest(model="x"), metadata=(("x-request-id", "req-42"),)
    )
    assert request_id(err) == "req-42"
    _, call = client.models.ListModels.with_call(models_pb2.ListModelsRequest(), metadata=(("x-request-id", "req-43"),))
    assert ("x-request-id", "req-43") in call.trailing_metadata()


class _ExplodingTokenizer:
    def __len__(self) -> int:
        return 10

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return ["x" for _ in ids]

    def decode(self, *args: object, **kwargs: object) -> str:
        raise RuntimeError("secret internal detail /home/user/weights")


def test_unexpected_exception_is_internal_with_request_id_and_no_traceback(demo_models_dir) -> None:  # type: ignore[no-untyped-def]
    from tokenwire.demo_config import demo_config

    config = demo_config(demo_models_dir)
    tiny = Config(models=tuple(s for s in config.models if s.name == "tiny-gpt2"))
    server = InProcessServer(tiny).start()
    try:
        assert server.server is not None
        server.server.registry.entries["tiny-gpt2"].loaded.tokenizer = _ExplodingTokenizer()  # type: ignore[union-attr]
        with Client(server.target) as c:
            err = _error(c.models.Detokenize, models_pb2.DetokenizeRequest(model="tiny-gpt2", ids=[1]))
            rid = request_id(err)
            assert err.code() == grpc.StatusCode.INTERNAL
            assert err.details() == f"internal error (request id {rid})"
            assert "secret" not in err.details() and "Traceback" not in err.details()
            # The server keeps serving.
            assert c.models.ListModels(models_pb2.ListModelsRequest()).models
    finally:
        server.stop()


def test_sampling_message_defaults_are_unset() -> None:
    """Presence matters: an unset knob means 'the model's default', not zero."""
    params = common_pb2.SamplingParams()
    assert not params.HasField("temperature") and not params.HasField("seed")
