"""SIGTERM: health NOT_SERVING, new calls UNAVAILABLE, in-flight streams finish, exit 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from harness import ServeProcess, wait_serving
from tokenwire.client import Client
from tokenwire.v1 import common_pb2, generation_pb2, models_pb2

pytestmark = pytest.mark.e2e


def test_graceful_drain(demo_models_dir: Path) -> None:
    proc = ServeProcess("--demo", "--demo-dir", str(demo_models_dir), "--grace-period", "120").start()
    try:
        with Client(proc.target) as c:
            wait_serving(c, "")
            stream = c.generation.GenerateStream(
                generation_pb2.GenerateRequest(
                    model="tiny-llama",
                    prompt="a long story",
                    method=common_pb2.DECODING_METHOD_SAMPLE,
                    num_return_sequences=16,
                    stopping=common_pb2.StoppingParams(max_new_tokens=1500, ignore_eos=True),
                )
            )
            first = next(stream)
            assert first.token_ids
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(grpc.RpcError) as err:
                c.models.ListModels(models_pb2.ListModelsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            rest = list(stream)  # the in-flight stream runs to its end
            finals = [m for m in rest if m.finish_reason]
            assert len(finals) == 16
            assert all(m.finish_reason == common_pb2.FINISH_REASON_LENGTH for m in finals)
            assert rest[-1].usage.completion_tokens == 16 * 1500
        assert proc.proc.wait(150) == 0
    finally:
        proc.kill()


def test_health_turns_not_serving_first(demo_models_dir: Path) -> None:
    proc = ServeProcess("--demo", "--demo-dir", str(demo_models_dir), "--grace-period", "5").start()
    try:
        with Client(proc.target) as c:
            wait_serving(c, "")
            statuses: list[int] = []
            watch = c.health.Watch(health_pb2.HealthCheckRequest(service="tokenwire.v1.Generation"))

            def read() -> None:
                try:
                    for reply in watch:
                        statuses.append(reply.status)
                except grpc.RpcError:
                    pass

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.3)
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            reader.join(20)
            assert statuses[:2] == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
        assert proc.proc.wait(30) == 0
    finally:
        proc.kill()
