#!/usr/bin/env python3
"""GPU check (issue 5): quantized and device-mapped serving on a lent GPU, in one run.

Builds a random-weight Llama shaped like Llama-3.2-1B (tied embeddings, GQA 32/8), then for each
configuration — bf16, nf4, int8, and bf16 split across GPU and CPU by a device map — starts
`tokenwire serve` on it and measures load time, GPU memory, the plan GetModelInfo reports
(placement, memory and reservation per device), and greedy tokens/s at batch 1 and with 16
concurrent streams; then transformers' generate() on the same checkpoint with the same
quantization and the same device map, at batch 1 and batch 16. Prints one JSON document (and
writes it to --out). docs/gpu.md says how to prepare the GPU machine and read the numbers.

    python3 bench/gpu_check.py --out $OUT/gpu_check.json    # on the GPU: about 5-7 minutes
    python3 bench/gpu_check.py --tiny                       # CPU smoke run: the same code, seconds

--tiny builds a toy model (hidden 64, 2 layers) and runs everything on the CPU (float32 for
"bf16", a CPU + disk split instead of GPU + CPU), so the script is known to work before any GPU
time is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

CONFIGS = ("bf16", "nf4", "int8", "split")
GiB = 2**30


# --- the model --------------------------------------------------------------------------------


def build_model(path: Path, tiny: bool) -> dict[str, Any]:
    """A random Llama checkpoint with the demo tokenizer (its vocabulary may be smaller than the
    model's: the server never samples beyond the tokenizer; generate() does, which costs the
    same)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from tokenwire.models.demo_tokenizers import llama_tokenizer

    tok = llama_tokenizer()
    shape = (
        dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
        )
        if tiny
        else dict(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            max_position_embeddings=131072,
            rope_theta=500000.0,
        )
    )
    config = LlamaConfig(
        **shape,
        tie_word_embeddings=not tiny,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    started = time.perf_counter()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model = model.to(torch.float32 if tiny else torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "parameters": params,
        "tokenizer_vocab": len(tok),
        "build_s": round(time.perf_counter() - started, 2),
        "bos": tok.bos_token_id,
        "pad": tok.pad_token_id,
    }


def registry_entry(config: str, tiny: bool, streams: int, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    """The [[models]] keys of one configuration (besides name and path)."""
    entry: dict[str, Any] = {
        "dtype": "auto" if tiny else "bfloat16",
        "max_batch_size": streams,
        "max_input_tokens": prompt_tokens,
        "max_new_tokens": new_tokens,
    }
    if config in ("nf4", "int8"):
        entry["quantization"] = config
    if config == "split":
        if tiny:  # no GPU: half the layers and the output layer from disk
            entry["device_map"] = {
                "model.embed_tokens": "cpu",
                "model.layers.0": "cpu",
                "model.layers.1": "disk",
                "model.norm": "cpu",
                "lm_head": "disk",
            }
        else:  # ~2 GiB on the GPU (embedding, some layers, the reservation); the rest on the CPU
            entry["device_map"] = "auto"
            entry["max_memory"] = {"0": "2GiB", "cpu": "32GiB"}
    return entry


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_registry(path: Path, model_dir: Path, entry: dict[str, Any]) -> Path:
    lines = ["[[models]]", 'name = "bench"', f"path = {json.dumps(str(model_dir))}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the server -------------------------------------------------------------------------------


class Server:
    """`tokenwire serve --config FILE --port 0` in a subprocess, as a user runs it."""

    def __init__(self, registry: Path, metrics: bool = False) -> None:
        exe = Path(sys.executable).with_name("tokenwire")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tokenwire.cli"]
        self.started = time.perf_counter()
        extra = ["--metrics-port", "0"] if metrics else []
        self.proc = subprocess.Popen(
            [*command, "--log-level", "WARNING", "serve", "--config", str(registry), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.port = 0
        self.metrics_url = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if m := re.search(r"metrics on (http://\S+)", line):
                self.metrics_url = m.group(1)
            if m := re.search(r"serving on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
                break
        if not self.port:
            raise RuntimeError("server exited early:\n" + "".join(self.output))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def wait_ready(client: Any, timeout: float) -> Any:
    from tokenwire.v1 import models_pb2

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        info = client.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="bench"))
        if info.state == models_pb2.MODEL_STATE_READY:
            return info
        if info.state == models_pb2.MODEL_STATE_FAILED:
            raise RuntimeError(f"model failed to load: {info.error}")
        time.sleep(0.1)
    raise TimeoutError("model did not load in time")


def gpu_memory_of(pid: int) -> int | None:
    """Bytes the process holds on the GPU (nvidia-smi), None where it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split(",") for line in out.strip().splitlines() if "," in line]
    mine = [int(used) for p, used in rows if p.strip() == str(pid)]
    if mine:
        return mine[0] * 2**20
    return sum(int(used) for _, used in rows) * 2**20 if len(rows) == 1 else None  # pid namespaces differ


def read_metrics(metrics_url: str) -> str:
    """The server's Prometheus exposition text ("" when it serves no metrics)."""
    import urllib.request

    return urllib.request.urlopen(metrics_url, timeout=10).read().decode() if metrics_url else ""


def peak_allocated(metrics_url: str) -> int | None:
    """tokenwire_gpu_memory_bytes{device="cuda:0",kind="peak_allocated"} from the server's /metrics."""
    m = re.search(
        r'^tokenwire_gpu_memory_bytes\{device="cuda:0",kind="peak_allocated"\} (\S+)$', read_metrics(metrics_url), re.M
    )
    return int(float(m.group(1))) if m else None


def prompt_ids(n: int, vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (n,), generator=g).tolist()


def serve_and_measure(registry: Path, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from tokenwire.client import Client
    from tokenwire.v1 import common_pb2, generation_pb2

    server = Server(registry, metrics=True)
    result: dict[str, Any] = {}
    try:
        with Client(f"127.0.0.1:{server.port}") as client:
            info = wait_ready(client, args.load_timeout)
            result["load_s"] = round(time.perf_counter() - server.started, 2)
            result["model_info"] = {
                "dtype": info.dtype,
                "quantization": info.quantization,
                "placement": info.placement,
                "device_map": dict(info.device_map),
                "memory_per_device": dict(info.memory_per_device),
                "reserved_memory_per_device": dict(info.reserved_memory_per_device),
                "kv_cache_reserved_bytes": info.kv_cache_reserved_bytes,
                "memory_footprint_bytes": info.memory_footprint_bytes,
                "unquantized_modules": list(info.unquantized_modules),
            }

            def generate(seed: int, new_tokens: int) -> tuple[int, float]:
                stop = common_pb2.StoppingParams(max_new_tokens=new_tokens, ignore_eos=True)
                request = generation_pb2.GenerateRequest(
                    model="bench",
                    stopping=stop,
                    input_ids=prompt_ids(args.prompt_tokens, meta["tokenizer_vocab"], seed),
                )
                first: float | None = None
                count = 0
                t0 = time.perf_counter()
                for message in client.generation.GenerateStream(request, timeout=args.request_timeout):
                    if message.token_ids and first is None:
                        first = time.perf_counter() - t0
                    count += len(message.token_ids)
                return count, first or 0.0

            generate(0, 4)  # warm-up: first forward, scheduler thread, allocator
            t0 = time.perf_counter()
            count, ttft = generate(1, args.new_tokens)
            wall = time.perf_counter() - t0
            result["server_batch1"] = {
                "tokens": count,
                "s": round(wall, 3),
                "tok_s": round(count / wall, 1),
                "ttft_s": round(ttft, 3),
            }
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.streams) as pool:
                outs = list(pool.map(lambda s: generate(100 + s, args.new_tokens), range(args.streams)))
            wall = time.perf_counter() - t0
            total = sum(c for c, _ in outs)
            ttfts = sorted(t for _, t in outs)
            result[f"server_streams{args.streams}"] = {
                "tokens": total,
                "s": round(wall, 3),
                "tok_s": round(total / wall, 1),
                "ttft_p50_s": round(ttfts[len(ttfts) // 2], 3),
                "ttft_max_s": round(ttfts[-1], 3),
            }
            result["server_gpu_memory_bytes"] = gpu_memory_of(server.proc.pid) if torch.cuda.is_available() else None
            # torch's own peak in the server: compare with memory_per_device + reserved_memory_per_device
            result["server_peak_allocated_bytes"] = peak_allocated(server.metrics_url)
    finally:
        server.stop()
    if server.proc.returncode not in (0, -15):
        result["server_exit"] = server.proc.returncode
    return result


# --- transformers generate() with the same settings ------------------------------------------


def hf_measure(
    model_dir: Path, entry: dict[str, Any], device_map: dict[str, str], meta: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    import transformers
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    import tokenwire.models.quantization  # noqa: F401  (quiets bitsandbytes' per-forward int8 notice)

    transformers.utils.logging.disable_progress_bar()
    on_gpu = torch.cuda.is_available() and not args.tiny
    dtype = torch.bfloat16 if on_gpu else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    placement = {k: (int(v.split(":")[1]) if v.startswith("cuda:") else v) for k, v in device_map.items()}
    kwargs["device_map"] = placement
    quantization = entry.get("quantization")
    offloaded = on_gpu and any(v in ("cpu", "disk") for v in placement.values())
    if quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=offloaded
        )
    elif quantization in ("nf4", "fp4"):
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_enable_fp32_cpu_offload=offloaded,
        )
    if "disk" in placement.values():
        kwargs["offload_folder"] = tempfile.mkdtemp(prefix="gpu-check-offload-")
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).eval()
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 2)}
    first = next(p for p in model.parameters() if p.device.type != "meta").device

    def run(batch: int, new_tokens: int) -> tuple[int, float]:
        ids = torch.tensor(
            [prompt_ids(args.prompt_tokens, meta["tokenizer_vocab"], 200 + i) for i in range(batch)], device=first
        )
        if on_gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(  # noqa: F821 (deleted after the runs, to free its memory)
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=meta["pad"],
            )
        if on_gpu:
            torch.cuda.synchronize()
        return (gen.shape[1] - ids.shape[1]) * batch, time.perf_counter() - t0

    run(1, 4)  # warm-up
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    for batch, key in ((1, "generate_batch1"), (args.streams, f"generate_batch{args.streams}")):
        tokens, wall = run(batch, args.new_tokens)
        out[key] = {"tokens": tokens, "s": round(wall, 3), "tok_s": round(tokens / wall, 1)}
    if on_gpu:
        out["gpu_memory_allocated_bytes"] = torch.cuda.memory_allocated()
        out["gpu_memory_peak_bytes"] = torch.cuda.max_memory_allocated()
    del model
    if on_gpu:
        torch.cuda.empty_cache()
    return out


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy model on the CPU (smoke run)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (default 128; tiny 16)")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="tokens generated per request (default 128; tiny 8)"
    )
    parser.add_argument(
        "--streams", type=int, default=None, help="concurrent streams / generate() batch (default 16; tiny 4)"
    )
    parser.add_argument("--no-generate", action="store_true", help="skip transformers' generate() baselines")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=480.0,
        help="skip configurations not started by then (default 480: fits a 10-minute device call)",
    )
    parser.add_argument("--load-timeout", type=float, default=300.0)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--workdir", type=Path, help="where the model is built (default: a temp dir)")
    args = parser.parse_args(argv)
    args.prompt_tokens = args.prompt_tokens or (16 if args.tiny else 128)
    args.new_tokens = args.new_tokens or (8 if args.tiny else 128)
    args.streams = args.streams or (4 if args.tiny else 16)
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no GPU visible: run with --tiny for the CPU smoke run")

    from tokenwire.models.cuda_attention import configure_cuda_attention

    # As in the server: cuDNN attention off, so generate() runs the same kernels.
    configure_cuda_attention()
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    model_dir = workdir / "model"
    meta = build_model(model_dir, args.tiny)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.tiny else "cpu",
        "torch": torch.__version__,
        "tiny": args.tiny,
        "model": meta,
        "cudnn_sdpa": bool(torch.backends.cuda.cudnn_sdp_enabled()) if torch.cuda.is_available() else None,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "streams": args.streams,
        "configs": {},
    }
    for version_of in ("transformers", "accelerate", "bitsandbytes"):
        try:
            report[version_of] = __import__(version_of).__version__
        except ImportError:
            report[version_of] = None
    for config in configs:
        if time.perf_counter() - started > args.deadline_s:
            report["configs"][config] = {"skipped": f"deadline {args.deadline_s:.0f}s reached"}
            continue
        entry = registry_entry(config, args.tiny, args.streams, args.prompt_tokens, args.new_tokens)
        registry = write_registry(workdir / f"{config}.toml", model_dir, entry)
        result: dict[str, Any] = {"registry": entry}
        try:
            result.update(serve_and_measure(registry, meta, args))
            if not args.no_generate:
                result["transformers"] = hf_measure(model_dir, entry, result["model_info"]["device_map"], meta, args)
        except Exception as exc:  # one broken configuration must not lose the others' numbers
            result["error"] = f"{type(exc).__name__}: {exc}"
        report["configs"][config] = result
        report["total_s"] = round(time.perf_counter() - started, 1)
        if args.out:  # after each configuration: a run cut short still leaves its numbers
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(
            f"[gpu_check] {config}: {json.dumps({k: v for k, v in result.items() if k != 'model_info'})}",
            file=sys.stderr,
            flush=True,
        )
    report["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if any("error" in r for r in report["configs"].values()) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
