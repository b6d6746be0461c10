#!/usr/bin/env python3
"""What a long prompt does to streams already decoding: chunked vs whole-prompt prefill.

One `tokenwire serve` process serves generate_load.py's mid-size random Llama twice: as
"chunked" (prefill_chunk_tokens = --chunk) and as "whole" (prefill_chunk_tokens = 0). For each,
--streams GenerateStream clients decode --new-tokens tokens from short prompts; once all of them
are streaming, one request with a --long-tokens prompt arrives. The running streams' inter-token
gaps (client side) are recorded from that moment until the long request's first token. Prints one
JSON object:
  {"chunked": {"max_gap_ms", "p99_gap_ms", "p50_gap_ms", "long_ttft_ms", "gaps"},
   "whole": {...}, "max_gap_ratio": whole max_gap ÷ chunked max_gap}
A ratio well above 1 means a long prompt no longer freezes the other streams; long_ttft_ms shows
what chunking costs the long request itself.

    .venv/bin/python bench/prefill_interference.py --json          # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_load import build_model, percentiles  # noqa: E402
from gpu_check import Server  # noqa: E402


def write_config(model_dir: Path, chunk: int) -> Path:
    config = Path(tempfile.mkdtemp()) / "interference.toml"
    entries = [("chunked", chunk), ("whole", 0)]
    config.write_text(
        "".join(
            f'[[models]]\nname = "{name}"\npath = "{model_dir}"\ndevice_map = "cpu"\n'
            f"max_batch_size = 16\nmax_input_tokens = 3584\nmax_new_tokens = 512\n"
            f"prefill_chunk_tokens = {size}\n\n"
            for name, size in entries
        )
    )
    return config


def run(target: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    from tokenwire.client import Client
    from tokenwire.v1 import common_pb2, generation_pb2

    started = threading.Barrier(args.streams + 1)
    window: dict[str, float] = {}
    arrivals: list[list[float]] = [[] for _ in range(args.streams)]

    def stream(i: int) -> None:
        request = generation_pb2.GenerateRequest(
            model=model,
            input_ids=[5 + (i * 13 + k) % 300 for k in range(8)],
            stopping=common_pb2.StoppingParams(max_new_tokens=args.new_tokens, ignore_eos=True),
        )
        first = True
        for message in client.generation.GenerateStream(request, timeout=600):
            if message.token_ids:
                arrivals[i].append(time.perf_counter())
                if first:
                    first = False
                    started.wait()

    with Client(target) as client:
        client.generation.Generate(
            generation_pb2.GenerateRequest(  # warm-up
                model=model, input_ids=[5, 6, 7], stopping=common_pb2.StoppingParams(max_new_tokens=4)
            )
        )
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(args.streams)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.2)  # let them settle into steady decoding
        long = generation_pb2.GenerateRequest(
            model=model,
            input_ids=[5 + (k * 7) % 300 for k in range(args.long_tokens)],
            stopping=common_pb2.StoppingParams(max_new_tokens=1, ignore_eos=True),
        )
        window["start"] = time.perf_counter()
        for message in client.generation.GenerateStream(long, timeout=600):
            if message.token_ids:
                window["end"] = time.perf_counter()
                break
        for t in threads:
            t.join()
    gaps = [
        (b - a) * 1000
        for times in arrivals
        for a, b in zip(times, times[1:], strict=False)
        if b >= window["start"] and a <= window["end"]
    ]
    return {
        "max_gap_ms": round(max(gaps), 1),
        "p99_gap_ms": percentiles(gaps)["p99"],
        "p50_gap_ms": percentiles(gaps)["p50"],
        "long_ttft_ms": round((window["end"] - window["start"]) * 1000, 1),
        "gaps": len(gaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=300)
    parser.add_argument("--long-tokens", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--cache", default=os.environ.get("TOKENWIRE_BENCH_CACHE", "build/bench-models"))
    args = parser.parse_args()
    model_dir = build_model(Path(args.cache).resolve(), "mid")
    server = Server(write_config(model_dir, args.chunk))
    target = f"127.0.0.1:{server.port}"
    try:
        from tokenwire.client import Client

        with Client(target) as client:
            while not client.is_serving():
                time.sleep(0.1)
        result: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "streams": args.streams,
            "long_tokens": args.long_tokens,
            "chunk": args.chunk,
        }
        for model in ("chunked", "whole"):
            result[model] = run(target, model, args)
    finally:
        server.stop()
    result["max_gap_ratio"] = round(result["whole"]["max_gap_ms"] / result["chunked"]["max_gap_ms"], 2)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
