"""BatchKV: rows of different lengths share one left-padded cache; `padded` tells the runner
whether it must pass an attention mask, and dropping the mask where nothing is padded changes
no logit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tokenwire.engine.runner import CausalLMRunner


@pytest.fixture(scope="module")
def runner(demo_models_dir: Path) -> CausalLMRunner:
    model = AutoModelForCausalLM.from_pretrained(demo_models_dir / "tiny-llama", dtype=torch.float32).eval()
    return CausalLMRunner(model, pad_token_id=0)


def test_padding_flag_follows_merge_and_gather(runner: CausalLMRunner) -> None:
    _, long = runner.prefill([[5, 6, 7, 8, 9]])
    _, short = runner.prefill([[10, 11]])
    assert not long.padded and not short.padded
    long.merge(short)
    assert long.padded and long.mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    long.gather(torch.tensor([1]))  # only the short row is left: its padding is trimmed
    assert not long.padded and long.mask.tolist() == [[1, 1]]


def test_no_mask_gives_the_same_logits(runner: CausalLMRunner) -> None:
    prompt = [5, 6, 7, 8, 9, 10]
    _, kv = runner.prefill([prompt])
    _, masked = runner.prefill([prompt])  # its own cache: decode appends to it
    assert not kv.padded
    masked.padded = True  # force the all-ones mask through
    for token in (12, 40, 7):
        unmasked_logits = runner.decode(kv, torch.tensor([token])).clone()
        masked_logits = runner.decode(masked, torch.tensor([token])).clone()
        torch.testing.assert_close(unmasked_logits, masked_logits)
    assert kv.mask.shape == masked.mask.shape == (1, len(prompt) + 3)


def test_mixed_lengths_match_each_row_alone(runner: CausalLMRunner) -> None:
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    alone = []
    for p in prompts:
        _, kv = runner.prefill([p])
        alone.append(runner.decode(kv, torch.tensor([12])).clone())
    _, batch = runner.prefill([prompts[0]])
    _, other = runner.prefill([prompts[1]])
    batch.merge(other)
    together = runner.decode(batch, torch.tensor([12, 12]))
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=1e-4)
