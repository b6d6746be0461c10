"""Streaming load generator for Generation.GenerateStream: time to first token and inter-token latency.

ghz counts a stream as one call and cannot see its first token; this client times every
message of every stream.

    .venv/bin/python bench/stream_load.py --target 127.0.0.1:50051 --concurrency 8 --duration 30
    .venv/bin/python bench/stream_load.py --target 127.0.0.1:50051 --count 200 --prompts prompts.txt \
        --method sample --temperature 0.8 --top-p 0.95 --max-new-tokens 64

It keeps --concurrency streams open at all times (closed loop), each request taking the next
prompt of the corpus (--prompts FILE: one prompt per line, or JSON lines with a "prompt"
key; default: a built-in corpus), until --count requests were started or --duration seconds
passed (streams still running then finish and count). It prints one JSON object:

  requests_per_s        finished streams (OK or not) per second of the measured window
  tokens_per_s          generated tokens (all OK streams) per second
  ttft_ms               request start → first message carrying a token; p50 / p90 / p99 / mean / max
  itl_ms                inter-token latency: the gap between consecutive token-carrying messages of a
                        stream, split evenly over the tokens of the later message
  e2e_ms                request start → end of stream
  errors                failed streams by status code name (and FINISH_REASON_ERROR endings)
  finish_reasons        how the OK streams ended

--warmup N runs N requests first (not measured). Exit status 1 with --fail-on-error when any
stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tokenwire.v1 import common_pb2, generation_pb2, generation_pb2_grpc

DEFAULT_PROMPTS = [
    "Once upon a time",
    "The weather today is",
    "In a distant galaxy, a small ship",
    "The recipe calls for two cups of",
    "Breaking news: scientists have discovered",
    "def fibonacci(n):",
    "Dear diary, today I",
    "The key to good software is",
    "Ladies and gentlemen, welcome to",
    "The old lighthouse keeper looked out at",
    "To install the package, first run",
    "Chapter one. It was a cold morning when",
]

METHODS = {
    "greedy": common_pb2.DECODING_METHOD_GREEDY,
    "sample": common_pb2.DECODING_METHOD_SAMPLE,
    "beam": common_pb2.DECODING_METHOD_BEAM_SEARCH,
}


@dataclass
class Stats:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)


def load_prompts(path: str | None) -> list[str]:
    if path is None:
        return DEFAULT_PROMPTS
    prompts = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            line = str(json.loads(line)["prompt"])
        prompts.append(line)
    if not prompts:
        raise SystemExit(f"{path}: no prompts")
    return prompts


def build_request(args: argparse.Namespace, prompt: str, number: int) -> generation_pb2.GenerateRequest:
    sampling = common_pb2.SamplingParams()
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty"):
        value = getattr(args, name)
        if value is not None:
            setattr(sampling, name, value)
    if args.seed is not None:
        sampling.seed = args.seed + number  # distinct, reproducible per request
    stopping = common_pb2.StoppingParams(
        max_new_tokens=args.max_new_tokens, ignore_eos=args.ignore_eos, min_new_tokens=args.min_new_tokens
    )
    req = generation_pb2.GenerateRequest(
        model=args.model,
        prompt=prompt,
        method=METHODS[args.method],
        sampling=sampling,
        stopping=stopping,
        num_return_sequences=args.num_return_sequences,
    )
    if args.num_beams is not None:
        req.beam.num_beams = args.num_beams
    return req


async def one_stream(
    stub: generation_pb2_grpc.GenerationStub, req: generation_pb2.GenerateRequest, timeout: float, stats: Stats | None
) -> None:
    start = time.perf_counter()
    first: float | None = None
    last = start
    tokens = 0
    gaps: list[float] = []
    finish: list[str] = []
    prompt_tokens = 0
    try:
        async for msg in stub.GenerateStream(req, timeout=timeout):
            now = time.perf_counter()
            n = len(msg.token_ids)
            if n:
                if first is None:
                    first = now
                else:
                    gaps.extend([(now - last) / n] * n)
                last = now
                tokens += n
            if msg.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
                finish.append(common_pb2.FinishReason.Name(msg.finish_reason).removeprefix("FINISH_REASON_"))
            if msg.HasField("usage"):
                prompt_tokens = msg.usage.prompt_tokens
    except grpc.aio.AioRpcError as err:
        if stats is not None:
            name = err.code().name
            stats.errors[name] += 1
            stats.first_error.setdefault(name, err.details() or "")
        return
    end = time.perf_counter()
    if stats is None:
        return
    if "ERROR" in finish:
        stats.errors["FINISH_REASON_ERROR"] += 1
        return
    stats.finish_reasons.update(finish)
    stats.e2e.append(end - start)
    stats.tokens.append(tokens)
    stats.prompt_tokens += prompt_tokens
    stats.itl.extend(gaps)
    if first is not None:
        stats.ttft.append(first - start)


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float] | None:
    """p50/p90/p99 (linear interpolation between closest ranks), mean and max, in ms."""
    if not values:
        return None
    s = sorted(values)

    def pct(q: float) -> float:
        pos = (len(s) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {
        k: round(v * scale, 3)
        for k, v in {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "mean": sum(s) / len(s), "max": s[-1]}.items()
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prompts = load_prompts(args.prompts)
    options = [("grpc.max_receive_message_length", 64 * 2**20)]
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.connections)]
    stubs = [generation_pb2_grpc.GenerationStub(ch) for ch in channels]
    try:
        for i in range(args.warmup):
            await one_stream(
                stubs[i % len(stubs)], build_request(args, prompts[i % len(prompts)], i), args.timeout, None
            )

        stats = Stats()
        counter = 0
        started = time.perf_counter()
        deadline = started + args.duration if args.duration is not None else math.inf

        async def worker(w: int) -> None:
            nonlocal counter
            while time.perf_counter() < deadline and (args.count is None or counter < args.count):
                number = counter
                counter += 1
                req = build_request(args, prompts[number % len(prompts)], args.warmup + number)
                await one_stream(stubs[w % len(stubs)], req, args.timeout, stats)

        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        for ch in channels:
            await ch.close()

    finished = len(stats.e2e) + sum(stats.errors.values())
    generated = sum(stats.tokens)
    return {
        "target": args.target,
        "model": args.model,
        "concurrency": args.concurrency,
        "prompts": len(prompts),
        "sampling": {
            k: getattr(args, k)
            for k in (
                "method",
                "temperature",
                "top_k",
                "top_p",
                "min_p",
                "typical_p",
                "repetition_penalty",
                "seed",
                "num_beams",
                "max_new_tokens",
                "min_new_tokens",
                "ignore_eos",
                "num_return_sequences",
            )
            if getattr(args, k) is not None
        },
        "duration_s": round(elapsed, 3),
        "requests": {"ok": len(stats.e2e), "failed": sum(stats.errors.values())},
        "requests_per_s": round(finished / elapsed, 3) if elapsed else 0.0,
        "tokens_per_s": round(generated / elapsed, 2) if elapsed else 0.0,
        "generated_tokens": generated,
        "prompt_tokens": stats.prompt_tokens,
        "tokens_per_request": round(generated / len(stats.tokens), 2) if stats.tokens else 0.0,
        "ttft_ms": percentiles(stats.ttft),
        "itl_ms": percentiles(stats.itl),
        "e2e_ms": percentiles(stats.e2e),
        "finish_reasons": dict(stats.finish_reasons),
        "errors": dict(stats.errors),
        "error_examples": stats.first_error,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--target", default="127.0.0.1:50051", help="server HOST:PORT")
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--concurrency", type=int, default=4, help="streams open at once")
    p.add_argument("--connections", type=int, default=1, help="gRPC channels the streams are spread over")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds to start new streams for")
    stop.add_argument("--count", type=int, help="streams to run (default 100 when no --duration)")
    p.add_argument("--warmup", type=int, default=0, help="unmeasured requests first")
    p.add_argument("--prompts", help="prompt corpus: one per line, or JSON lines with 'prompt'")
    p.add_argument("--timeout", type=float, default=120.0, help="deadline of each stream, seconds")
    p.add_argument("--method", choices=sorted(METHODS), default="greedy")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--min-p", type=float)
    p.add_argument("--typical-p", type=float)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--seed", type=int, help="request i gets seed + i (sample only)")
    p.add_argument("--num-beams", type=int)
    p.add_argument("--num-return-sequences", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument(
        "--ignore-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate max-new-tokens every time (comparable runs)",
    )
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 if any stream failed")
    args = p.parse_args(argv)
    if args.duration is None and args.count is None:
        args.count = 100
    if args.concurrency < 1 or args.connections < 1:
        p.error("--concurrency and --connections must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    if args.fail_on_error and result["requests"]["failed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
