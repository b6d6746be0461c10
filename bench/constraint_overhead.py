#!/usr/bin/env python3
"""What a structured-output constraint costs per decode step, at a 128k vocabulary.

Builds a CPU demo-size Llama (hidden 64, 2 layers) with a 128,256-token vocabulary and a
synthetic byte-level tokenizer of that size, serves it with `tokenwire serve`, and measures, in
one run on one machine:

  step_ms_plain[b]        ms per generated token, `b` concurrent greedy streams, no constraint
  step_ms_constrained[b]  the same streams under a JSON-Schema constraint (an array of at least 64
                          integers, so every stream runs to max_new_tokens like the plain ones)
  overhead[b]             step_ms_constrained / step_ms_plain - 1 (the issue's bar: <= 0.10)
  bitmask_fill_us         xgrammar filling one row's token bitmask for that schema, µs per token
                          (a matcher walked through allowed tokens, outside the server)

for b in 1 and 16. Plain and constrained runs alternate (A/B/A/B…) and each figure is the
median, so drift on a noisy machine hits both sides alike.

    .venv/bin/python bench/constraint_overhead.py [--tokens 64] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import Server, wait_ready, write_registry  # noqa: E402

VOCAB = 128_256
# At least 64 integers: longer than any run here, so constrained streams run to max_new_tokens
# like the plain ones (a batch that thins out early would make the comparison unfair).
SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 64}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable symbol table (byte-level BPE vocabularies are spelled in it)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def synthetic_tokenizer(size: int) -> Any:
    """A byte-level BPE tokenizer with `size` entries, shaped like a real 128k vocabulary: the
    256 byte symbols, every 2-symbol piece over letters, digits, space and JSON punctuation,
    the numbers 0-999 (Llama 3 splits digits in runs of up to three), and the rest letter-only
    words of 3-7 letters with and without a leading space. (A vocabulary made mostly of
    digit/punctuation pieces would make every JSON state ambiguous for most tokens, which no
    real tokenizer does.)"""
    import itertools
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbol = _bytes_to_unicode()
    spell = lambda text: "".join(byte_symbol[b] for b in text.encode())  # noqa: E731
    vocab: dict[str, int] = {"</s>": 0, "<s>": 1}
    for symbol in byte_symbol.values():
        vocab.setdefault(symbol, len(vocab))
    printable = 'abcdefghijklmnopqrstuvwxyz0123456789 ,:{}[]"-.ABCDEFGHIJ'
    for a, b in itertools.product(printable, repeat=2):
        vocab.setdefault(spell(a + b), len(vocab))
    for n in range(1000):
        vocab.setdefault(spell(str(n)), len(vocab))
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(vocab) < size:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 7)))
        vocab.setdefault(spell(rng.choice(("", " ")) + word), len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", bos_token="<s>")


def build(path: Path) -> Any:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = synthetic_tokenizer(VOCAB)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=0,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=0, pad_token_id=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok


def run(client: Any, streams: int, tokens: int, constrained: bool) -> float:
    """ms per generated token over `streams` concurrent greedy requests."""
    from tokenwire.v1 import common_pb2, generation_pb2

    def one(i: int) -> int:
        request = generation_pb2.GenerateRequest(
            model="bench",
            input_ids=[1, 5 + i, 9, 20],
            stopping=common_pb2.StoppingParams(
                max_new_tokens=tokens, min_new_tokens=0 if constrained else tokens, ignore_eos=not constrained
            ),
        )
        if constrained:
            request.constraint.json_schema = json.dumps(SCHEMA)
        reply = client.generation.Generate(request, timeout=600)
        return int(reply.usage.completion_tokens)

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        generated = sum(pool.map(one, range(streams)))
    return (time.perf_counter() - started) * 1000 / max(1, generated) * streams


def bitmask_fill_us(tok: Any, steps: int = 300) -> float:
    import numpy as np
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB, stop_token_ids=[0])
    grammar = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA), any_whitespace=False)
    matcher = xgr.GrammarMatcher(grammar)
    mask = np.zeros((1, (VOCAB + 31) // 32), np.int32)
    elapsed = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        matcher.fill_next_token_bitmask(mask, 0)
        elapsed += time.perf_counter() - t0
        allowed = np.flatnonzero(np.unpackbits(mask[0].view(np.uint8), bitorder="little"))
        choice = int(allowed[allowed != 0][len(allowed) // 2 - 1]) if len(allowed) > 1 else int(allowed[0])
        if not matcher.accept_token(choice) or matcher.is_terminated():
            matcher.reset()
    return elapsed / steps * 1e6


def main() -> None:
    from tokenwire.client import Client

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per batch size")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        tok = build(model_dir)
        registry = write_registry(Path(tmp) / "registry.toml", model_dir, {"max_batch_size": 16})
        server = Server(registry)
        results: dict[str, Any] = {"vocab": VOCAB, "tokens": args.tokens, "schema": SCHEMA}
        try:
            with Client(f"127.0.0.1:{server.port}") as client:
                wait_ready(client, 300)
                for streams in (1, 16):
                    run(client, streams, 8, False)  # warm-up: first compile, allocator, threads
                    run(client, streams, 8, True)
                    plain, constrained = [], []
                    for _ in range(args.rounds):
                        plain.append(run(client, streams, args.tokens, False))
                        constrained.append(run(client, streams, args.tokens, True))
                    p, c = statistics.median(plain), statistics.median(constrained)
                    results[f"step_ms_plain[{streams}]"] = round(p, 3)
                    results[f"step_ms_constrained[{streams}]"] = round(c, 3)
                    results[f"overhead[{streams}]"] = round(c / p - 1, 3)
        finally:
            server.stop()
        results["bitmask_fill_us"] = round(bitmask_fill_us(tok), 1)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
