"""Per-step cost of the decoding core against transformers and torch, on random logits.

    python bench/sampling.py            # a table
    python bench/sampling.py --json     # one JSON object (the shape docs/benchmarks.md records)
    python bench/sampling.py --quick    # V=128256, B in {1, 8} only: under a minute

Chain in every column: repetition penalty 1.1 (over a 128-token prompt) → temperature 0.8 →
top-k 50 → top-p 0.9 → sample. The core and (by default) torch run on one thread; medians of
>= 50 runs.
Beam: one step of num_beams=4 search for B requests ([B × 4, V] logits): transformers' ops
(log_softmax, + running scores, top-2k over beams × vocab, top-k of the unfinished) vs
BeamStepper.step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from transformers.generation import logits_process as lp

from tokenwire.decoding import BatchSampler, BeamParams, BeamSearch, BeamStepper, SamplingParams

PROMPT = 128
REP, TEMP, TOP_K, TOP_P = 1.1, 0.8, 50, 0.9
NUM_BEAMS = 4


def median_us(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def hf_chain(ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    procs = lp.LogitsProcessorList(
        [
            lp.RepetitionPenaltyLogitsProcessor(REP),
            lp.TemperatureLogitsWarper(TEMP),
            lp.TopKLogitsWarper(TOP_K),
            lp.TopPLogitsWarper(TOP_P),
        ]
    )
    return torch.multinomial(torch.softmax(procs(ids, x), -1), 1)


def torch_topk_first(ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    seen = torch.gather(x, 1, ids)
    x = x.scatter(1, ids, torch.where(seen < 0, seen * REP, seen / REP))
    vals, idx = torch.topk(x, TOP_K)  # sorted, descending
    probs = torch.softmax(vals / TEMP, -1)
    before = probs.cumsum(-1) - probs
    probs = probs.masked_fill(before >= TOP_P, 0.0)
    return idx.gather(1, torch.multinomial(probs, 1))


def sampling_case(B: int, V: int, runs: int) -> dict[str, float | int]:
    g = torch.Generator().manual_seed(B * V)
    x = torch.randn(B, V, generator=g) * 3
    ids = torch.randint(0, V, (B, PROMPT), generator=g)
    s = BatchSampler(V, num_threads=1)
    params = SamplingParams(repetition_penalty=REP, temperature=TEMP, top_k=TOP_K, top_p=TOP_P, seed=0)
    for b in range(B):
        s.add(b, params, ids[b].tolist())
    xn = x.numpy()
    slow_runs = max(50, runs // 4)
    return {
        "B": B,
        "V": V,
        "hf_chain_us": round(median_us(lambda: hf_chain(ids, x), slow_runs), 1),
        "torch_topk_first_us": round(median_us(lambda: torch_topk_first(ids, x), runs), 1),
        "core_us": round(median_us(lambda: s.step(x, advance=False), runs), 1),
        "argmax_floor_us": round(median_us(lambda: xn.argmax(axis=1), runs), 1),
    }


def hf_beam_step(x: torch.Tensor, scores: torch.Tensor, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    logp = torch.log_softmax(x, -1).view(B, NUM_BEAMS, -1) + scores[:, :, None]
    logp = logp.view(B, -1)
    top, idx = torch.topk(logp, 2 * NUM_BEAMS)
    beam, token = idx // x.shape[-1], idx % x.shape[-1]
    hits = (token == 2).float() * -1e9  # an EOS id, as transformers masks ended candidates
    keep = torch.topk(top + hits, NUM_BEAMS)[1]
    return beam.gather(1, keep), token.gather(1, keep)


def beam_case(B: int, V: int, runs: int) -> dict[str, float | int]:
    g = torch.Generator().manual_seed(B + V)
    x = torch.randn(B * NUM_BEAMS, V, generator=g) * 3
    scores = torch.randn(B, NUM_BEAMS, generator=g)
    searches = [
        BeamSearch(BeamParams(num_beams=NUM_BEAMS, max_new_tokens=1 << 30, eos_token_ids=[2]), [1, 2, 3], V)
        for _ in range(B)
    ]
    stepper = BeamStepper(num_threads=1)
    stepper.step(searches, x[::NUM_BEAMS])  # first step: one row per request
    return {
        "B": B,
        "V": V,
        "num_beams": NUM_BEAMS,
        "hf_us": round(median_us(lambda: hf_beam_step(x, scores, B), runs), 1),
        "core_us": round(median_us(lambda: stepper.step(searches, x), runs), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="V=128256, B in {1, 8}: under a minute")
    ap.add_argument("--runs", type=int, default=200, help="runs per measurement (>= 50)")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for the baselines (default 1, like the core: on a shared "
        "2-core machine a 2-thread torch op waits on its slower thread and its timings scatter)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    runs = max(50, args.runs if not args.quick else 50)
    vocabs = [128256] if args.quick else [32000, 128256, 151936]
    batches = [1, 8] if args.quick else [1, 8, 32]
    beam_batches = [1, 2] if args.quick else [1, 2, 8]
    result = {
        "cases": [sampling_case(B, V, runs) for V in vocabs for B in batches],
        "beam": [beam_case(B, V, runs) for V in vocabs for B in beam_batches],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'B':>3} {'V':>7} {'hf_chain':>10} {'topk_first':>10} {'core':>8} {'argmax':>8}  (µs)")
    for c in result["cases"]:
        print(
            f"{c['B']:>3} {c['V']:>7} {c['hf_chain_us']:>10} {c['torch_topk_first_us']:>10} {c['core_us']:>8} "
            f"{c['argmax_floor_us']:>8}"
        )
    print(f"\n{'B':>3} {'V':>7} {'beams':>5} {'hf':>10} {'core':>8}  (µs)")
    for c in result["beam"]:
        print(f"{c['B']:>3} {c['V']:>7} {c['num_beams']:>5} {c['hf_us']:>10} {c['core_us']:>8}")


if __name__ == "__main__":
    main()
