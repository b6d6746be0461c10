"""Soak: mixed traffic on every RPC against a real `tokenwire serve --demo`, for a set duration.

32 concurrent workers (default) loop over a weighted mix of every RPC — unary and streamed
generation (greedy, sampled, beam), the Models RPCs, the Understanding and Multimodal RPCs — and
cancel 10% of the streams mid-way. Afterwards it reads the server's own metrics.

Prints one JSON object:
  {"duration_s", "concurrency", "calls": {rpc: {code: n}}, "unexpected_errors",
   "rss_mb": {"start", "end", "growth_pct"}, "active_after", "waiting_after", "cancelled_streams"}
Pass criteria (exit status 1 otherwise): unexpected_errors == 0 (anything but OK, CANCELLED
for the streams it cancelled itself),
RSS growth < 10% (measured after a warm-up period), active_after == 0.

    .venv/bin/python bench/soak.py --json --duration 600     # the 10-minute run in docs/benchmarks.md
    .venv/bin/python bench/soak.py --json --duration 30      # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from PIL import Image

from tokenwire.v1 import (
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    multimodal_pb2,
    multimodal_pb2_grpc,
    understanding_pb2,
    understanding_pb2_grpc,
)

PROMPTS = [
    "Once upon a time",
    "The weather today",
    "naïve café 東京",
    "List three colors:",
    "def main():",
    "In 1854 the city",
    "Dear diary,",
    "The answer is",
]


def png(seed: int) -> common_pb2.Image:
    img = Image.new("RGB", (40, 32), ((seed * 37) % 256, (seed * 91) % 256, 120))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return common_pb2.Image(data=out.getvalue(), mime_type="image/png")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


class Soak:
    def __init__(self, channel: grpc.aio.Channel, seed: int) -> None:
        self.gen = generation_pb2_grpc.GenerationStub(channel)
        self.models = models_pb2_grpc.ModelsStub(channel)
        self.und = understanding_pb2_grpc.UnderstandingStub(channel)
        self.mm = multimodal_pb2_grpc.MultimodalStub(channel)
        self.calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.unexpected: list[str] = []
        self.cancelled = 0
        self.rng = random.Random(seed)

    def generate_request(self) -> generation_pb2.GenerateRequest:
        r = self.rng
        kind = r.choice(["greedy", "sample", "sample", "beam"])
        request = generation_pb2.GenerateRequest(
            model=r.choice(["tiny-llama", "tiny-gpt2"]),
            prompt=r.choice(PROMPTS),
            stopping=common_pb2.StoppingParams(max_new_tokens=r.randint(4, 48), stop=r.choice([[], ["the"]])),
        )
        if kind == "sample":
            request.method = common_pb2.DECODING_METHOD_SAMPLE
            request.sampling.CopyFrom(common_pb2.SamplingParams(temperature=0.9, top_p=0.9, seed=r.randint(0, 99)))
            request.num_return_sequences = r.choice([1, 1, 2])
        elif kind == "beam":
            request.method = common_pb2.DECODING_METHOD_BEAM_SEARCH
            request.beam.CopyFrom(common_pb2.BeamParams(num_beams=r.choice([2, 3])))
            del request.stopping.stop[:]
        return request

    async def one(self) -> None:
        r = self.rng
        choice = r.choices(
            ["stream", "generate", "tokenize", "models", "understanding", "multimodal"], weights=[30, 20, 15, 5, 15, 15]
        )[0]
        if choice == "stream":
            await self.stream()
            return
        calls: dict[str, Any] = {
            "generate": lambda: ("Generate", self.gen.Generate(self.generate_request())),
            "tokenize": lambda: (
                "Tokenize",
                self.models.Tokenize(
                    models_pb2.TokenizeRequest(
                        model=r.choice(["tiny-llama", "tiny-bert", "tiny-clip"]), text=r.choice(PROMPTS)
                    )
                ),
            ),
            "models": lambda: ("ListModels", self.models.ListModels(models_pb2.ListModelsRequest())),
            "understanding": lambda: r.choice(
                [
                    (
                        "FillMask",
                        self.und.FillMask(
                            understanding_pb2.FillMaskRequest(
                                model="tiny-bert", text="The capital of France, [MASK], contains the Eiffel Tower."
                            )
                        ),
                    ),
                    (
                        "NextSentence",
                        self.und.NextSentence(
                            understanding_pb2.NextSentenceRequest(
                                model="tiny-bert", sentence_a="It rained.", sentence_b="The streets were wet."
                            )
                        ),
                    ),
                    (
                        "AnswerQuestion",
                        self.und.AnswerQuestion(
                            understanding_pb2.AnswerQuestionRequest(
                                model="tiny-bert-qa",
                                question="Where is the tower?",
                                context="The tower is in Paris, France.",
                            )
                        ),
                    ),
                ]
            ),
            "multimodal": lambda: r.choice(
                [
                    (
                        "ClassifyImage",
                        self.mm.ClassifyImage(
                            multimodal_pb2.ClassifyImageRequest(
                                model="tiny-clip", image=png(r.randint(0, 9)), labels=["cat", "dog", "car"]
                            )
                        ),
                    ),
                    (
                        "Embed",
                        self.mm.Embed(
                            multimodal_pb2.EmbedRequest(
                                model="tiny-clip", texts=["a cat"], images=[png(r.randint(0, 9))], normalize=True
                            )
                        ),
                    ),
                    (
                        "MultimodalChat",
                        self.mm.MultimodalChat(
                            multimodal_pb2.MultimodalChatRequest(
                                model="tiny-llava",
                                stopping=common_pb2.StoppingParams(max_new_tokens=8),
                                messages=[
                                    multimodal_pb2.ChatMessage(
                                        role="user",
                                        parts=[
                                            multimodal_pb2.ContentPart(image=png(1)),
                                            multimodal_pb2.ContentPart(text="What is this?"),
                                        ],
                                    )
                                ],
                            )
                        ),
                    ),
                ]
            ),
        }
        name, call = calls[choice]()
        try:
            await call
            self.calls[name]["OK"] += 1
        except grpc.aio.AioRpcError as err:
            self.record_error(name, err.code())

    def record_error(self, name: str, code: grpc.StatusCode, cancelled_by_us: bool = False) -> None:
        self.calls[name][code.name] += 1
        if cancelled_by_us and code == grpc.StatusCode.CANCELLED:
            return
        self.unexpected.append(f"{name}: {code.name}")

    async def stream(self) -> None:
        call = self.gen.GenerateStream(self.generate_request())
        cancel_after = self.rng.randint(1, 4) if self.rng.random() < 0.1 else None
        seen = 0
        try:
            async for _ in call:
                seen += 1
                if cancel_after is not None and seen >= cancel_after:
                    call.cancel()
                    self.cancelled += 1
                    self.calls["GenerateStream"]["CANCELLED"] += 1
                    return
            self.calls["GenerateStream"]["OK"] += 1
        except asyncio.CancelledError:
            self.calls["GenerateStream"]["CANCELLED"] += 1
        except grpc.aio.AioRpcError as err:
            self.record_error("GenerateStream", err.code(), cancelled_by_us=cancel_after is not None)


async def run(target: str, duration: float, concurrency: int, seed: int) -> Soak:
    async with grpc.aio.insecure_channel(target) as channel:
        soak = Soak(channel, seed)
        stop_at = time.monotonic() + duration

        async def worker() -> None:
            while time.monotonic() < stop_at:
                await soak.one()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the RSS baseline (default 10%%)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else max(5.0, args.duration * 0.1)

    demo_dir = tempfile.mkdtemp(prefix="tokenwire-soak-")
    exe = str(Path(sys.executable).with_name("tokenwire"))
    proc = subprocess.Popen(
        [exe, "--log-level", "ERROR", "serve", "--demo", "--demo-dir", demo_dir, "--port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    target = metrics = ""
    for line in proc.stdout:
        if m := re.search(r"metrics on (http://\S+)", line):
            metrics = m.group(1)
        if m := re.search(r"serving on [\d.]+:(\d+)", line):
            target = f"127.0.0.1:{m.group(1)}"
            break
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(target) as ch:
            for _ in range(600):
                try:
                    if health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == 1:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        asyncio.run(run(target, warmup, args.concurrency, args.seed + 1))  # warm-up traffic
        rss_start = rss_mb(proc.pid)
        soak = asyncio.run(run(target, args.duration, args.concurrency, args.seed))
        time.sleep(1.0)  # let cancelled rows leave at the next step boundary
        rss_end = rss_mb(proc.pid)
        active = scrape(metrics, "tokenwire_active_requests")
        waiting = scrape(metrics, "tokenwire_waiting_requests")
    finally:
        proc.terminate()
        exit_code = proc.wait(60)
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else 0.0
    result = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "calls": {k: dict(v) for k, v in sorted(soak.calls.items())},
        "total_calls": sum(sum(v.values()) for v in soak.calls.values()),
        "cancelled_streams": soak.cancelled,
        "unexpected_errors": len(soak.unexpected),
        "unexpected_sample": soak.unexpected[:10],
        "rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1), "growth_pct": round(growth, 2)},
        "active_after": active,
        "waiting_after": waiting,
        "server_exit_code": exit_code,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    ok = not soak.unexpected and growth < 10 and active == 0 and exit_code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
