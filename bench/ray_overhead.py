"""Overhead of the Ray Serve hop: tokens/s of the same streaming load on the plain server and
through `tokenwire ray serve` (one replica, a local cluster it owns), same machine, same run.

    .venv/bin/python bench/ray_overhead.py --streams 16 --seconds 20 --max-new-tokens 64

Prints both rates and their ratio (Ray / plain).
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tokenwire.client import Client
from tokenwire.models.demo import build_demo_models
from tokenwire.v1 import generation_pb2

REGISTRY = '[[models]]\nname = "tiny-llama"\npath = "{path}"\nray_replicas = 1\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], timeout: float = 300) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{args} exited early")
        if m := re.search(r"serving on [\d.]+:(\d+)", line):
            threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
            return proc, int(m.group(1))
    raise TimeoutError(f"{args} did not start")


def load(target: str, streams: int, seconds: float, max_new_tokens: int) -> float:
    """Generated tokens per second of `streams` concurrent greedy GenerateStream loops."""
    request = generation_pb2.GenerateRequest(
        model="tiny-llama", prompt="Once upon a time", stopping={"max_new_tokens": max_new_tokens, "ignore_eos": True}
    )
    counts = [0] * streams
    with Client(target) as client:
        while not client.is_serving("tokenwire.v1.Generation"):
            time.sleep(0.2)
        list(client.generation.GenerateStream(request))  # warm-up
        end = time.monotonic() + seconds

        def worker(i: int) -> None:
            while time.monotonic() < end:
                counts[i] += sum(len(m.token_ids) for m in client.generation.GenerateStream(request))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
        start_t = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - start_t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    tokenwire = str(Path(sys.executable).with_name("tokenwire"))
    with tempfile.TemporaryDirectory() as tmp:
        path = build_demo_models(Path(tmp), ["tiny-llama"])["tiny-llama"]
        registry = Path(tmp) / "registry.toml"
        registry.write_text(REGISTRY.format(path=path))
        rates = {}
        for mode, cmd in {
            "plain": [tokenwire, "serve", "--config", str(registry), "--port", "0"],
            "ray": [tokenwire, "ray", "serve", "--config", str(registry), "--port", str(free_port()),
                    "--http-port", str(free_port())],
        }.items():  # fmt: skip
            proc, port = start(cmd)
            try:
                rates[mode] = load(f"127.0.0.1:{port}", args.streams, args.seconds, args.max_new_tokens)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
            print(f"{mode:6s} {rates[mode]:9.1f} tokens/s", flush=True)
    print(f"ratio ray/plain: {rates['ray'] / rates['plain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
