#!/usr/bin/env python3
"""Where a decode step's time goes: the model alone vs the model served by `tokenwire serve`.

Builds gpu_check's random Llama (1B shape on a GPU, a toy with --tiny on the CPU) and measures
  model_step_ms       one decode forward of the bare model, batch 1 (a hand loop with a cache)
  generate_step_ms    transformers' generate(), batch 1 and batch `--streams`
  server_step_ms      one GenerateStream through `tokenwire serve`, and `--streams` at once
  decode_path, attention_backend, kv_cache_capacity_tokens, cuda_graphs   the server's engine
                      (GetModelInfo); `--no-graphs` serves with cuda_graphs = false
then, where py-spy is on the PATH, samples the server during both runs and prints the frames
that take the most time per thread (`--profile-out` keeps the raw stacks). The gap between
model_step_ms and server_step_ms is the server's own overhead per step; server_*_phase_ms is
the server's own split of it (tokenwire_step_seconds: forward pass vs decoding core and emit).

    python3 bench/step_profile.py --tiny                      # CPU, seconds
    python3 bench/step_profile.py --out $OUT/step_profile.json  # on a GPU

Like the server, it switches cuDNN attention off first (models/cuda_attention.py), so both sides
run the same kernels; TOKENWIRE_CUDNN_SDPA=1 keeps PyTorch's choice for both. On a GPU it also
times the bare model and generate() with cuDNN attention allowed (`with_cudnn_sdpa`): the A/B
that says whether switching it off pays.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import Server, build_model, prompt_ids, read_metrics, wait_ready, write_registry  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_step_ms(model: Any, device: str, prompt: list[int], steps: int) -> float:
    from transformers import DynamicCache

    ids = torch.tensor([prompt], device=device)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
        sync()
    return (time.perf_counter() - t0) * 1000 / steps


def generate_step_ms(model: Any, device: str, batch: int, prompt_len: int, steps: int, vocab: int) -> float:
    ids = torch.tensor([prompt_ids(prompt_len, vocab, 300 + i) for i in range(batch)], device=device)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)
        sync()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=steps, min_new_tokens=steps, **kwargs)
        sync()
    return (time.perf_counter() - t0) * 1000 / steps


def busiest() -> list[str]:
    """The processes using CPU right now (another process hogging cores shows here)."""
    try:
        text = subprocess.run(
            ["ps", "-eo", "pid,pcpu,nlwp,rss,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line[:160] for line in text.splitlines()[:6]]


def step_phases(url: str) -> dict[str, tuple[float, int]]:
    """tokenwire_step_seconds of model "bench" from the server's /metrics: phase → (sum s, count)."""
    text = read_metrics(url)
    phases: dict[str, list[float]] = {}
    for m in re.finditer(r'^tokenwire_step_seconds_(sum|count)\{model="bench",phase="(\w+)"\} (\S+)$', text, re.M):
        phases.setdefault(m.group(2), [0.0, 0.0])[m.group(1) == "count"] = float(m.group(3))
    return {phase: (v[0], int(v[1])) for phase, v in phases.items()}


def phase_means(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Mean milliseconds per call of each phase between two scrapes."""
    means = {}
    for phase, (total, count) in after.items():
        total0, count0 = before.get(phase, (0.0, 0))
        if count > count0:
            means[phase] = round((total - total0) * 1000 / (count - count0), 3)
    return means


def summarize(raw: Path, top: int) -> dict[str, Any]:
    """py-spy raw output (one 'thread;frame;...;frame count' line per stack) → per thread, the
    samples and the inclusive share of the heaviest frames."""
    per_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        totals[thread] += int(count)
        for frame in set(frames):
            per_thread[thread][frame] += int(count)
        leaves[thread][frames[-1] if frames else "?"] += int(count)
    return {
        thread: {
            "samples": totals[thread],
            "self": [(f, round(c / totals[thread], 3)) for f, c in leaves[thread].most_common(12)],
            "inclusive": [
                (f, round(c / totals[thread], 3))
                for f, c in per_thread[thread].most_common(top)
                if not f.startswith(("Thread.", "<module>", "main ", "run ("))
            ],
        }
        for thread in sorted(totals, key=totals.__getitem__, reverse=True)[:6]
    }


def served(registry: Path, args: argparse.Namespace, vocab: int, out: dict[str, Any]) -> None:
    from tokenwire.client import Client
    from tokenwire.v1 import common_pb2, generation_pb2

    spy = shutil.which("py-spy")
    server = Server(registry, metrics=True)
    try:
        with Client(f"127.0.0.1:{server.port}") as client:
            wait_ready(client, 300)

            def stream(seed: int, n: int) -> int:
                request = generation_pb2.GenerateRequest(
                    model="bench",
                    input_ids=prompt_ids(args.prompt_tokens, vocab, seed),
                    stopping=common_pb2.StoppingParams(max_new_tokens=n, ignore_eos=True),
                )
                return sum(len(m.token_ids) for m in client.generation.GenerateStream(request, timeout=300))

            stream(0, 4)
            from tokenwire.v1 import models_pb2

            info = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="bench"))
            out["decode_path"] = info.decode_path  # the engine path these figures are of
            out["decode_path_reason"] = info.decode_path_reason
            out["attention_backend"] = info.attention_backend
            out["kv_cache_capacity_tokens"] = info.kv_cache_capacity_tokens
            out["cuda_graphs"] = {
                "enabled": info.cuda_graphs.enabled,
                "batch_sizes": list(info.cuda_graphs.batch_sizes),
            }
            for label, streams in (("batch1", 1), (f"streams{args.streams}", args.streams)):
                raw = Path(args.raw_dir) / f"pyspy_{label}.txt"
                recorder = None
                if spy:
                    recorder = subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--pid",
                            str(server.proc.pid),
                            "--rate",
                            "250",
                            "--format",
                            "raw",
                            "--threads",
                            "--idle",
                            "--nonblocking",
                            "--output",
                            str(raw),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    time.sleep(1.0)
                phases_before = step_phases(server.metrics_url)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(streams) as pool:
                    tokens = sum(pool.map(lambda s: stream(10 + s, args.steps), range(streams)))
                wall = time.perf_counter() - t0
                out[f"busiest_processes_{label}"] = busiest()
                out[f"server_{label}_step_ms"] = round(wall * 1000 / args.steps, 2)
                out[f"server_{label}_tokens"] = tokens
                if server.metrics_url:  # the server's own view: mean ms per forward / core call
                    out[f"server_{label}_phase_ms"] = phase_means(phases_before, step_phases(server.metrics_url))
                if args.out:
                    args.out.write_text(json.dumps(out, indent=1) + "\n")
                if recorder:
                    recorder.send_signal(2)  # SIGINT: py-spy writes what it has
                    _, err = recorder.communicate(timeout=60)
                    if raw.exists():
                        out[f"profile_{label}"] = summarize(raw, args.top)
                    else:
                        out[f"profile_{label}"] = {"error": err[-500:]}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="decode steps per measurement (default 96; tiny 64)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--no-graphs", action="store_true", help="serve with cuda_graphs = false (the eager A/B)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--raw-dir", default=None, help="folder for the raw py-spy stacks (default: a temp dir)")
    args = parser.parse_args()
    args.steps = args.steps or (64 if args.tiny else 96)
    args.raw_dir = args.raw_dir or tempfile.mkdtemp(prefix="step-profile-")
    Path(args.raw_dir).mkdir(parents=True, exist_ok=True)
    from tokenwire.models.cuda_attention import configure_cuda_attention

    configure_cuda_attention()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    workdir = Path(tempfile.mkdtemp(prefix="step-profile-model-"))
    meta = build_model(workdir / "model", args.tiny)
    vocab = meta["tokenizer_vocab"]
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "steps": args.steps,
        "prompt_tokens": args.prompt_tokens,
    }

    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=dtype, device_map=device).eval()
    prompt = prompt_ids(args.prompt_tokens, vocab, 1)
    model_step_ms(model, device, prompt, 8)
    out["model_step_ms"] = round(model_step_ms(model, device, prompt, args.steps), 2)
    out["generate_batch1_step_ms"] = round(generate_step_ms(model, device, 1, args.prompt_tokens, args.steps, vocab), 2)
    out[f"generate_batch{args.streams}_step_ms"] = round(
        generate_step_ms(model, device, args.streams, args.prompt_tokens, args.steps, vocab), 2
    )
    if device == "cuda":  # the same with PyTorch's own kernel choice (cuDNN attention allowed): the A/B
        torch.backends.cuda.enable_cudnn_sdp(True)
        with_cudnn = {
            "model_step_ms": round(model_step_ms(model, device, prompt, args.steps), 2),
            "generate_batch1_step_ms": round(
                generate_step_ms(model, device, 1, args.prompt_tokens, args.steps, vocab), 2
            ),
            f"generate_batch{args.streams}_step_ms": round(
                generate_step_ms(model, device, args.streams, args.prompt_tokens, args.steps, vocab), 2
            ),
        }
        out["with_cudnn_sdpa"] = with_cudnn
        configure_cuda_attention()
    out["cudnn_sdpa"] = bool(torch.backends.cuda.cudnn_sdp_enabled()) if device == "cuda" else None
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    print(f"[step_profile] {json.dumps(out)}", file=sys.stderr, flush=True)
    if args.out:  # what the bare model measured survives a run cut short
        args.out.write_text(json.dumps(out, indent=1) + "\n")

    entry = {
        "dtype": "auto" if args.tiny else "bfloat16",
        "max_batch_size": args.streams,
        "max_input_tokens": args.prompt_tokens,
        "max_new_tokens": args.steps,
        "cuda_graphs": not args.no_graphs,
    }
    registry = write_registry(workdir / "bench.toml", workdir / "model", entry)
    served(registry, args, vocab, out)
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
