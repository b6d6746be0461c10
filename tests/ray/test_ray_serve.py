"""tokenwire on Ray Serve, end to end: a two-node local cluster, `tokenwire ray serve --address`,
tiny-llama and tiny-bert with two replicas each, called through Serve's gRPC proxy with the
plain Python client, and compared with the plain server on the same registry."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ray_cluster import RayDeployment, wait_gone
from tokenwire.client import Client, field_violations
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2, understanding_pb2

GREEDY = generation_pb2.GenerateRequest(model="tiny-llama", prompt="Once upon a time", stopping={"max_new_tokens": 12})


def test_cluster_has_two_nodes_and_two_replicas_per_model(ray_app: RayDeployment) -> None:
    import ray
    from ray import serve

    assert sum(1 for n in ray.nodes() if n["Alive"]) == 2
    deployments = serve.status().applications["tokenwire"].deployments
    for name in ("model-tiny-llama", "model-tiny-bert"):
        assert deployments[name].replica_states.get("RUNNING") == 2, deployments[name]


def test_health(ray_client: Client) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    expected = {
        "": serving,
        "tokenwire.v1.Generation": serving,
        "tokenwire.v1.Understanding": serving,
        "tokenwire.v1.Models": serving,
        "tokenwire.v1.Multimodal": not_serving,  # no multimodal model in this registry
    }
    for service, status in expected.items():
        assert ray_client.health.Check(health_pb2.HealthCheckRequest(service=service)).status == status, service
    with pytest.raises(grpc.RpcError) as err:
        ray_client.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _reflect(target: str, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        return next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))


def test_reflection_lists_services_and_resolves_methods(ray_app: RayDeployment) -> None:
    listed = _reflect(ray_app.target, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "tokenwire.v1.Generation",
        "tokenwire.v1.Understanding",
        "tokenwire.v1.Multimodal",
        "tokenwire.v1.Models",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    # ghz asks for the method symbol; Serve's own reflection would answer "Symbol not found".
    found = _reflect(
        ray_app.target, reflection_pb2.ServerReflectionRequest(file_containing_symbol="tokenwire.v1.Models.Tokenize")
    )
    assert found.HasField("file_descriptor_response"), found


def test_generate_greedy_equals_plain_server(ray_client: Client, plain_client: Client) -> None:
    through_ray, call = ray_client.generation.Generate.with_call(GREEDY, metadata=(("x-request-id", "ray-test-1"),))
    plain = plain_client.generation.Generate(GREEDY)
    assert [list(s.token_ids) for s in through_ray.sequences] == [list(s.token_ids) for s in plain.sequences]
    assert through_ray.sequences[0].text == plain.sequences[0].text
    assert through_ray.usage == plain.usage
    trailers = dict(call.trailing_metadata())
    assert trailers["x-request-id"] == "ray-test-1"
    assert trailers["generated-tokens"] == "12"


def test_generate_stream_streams(ray_client: Client, plain_client: Client) -> None:
    call = ray_client.generation.GenerateStream(GREEDY)
    messages = list(call)
    deltas = [m for m in messages if m.token_ids]
    assert len(deltas) > 1, "the tokens came in one message"
    assert messages[-1].HasField("usage") and messages[-1].usage.completion_tokens == 12
    assert "".join(m.text for m in messages) == plain_client.generation.Generate(GREEDY).sequences[0].text
    trailers = dict(call.trailing_metadata())
    assert trailers["generated-tokens"] == "12" and "ttft-ms" in trailers


def test_fill_mask_equals_plain_server(ray_client: Client, plain_client: Client) -> None:
    request = understanding_pb2.FillMaskRequest(
        model="tiny-bert", text="The capital of France, [MASK], is big.", top_k=3
    )
    through_ray = ray_client.understanding.FillMask(request)
    plain = plain_client.understanding.FillMask(request)
    assert [c.token_id for c in through_ray.masks[0].candidates] == [c.token_id for c in plain.masks[0].candidates]
    assert [c.score for c in through_ray.masks[0].candidates] == pytest.approx(
        [c.score for c in plain.masks[0].candidates], rel=1e-5
    )


def test_list_models_merges_every_deployment(ray_client: Client) -> None:
    models = ray_client.models.ListModels(models_pb2.ListModelsRequest()).models
    assert [m.name for m in models] == ["tiny-bert", "tiny-llama"]


def test_invalid_argument_keeps_code_and_field_violation(ray_client: Client) -> None:
    bad = generation_pb2.GenerateRequest(
        model="tiny-llama",
        prompt="hi",
        method=common_pb2.DECODING_METHOD_SAMPLE,
        sampling={"top_p": 1.5},
    )
    with pytest.raises(grpc.RpcError) as err:
        ray_client.generation.Generate(bad, metadata=(("x-request-id", "ray-test-2"),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(err.value)] == ["sampling.top_p"]
    assert dict(err.value.trailing_metadata())["x-request-id"] == "ray-test-2"
    # A stream that fails before its first message keeps code and message (Serve's proxy drops
    # the details of a raised stream: docs/ray.md).
    with pytest.raises(grpc.RpcError) as err:
        list(ray_client.generation.GenerateStream(bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "top_p" in (err.value.details() or "")


def test_unknown_model_is_not_found_listing_models(ray_client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        ray_client.understanding.FillMask(understanding_pb2.FillMaskRequest(model="nope", text="a [MASK]"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "tiny-bert, tiny-llama" in (err.value.details() or "")


def test_wrong_task_is_failed_precondition(ray_client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        ray_client.understanding.FillMask(understanding_pb2.FillMaskRequest(model="tiny-llama", text="a [MASK]"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_zz_sigterm_drains_undeploys_and_leaves_no_ray_processes(ray_app: RayDeployment) -> None:
    """Last (file order): SIGTERM the CLI, then stop the cluster; nothing of Ray stays."""
    from ray import serve

    assert ray_app.process.proc is not None
    ray_app.process.proc.send_signal(__import__("signal").SIGTERM)
    assert ray_app.process.proc.wait(90) == 0, "".join(ray_app.process.output)
    assert "tokenwire" not in serve.status().applications, "the application is still deployed"
    ray_app.stop()
    assert not wait_gone(ray_app.preexisting), "Ray processes left behind"
