"""Helpers of tests/ray: the registry, Ray's processes on this machine, the deployment handle."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import ServeProcess

try:
    import ray
except ImportError:  # pragma: no cover - conftest fails the session with a clear message
    ray = None
# Small on purpose (2 cores here): 2 models × 2 replicas × 0.25 CPU + the ingress's 0.1 do not
# fit the head's one CPU, so replicas land on the worker node too.
REGISTRY = """\
[server]
grace_period_s = 2

[[models]]
name = "tiny-llama"
path = "{llama}"
max_batch_size = 8
ray_replicas = 2
ray_num_cpus = 0.25

[[models]]
name = "tiny-bert"
path = "{bert}"
max_batch_size = 8
ray_replicas = 2
ray_num_cpus = 0.25
"""

RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "log_monitor.py", "dashboard/agent.py")


def ray_processes() -> set[int]:
    """PIDs of Ray's own processes on this machine."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in cmdline for marker in RAY_PROCESS_MARKERS):
            pids.add(int(entry.name))
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayDeployment:
    cluster: Any
    process: ServeProcess
    port: int
    preexisting: set[int]
    stopped: bool = False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int | None:
        """SIGTERM the CLI (drain, undeploy), then stop the cluster; its exit status."""
        if self.stopped:
            return None
        self.stopped = True
        try:
            status: int | None = self.process.terminate(timeout=90)
        finally:
            self.process.kill()
            ray.shutdown()
            self.cluster.shutdown()
        return status


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    """The Ray processes (not in `pids`) still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    left = ray_processes() - pids
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = {p for p in ray_processes() - pids if os.path.exists(f"/proc/{p}")}
    return left
