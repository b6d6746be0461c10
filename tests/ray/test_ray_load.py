"""Load through Serve's gRPC proxy: ghz runs with zero errors, both replicas of a model serve
calls (the `ray-replica` trailer names the one that ran each call), and a replica killed mid-load
fails only the calls in flight on it, with UNAVAILABLE, while Serve starts a new one.

Runs before test_ray_serve.py (file order), whose last test stops the deployment.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ray_cluster import RayDeployment
from tokenwire.client import Client
from tokenwire.ray.wire import REPLICA_KEY
from tokenwire.v1 import generation_pb2, understanding_pb2

ROOT = Path(__file__).resolve().parents[2]
GHZ = ROOT / "build/tools/bin/ghz"
CALL_TIMEOUT_S = 60  # generous: a call that hangs fails with DEADLINE_EXCEEDED, never the suite
STREAM = generation_pb2.GenerateRequest(
    model="tiny-llama", prompt="Once upon a time", stopping={"max_new_tokens": 24, "ignore_eos": True}
)


def _ghz(target: str, config: str, total: int, concurrency: int, model: str, tmp_path: Path) -> dict[str, object]:
    """One run of bench/ghz/`config`.json through the proxy (descriptors by reflection)."""
    if not GHZ.is_file():
        pytest.fail(
            f"{GHZ} is missing: `make ghz-smoke` (the Makefile's ghz target, GHZ_STAMP) installs it", pytrace=False
        )
    spec = json.loads((ROOT / "bench/ghz" / f"{config}.json").read_text())
    spec["data"]["model"] = model  # this registry has one model per task
    spec.update(total=total, concurrency=concurrency)
    path = tmp_path / f"{config}.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [str(GHZ), "--config", str(path), "-O", "json", target], capture_output=True, text=True, timeout=300
    )
    try:
        report: dict[str, object] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ghz exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return report


@pytest.mark.parametrize(
    ("config", "model", "total"),
    [("understanding-fill-mask", "tiny-bert", 400), ("generation-generate-stream", "tiny-llama", 64)],
)
def test_ghz_through_the_proxy_has_no_errors(
    ray_app: RayDeployment, tmp_path: Path, config: str, model: str, total: int
) -> None:
    report = _ghz(ray_app.target, config, total, 8, model, tmp_path)
    assert report["count"] == total, report
    assert report["statusCodeDistribution"] == {"OK": total}, report["statusCodeDistribution"]
    assert not report.get("errorDistribution"), report["errorDistribution"]


def _replicas_seen(call: Callable[[int], str], calls: int = 32, rounds: int = 10) -> set[str]:
    """The replicas named by the trailers of concurrent calls, until two show up."""
    seen: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(rounds):
            seen.update(pool.map(call, range(calls)))
            if len(seen) >= 2:
                break
    return seen


def test_both_replicas_serve_under_load(ray_client: Client) -> None:
    def fill_mask(i: int) -> str:
        request = understanding_pb2.FillMaskRequest(model="tiny-bert", text=f"The [MASK] sat down ({i}).")
        _, call = ray_client.understanding.FillMask.with_call(request, timeout=CALL_TIMEOUT_S)
        return str(dict(call.trailing_metadata())[REPLICA_KEY])

    def stream(i: int) -> str:
        call = ray_client.generation.GenerateStream(STREAM, timeout=CALL_TIMEOUT_S)
        assert sum(len(m.token_ids) for m in call) == 24
        return str(dict(call.trailing_metadata())[REPLICA_KEY])

    bert = _replicas_seen(fill_mask)
    assert len(bert) == 2 and all("#model-tiny-bert#" in name for name in bert), bert
    llama = _replicas_seen(stream, calls=16)
    assert len(llama) == 2 and all("#model-tiny-llama#" in name for name in llama), llama


@dataclass
class Outcome:
    started: float
    code: grpc.StatusCode
    replica: str = ""
    details: str = ""


def _running(deployment: str) -> int:
    from ray import serve

    states = serve.status().applications["tokenwire"].deployments[deployment].replica_states
    return int(states.get("RUNNING", 0))


def _dead(actor: object) -> float:
    """When `actor` (just killed) is seen dead: ray.kill only asks for it, so calls still reach
    it for a moment afterwards, and fail as in flight on it."""
    import ray
    from ray.exceptions import RayActorError

    for _ in range(600):
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=10)  # type: ignore[attr-defined]
        except RayActorError:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError("the killed replica is still alive")


def test_killing_a_replica_mid_load_fails_only_its_calls(ray_client: Client) -> None:
    import ray

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            started = time.monotonic()
            call = ray_client.generation.GenerateStream(STREAM, timeout=CALL_TIMEOUT_S)
            try:
                tokens = sum(len(m.token_ids) for m in call)
                assert tokens == 24
                outcome = Outcome(started, grpc.StatusCode.OK, dict(call.trailing_metadata())[REPLICA_KEY])
            except grpc.RpcError as err:
                outcome = Outcome(started, err.code(), details=err.details() or "")
            with lock:
                outcomes.append(outcome)

    def replicas_so_far() -> set[str]:
        with lock:
            return {o.replica for o in outcomes if o.replica}

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 120
        while len(replicas_so_far()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = replicas_so_far()
        assert len(before) == 2, before
        victim = sorted(before)[0]
        actor = ray.get_actor(victim, namespace="serve")
        ray.kill(actor)
        dead_at = _dead(actor)
        # Load goes on until Serve has started a new replica and it has served calls.
        while time.monotonic() < deadline and not (_running("model-tiny-llama") == 2 and replicas_so_far() - before):
            time.sleep(0.2)
    finally:
        stop.set()
        for w in workers:
            w.join(CALL_TIMEOUT_S + 10)
    assert not any(w.is_alive() for w in workers), "a call hung"
    failed = [o for o in outcomes if o.code != grpc.StatusCode.OK]
    assert all(o.code == grpc.StatusCode.UNAVAILABLE for o in failed), [(o.code, o.details) for o in failed]
    late = [(o.started - dead_at, o.details) for o in failed if o.started >= dead_at]
    assert not late, f"calls that started once the replica was dead failed: {late}"
    assert len(failed) <= len(workers)
    assert victim not in {o.replica for o in outcomes if o.started > dead_at}
    assert replicas_so_far() - before, "no new replica served calls"
    assert _running("model-tiny-llama") == 2
