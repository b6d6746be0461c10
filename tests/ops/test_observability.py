"""Prometheus metrics, per-request timing trailers, request ids, JSON logs."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ServeProcess, wait_serving
from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(demo_models_dir: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        "--demo", "--demo-dir", str(demo_models_dir), "--metrics-port", "0", "--log-format", "json"
    ).start()
    try:
        with Client(proc.target) as c:
            wait_serving(c, "")
        yield proc
    finally:
        proc.kill()


def metrics_url(proc: ServeProcess) -> str:
    for line in proc.output:
        if m := re.search(r"metrics on (http://\S+)", line):
            return m.group(1)
    raise AssertionError("no metrics line")


def scrape(proc: ServeProcess) -> str:
    with urllib.request.urlopen(metrics_url(proc), timeout=10) as reply:
        return reply.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_tokens_and_latencies(served: ServeProcess) -> None:
    with Client(served.target) as c:
        before = scrape(served)
        for _ in range(3):
            c.generation.Generate(
                generation_pb2.GenerateRequest(
                    model="tiny-llama", prompt="hello", stopping=common_pb2.StoppingParams(max_new_tokens=5)
                )
            )
        list(
            c.generation.GenerateStream(
                generation_pb2.GenerateRequest(
                    model="tiny-gpt2", prompt="hi", stopping=common_pb2.StoppingParams(max_new_tokens=4)
                )
            )
        )
        try:
            c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="nope"))
        except Exception:
            pass
        after = scrape(served)
    delta = lambda name, **kw: sample(after, name, **kw) - sample(before, name, **kw)  # noqa: E731
    assert delta("tokenwire_requests_total", rpc="Generate", model="tiny-llama", code="OK") == 3
    assert delta("tokenwire_requests_total", rpc="GenerateStream", model="tiny-gpt2", code="OK") == 1
    assert delta("tokenwire_requests_total", rpc="GetModelInfo", model="nope", code="NOT_FOUND") == 1
    assert delta("tokenwire_generated_tokens_total", model="tiny-llama") == 15
    assert delta("tokenwire_time_to_first_token_seconds_count", model="tiny-llama") == 3
    assert delta("tokenwire_inter_token_latency_seconds_count", model="tiny-llama") == 12
    assert delta("tokenwire_finish_reasons_total", model="tiny-llama", reason="length") == 3
    assert delta("tokenwire_queue_seconds_count", model="tiny-gpt2") == 1
    assert delta("tokenwire_batch_rows_count", model="tiny-llama") > 0
    # one after another: 3 prefills, 4 decode forwards each, a core call after every forward
    assert delta("tokenwire_step_seconds_count", model="tiny-llama", phase="prefill") == 3
    assert delta("tokenwire_step_seconds_count", model="tiny-llama", phase="forward") == 12
    assert delta("tokenwire_step_seconds_count", model="tiny-llama", phase="select") == 15
    assert delta("tokenwire_step_seconds_sum", model="tiny-llama", phase="forward") > 0
    assert sample(after, "tokenwire_active_requests", model="tiny-llama") == 0
    # the KV pool: its capacity is what GetModelInfo reports; nothing is held once all is done
    with Client(served.target) as c:
        info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-llama"))
    assert (
        sample(after, "tokenwire_kv_cache_tokens", model="tiny-llama", state="capacity")
        == info.kv_cache_capacity_tokens
        > 0
    )
    assert sample(after, "tokenwire_kv_cache_tokens", model="tiny-llama", state="used") == 0
    assert "tokenwire_request_duration_seconds_bucket" in after


def test_timing_trailers_and_request_id(served: ServeProcess) -> None:
    with Client(served.target) as c:
        _, call = c.generation.Generate.with_call(
            generation_pb2.GenerateRequest(
                model="tiny-llama", prompt="hello", stopping=common_pb2.StoppingParams(max_new_tokens=6)
            ),
            metadata=(("x-request-id", "trace-77"),),
        )
        trailers = dict(call.trailing_metadata())
        assert trailers["x-request-id"] == "trace-77"
        assert trailers["generated-tokens"] == "6" and int(trailers["prompt-tokens"]) > 0
        assert 0 <= float(trailers["queue-ms"]) <= float(trailers["ttft-ms"]) <= float(trailers["total-ms"])
        stream = c.generation.GenerateStream(
            generation_pb2.GenerateRequest(
                model="tiny-gpt2", prompt="hi", stopping=common_pb2.StoppingParams(max_new_tokens=3)
            )
        )
        list(stream)
        assert dict(stream.trailing_metadata())["generated-tokens"] == "3"


def test_logs_are_json_lines_with_a_request_id_field(served: ServeProcess) -> None:
    """--log-format json: every line the server logs is one JSON object; records logged outside
    a call carry request_id "-" (inside a call, the interceptor's scope sets it)."""
    records = [json.loads(line) for line in served.output if line.startswith("{")]
    assert records, served.output[:5]
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    assert any("ready" in r["message"] and r["request_id"] == "-" for r in records)
