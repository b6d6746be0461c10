"""Generate engine under load vs transformers' generate() one prompt after another.

A mid-size random Llama (hidden 512, 8 layers, vocab 32000) is served by a real
`tokenwire serve` subprocess; N concurrent GenerateStream clients (mixed greedy / sampled)
each generate T tokens (EOS ignored, so every request produces exactly T). The baseline is
transformers' `generate()` on the same prompts in this process, one after another, with the
same token counts. Then the same for beam search (4 beams), and two more cases:

- churn: 32 requests arriving one every 0.15 s (request i starts i × 0.15 s after the first),
  each asking for its own number of new tokens in [16, 256] (random.Random(0)), EOS ignored,
  half greedy and half sampled as above, so requests join and leave the running batch at
  different steps. Baseline: `generate()` on the same prompts and token counts, one after another.
  Tokenwire's wall time runs from the first request's start to the last one's finish, so it
  includes the arrival spread (4.65 s at the defaults): tokenwire cannot finish before the last
  request arrives, which caps its tokens/s, while the baseline has no arrivals to wait for.
- static: the same N prompts, all greedy, T tokens each; the baseline is ONE left-padded batch
  through `generate()` (attention mask passed, min_new_tokens = max_new_tokens = T), the
  strongest simple baseline, against tokenwire serving the N greedy requests concurrently.

Prints one JSON object:
  {"machine", "model", "requests", "new_tokens",
   "tokenwire": {"tokens_per_s", "wall_s", "ttft_ms": {p50,p90,p99}, "itl_ms": {...}},
   "transformers": {"tokens_per_s", "wall_s"}, "ratio",
   "beam": {"tokenwire_tokens_per_s", "transformers_tokens_per_s"}, "beam_ratio",
   "churn": {"requests", "arrival_interval_s", "new_tokens_range", "tokens",
             "tokenwire_tokens_per_s", "transformers_tokens_per_s", "tokenwire_wall_s",
             "transformers_wall_s", "ttft_ms": {p50,p90,p99}}, "churn_ratio",
   "static": {"requests", "new_tokens", "tokenwire_tokens_per_s", "transformers_tokens_per_s",
              "tokenwire_wall_s", "transformers_wall_s", "ttft_ms": {...}}, "static_ratio"}
`ratio` = tokenwire tokens/s ÷ transformers tokens/s (target ≥ 3); tokens/s counts generated
tokens of all requests over the wall time of the whole run (beam: tokens of the returned
best sequence). `beam_ratio`, `churn_ratio` and `static_ratio` are the same quotient for their
case; `static_ratio` is against batched generate(), not one prompt after another, so it is
the one that says what the engine adds over plain batching (expect it far below `ratio`).
churn's ttft_ms is measured from each request's own arrival. `churn`/`static` (and their
ratios) are absent with --skip-churn / --skip-static. Both sides run on this machine, in the
same invocation.

    .venv/bin/python bench/generate_load.py --json            # 16 × 128, ~3-8 min on 2 cores
    .venv/bin/python bench/generate_load.py --json --quick    # 8 × 32; churn 8 requests × 16-48
    .venv/bin/python bench/generate_load.py --json --device cuda --size 1b   # on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import torch

from gpu_check import Server  # the script's folder is on sys.path
from tokenwire.v1 import common_pb2, generation_pb2, generation_pb2_grpc

SIZES = {
    # name: (hidden, layers, heads, kv_heads, intermediate, vocab)
    "mid": (512, 8, 8, 4, 1376, 32000),
    "1b": (2048, 16, 32, 8, 8192, 128256),
}
PROMPTS = [
    "The history of the city begins",
    "In a quiet village by the sea",
    "Write a short note about",
    "Explain how a compiler works",
    "Once upon a time there was",
    "The results of the experiment show",
    "Dear colleagues, I am writing",
    "A recipe for a simple bread",
    "The weather forecast for tomorrow",
    "Chapter one: the arrival",
    "Key points of the meeting were",
    "The best way to learn a language",
    "Our quarterly report indicates",
    "Instructions for assembling the",
    "The old lighthouse keeper said",
    "Summary of the discussion about",
]


def build_model(root: Path, size: str, device: str = "cpu") -> Path:
    """A random Llama of the given shape with the demo tokenizer padded to its vocabulary."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tokenwire.models.demo import build_demo_model

    target = root / f"bench-llama-{size}"
    if (target / "model.safetensors").exists() or (target / "model.safetensors.index.json").exists():
        return target
    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    demo = build_demo_model("tiny-llama", root / "demo")
    tok = AutoTokenizer.from_pretrained(demo)
    # Pad the tokenizer so every id the model can emit is a real token (as with real models).
    tok.add_tokens([f"<extra_{i}>" for i in range(vocab - len(tok))])
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.device(device):  # random init of 1B weights is seconds on a GPU, a minute on a CPU
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16 if size == "1b" else torch.float32)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return target


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.5), 3), "p90": round(pick(0.9), 3), "p99": round(pick(0.99), 3)}


# --- transformers baseline ----------------------------------------------------------------


def baseline(
    model_dir: Path, prompts: list[str], new_tokens: int | list[int], device: str, beams: int, batched: bool = False
) -> dict[str, float]:
    """generate() on each prompt in turn (new_tokens: one count for all, or one per prompt), or,
    with batched=True, on all prompts as one left-padded greedy batch of new_tokens each."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only: the new tokens must follow every prompt directly
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    counts = new_tokens if isinstance(new_tokens, list) else [new_tokens] * len(prompts)
    generated = 0

    def one(i: int, texts: str | list[str], count: int) -> int:
        ids = tok(texts, return_tensors="pt", padding=batched).to(device)  # with its attention_mask
        kwargs: dict[str, Any] = dict(max_new_tokens=count, min_new_tokens=count, pad_token_id=tok.pad_token_id)
        if beams > 1:
            kwargs.update(num_beams=beams, do_sample=False, early_stopping=False)
        elif i % 2 and not batched:
            kwargs.update(do_sample=True, temperature=0.8, top_k=50, top_p=0.9)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = model.generate(**ids, **kwargs)  # noqa: F821 (deleted after the runs, to free its memory)
        return int((out.shape[1] - ids["input_ids"].shape[1]) * out.shape[0])

    one(0, prompts if batched else prompts[0], counts[0])  # warm-up (the first generate() in a process is slow)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    if batched:
        generated = one(0, prompts, counts[0])
    else:
        for i, prompt in enumerate(prompts):
            generated += one(i, prompt, counts[i])
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # leave the GPU to the server that comes next
    return {"tokens_per_s": round(generated / wall, 2), "wall_s": round(wall, 3), "tokens": generated}


# --- tokenwire under load ----------------------------------------------------------------


def write_config(model_dir: Path, device: str, max_batch: int, new_tokens: int) -> Path:
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    device_line = 'device_map = "cuda:0"\n' if device == "cuda" else 'device_map = "cpu"\n'
    config.write_text(
        f'[[models]]\nname = "bench"\npath = "{model_dir}"\n{device_line}'
        f"max_batch_size = {max_batch}\nmax_new_tokens = {max(new_tokens, 16)}\n"
    )
    return config


async def wait_ready(target: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(1200):
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server never became healthy")


def make_request(
    i: int, prompt: str, new_tokens: int, beams: int, greedy: bool = False
) -> generation_pb2.GenerateRequest:
    stopping = common_pb2.StoppingParams(max_new_tokens=new_tokens, ignore_eos=True)
    if beams > 1:
        return generation_pb2.GenerateRequest(
            model="bench",
            prompt=prompt,
            stopping=stopping,
            method=common_pb2.DECODING_METHOD_BEAM_SEARCH,
            beam=common_pb2.BeamParams(num_beams=beams),
        )
    if i % 2 and not greedy:
        return generation_pb2.GenerateRequest(
            model="bench",
            prompt=prompt,
            stopping=stopping,
            method=common_pb2.DECODING_METHOD_SAMPLE,
            sampling=common_pb2.SamplingParams(temperature=0.8, top_k=50, top_p=0.9, seed=i),
        )
    return generation_pb2.GenerateRequest(
        model="bench", prompt=prompt, stopping=stopping, method=common_pb2.DECODING_METHOD_GREEDY
    )


async def load(
    target: str,
    prompts: list[str],
    new_tokens: int | list[int],
    beams: int,
    arrivals: list[float] | None = None,
    greedy: bool = False,
) -> dict[str, Any]:
    """All prompts at once, or request i `arrivals[i]` seconds after the first; the wall time runs
    from the first request's start to the last one's finish, TTFT from each request's own start."""
    counts = new_tokens if isinstance(new_tokens, list) else [new_tokens] * len(prompts)
    ttft: list[float] = []
    itl: list[float] = []
    tokens = 0

    async def one(stub: Any, i: int, prompt: str, delay: float = 0.0) -> None:
        nonlocal tokens
        if delay:
            await asyncio.sleep(delay)
        start = time.perf_counter()
        last = None
        async for message in stub.GenerateStream(make_request(i, prompt, counts[i], beams, greedy)):
            if message.index == 0 and message.token_ids:
                now = time.perf_counter()
                if last is None:
                    ttft.append((now - start) * 1000)
                else:
                    itl.append((now - last) * 1000 / len(message.token_ids))
                last = now
                tokens += len(message.token_ids)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        await one(stub, 0, prompts[0])  # warm-up
        tokens, ttft[:], itl[:] = 0, [], []
        start = time.perf_counter()
        delays = arrivals or [0.0] * len(prompts)
        await asyncio.gather(*(one(stub, i, p, delays[i]) for i, p in enumerate(prompts)))
        wall = time.perf_counter() - start
    return {
        "tokens_per_s": round(tokens / wall, 2),
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "ttft_ms": percentiles(ttft),
        "itl_ms": percentiles(itl),
    }


def compared(tw: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """One case's two sides, as its JSON object lists them."""
    return {
        "tokenwire_tokens_per_s": tw["tokens_per_s"],
        "transformers_tokens_per_s": base["tokens_per_s"],
        "tokenwire_wall_s": tw["wall_s"],
        "transformers_wall_s": base["wall_s"],
    }


def ratio(tw: dict[str, Any], base: dict[str, Any]) -> float:
    return round(tw["tokens_per_s"] / base["tokens_per_s"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="8 requests × 32 tokens; churn 8 × 16-48")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--churn-requests", type=int, default=32)
    parser.add_argument("--churn-interval", type=float, default=0.15, help="seconds between churn arrivals")
    parser.add_argument("--skip-churn", action="store_true", help="leave out the churn case")
    parser.add_argument("--skip-static", action="store_true", help="leave out the static (batched generate()) case")
    parser.add_argument("--size", choices=sorted(SIZES), default="mid")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cache", default=os.environ.get("TOKENWIRE_BENCH_CACHE", "build/bench-models"))
    args = parser.parse_args()
    churn_range = (16, 256)
    if args.quick:
        args.requests, args.new_tokens = 8, 32
        args.churn_requests, churn_range = 8, (16, 48)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    churn_prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.churn_requests)]
    rng = random.Random(0)  # the same token counts on every run
    churn_tokens = [rng.randint(*churn_range) for _ in churn_prompts]
    churn_arrivals = [i * args.churn_interval for i in range(args.churn_requests)]
    from tokenwire.models.cuda_attention import configure_cuda_attention

    # The server switches cuDNN attention off on CUDA; the baseline runs the same kernels, so the
    # ratio measures the engine (TOKENWIRE_CUDNN_SDPA=1 keeps PyTorch's choice on both sides).
    configure_cuda_attention()
    model_dir = build_model(Path(args.cache).resolve(), args.size, args.device)

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""),
        "model": dict(
            zip(("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab"), SIZES[args.size], strict=True)
        ),
        "requests": args.requests,
        "new_tokens": args.new_tokens,
    }
    result["transformers"] = baseline(model_dir, prompts, args.new_tokens, args.device, beams=1)
    beam_base = baseline(model_dir, prompts, args.new_tokens, args.device, beams=args.beams)
    if not args.skip_churn:
        churn_base = baseline(model_dir, churn_prompts, churn_tokens, args.device, beams=1)
    if not args.skip_static:
        static_base = baseline(model_dir, prompts, args.new_tokens, args.device, beams=1, batched=True)
    max_batch = max(64, args.requests * args.beams, 0 if args.skip_churn else args.churn_requests)
    max_new = max(args.new_tokens, 0 if args.skip_churn else max(churn_tokens))
    server = Server(write_config(model_dir, args.device, max_batch, max_new))
    target = f"127.0.0.1:{server.port}"
    try:
        asyncio.run(wait_ready(target))
        result["tokenwire"] = asyncio.run(load(target, prompts, args.new_tokens, beams=1))
        beam_tw = asyncio.run(load(target, prompts, args.new_tokens, beams=args.beams))
        if not args.skip_churn:
            churn_tw = asyncio.run(load(target, churn_prompts, churn_tokens, beams=1, arrivals=churn_arrivals))
        if not args.skip_static:
            static_tw = asyncio.run(load(target, prompts, args.new_tokens, beams=1, greedy=True))
    finally:
        server.stop()
    result["ratio"] = ratio(result["tokenwire"], result["transformers"])
    result["beam"] = {"num_beams": args.beams, **compared(beam_tw, beam_base)}
    result["beam_ratio"] = ratio(beam_tw, beam_base)
    if not args.skip_churn:
        result["churn"] = {
            "requests": args.churn_requests,
            "arrival_interval_s": args.churn_interval,
            "new_tokens_range": list(churn_range),
            "tokens": churn_tw["tokens"],
            **compared(churn_tw, churn_base),
            "ttft_ms": churn_tw["ttft_ms"],
        }
        result["churn_ratio"] = ratio(churn_tw, churn_base)
    if not args.skip_static:
        result["static"] = {
            "requests": args.requests,
            "new_tokens": args.new_tokens,
            **compared(static_tw, static_base),
            "ttft_ms": static_tw["ttft_ms"],
        }
        result["static_ratio"] = ratio(static_tw, static_base)
    result["cudnn_sdpa"] = bool(torch.backends.cuda.cudnn_sdp_enabled()) if args.device == "cuda" else None
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
