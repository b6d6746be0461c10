"""Bad constraints get INVALID_ARGUMENT naming the field with the compiler's message; a slow
compilation fails its own request only, while the server keeps serving the others."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from tokenwire.client import Client, field_violations
from tokenwire.constraints import compiler
from tokenwire.v1 import common_pb2, generation_pb2, multimodal_pb2


def _generate(client: Client, constraint: common_pb2.Constraint, **extra: Any) -> generation_pb2.GenerateResponse:
    request = generation_pb2.GenerateRequest(
        model="tiny-llama",
        prompt="hi",
        constraint=constraint,
        stopping=common_pb2.StoppingParams(max_new_tokens=8, **extra.pop("stopping", {})),
        **extra,
    )
    return client.generation.Generate(request, timeout=60)


def _violation(client: Client, constraint: common_pb2.Constraint, **extra: Any) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as info:
        _generate(client, constraint, **extra)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    ((field, description),) = field_violations(info.value)
    assert "Traceback" not in description and ".cc:" not in description
    return field, description


@pytest.mark.parametrize(
    ("constraint", "field", "says"),
    [
        (common_pb2.Constraint(json_schema='{"type": "objec"}'), "constraint.json_schema", "objec"),
        (common_pb2.Constraint(json_schema="not json"), "constraint.json_schema", "must be a JSON document"),
        (common_pb2.Constraint(json_schema="[1, 2]"), "constraint.json_schema", "must be a JSON Schema"),
        (common_pb2.Constraint(json_schema=""), "constraint.json_schema", "must not be empty"),
        (common_pb2.Constraint(regex="(ab"), "constraint.regex", "parenthesis"),
        (common_pb2.Constraint(grammar="root ::= undefined_rule"), "constraint.grammar", "undefined_rule"),
        (common_pb2.Constraint(grammar='start ::= "x"'), "constraint.grammar", "root"),
        (common_pb2.Constraint(choices=common_pb2.ChoiceList()), "constraint.choices.values", "at least one"),
        (
            common_pb2.Constraint(choices=common_pb2.ChoiceList(values=["a", ""])),
            "constraint.choices.values[1]",
            "empty",
        ),
    ],
)
def test_invalid_constraint_names_the_field(
    client: Client, constraint: common_pb2.Constraint, field: str, says: str
) -> None:
    got_field, description = _violation(client, constraint)
    assert got_field == field
    assert says.lower() in description.lower(), description


def test_ignore_eos_cannot_be_combined(client: Client) -> None:
    field, _ = _violation(client, common_pb2.Constraint(regex="a+"), stopping={"ignore_eos": True})
    assert field == "stopping.ignore_eos"


def test_unknown_logprobs_mode(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.generation.Generate(
            generation_pb2.GenerateRequest(
                model="tiny-llama", prompt="hi", logprobs=common_pb2.LogprobsParams(enabled=True, mode=9)
            )  # type: ignore[arg-type]
        )
    assert field_violations(info.value)[0][0] == "logprobs.mode"


def test_multimodal_chat_takes_constraints(client: Client) -> None:
    request = multimodal_pb2.MultimodalChatRequest(
        model="tiny-llava",
        messages=[multimodal_pb2.ChatMessage(role="user", parts=[multimodal_pb2.ContentPart(text="Pick one")])],
        constraint=common_pb2.Constraint(choices=common_pb2.ChoiceList(values=["left", "right"])),
        stopping=common_pb2.StoppingParams(max_new_tokens=16),
    )
    reply = client.multimodal.MultimodalChat(request, timeout=60)
    sequence = reply.sequences[0]
    if sequence.finish_reason == common_pb2.FINISH_REASON_EOS_TOKEN:
        assert sequence.text in ("left", "right")
    else:
        assert "left".startswith(sequence.text) or "right".startswith(sequence.text)
    request.constraint.regex = "(("
    with pytest.raises(grpc.RpcError) as info:
        client.multimodal.MultimodalChat(request, timeout=60)
    assert field_violations(info.value)[0][0] == "constraint.regex"


def test_a_slow_compilation_fails_alone_and_stalls_nobody(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    real = compiler.ModelGrammars._compile
    release = threading.Event()

    def slow(self: compiler.ModelGrammars, spec: Any) -> Any:
        if spec.source == "slow+":
            release.wait(30)  # a pathological grammar: the compile thread is busy
        return real(self, spec)

    monkeypatch.setattr(compiler.ModelGrammars, "_compile", slow)
    monkeypatch.setattr(compiler, "COMPILE_TIMEOUT_S", 1.0)
    try:
        outcome: dict[str, Any] = {}

        def slow_request() -> None:
            try:
                _generate(client, common_pb2.Constraint(regex="slow+"))
            except grpc.RpcError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.2)
        plain = _generate(client, common_pb2.Constraint())  # no constraint: generation goes on
        assert plain.sequences[0].token_ids
        other = _generate(client, common_pb2.Constraint(regex="[ab]+"))  # another compilation too
        assert other.sequences[0].text
        assert thread.is_alive() and not release.is_set(), "both were served while the slow one compiles"
        thread.join(30)
        error = outcome["error"]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error)[0][0] == "constraint.regex"
        assert "did not compile within" in error.details()
    finally:
        release.set()
