"""Fixtures for the Generate tests: reference transformers models beside the served ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


class Reference:
    """transformers' own generate() on a demo model, float32 CPU: the ground truth."""

    def __init__(self, path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], **kwargs: Any) -> Any:
        input_ids = torch.tensor([prompt_ids])
        return self.model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=self.tokenizer.pad_token_id, **kwargs
        )

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        out = self.generate(prompt_ids, max_new_tokens=max_new_tokens, do_sample=False)
        return _until_eos(out[0, len(prompt_ids) :].tolist(), self.model.generation_config.eos_token_id)


def _until_eos(tokens: list[int], eos: Any) -> list[int]:
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    return tokens


@pytest.fixture(scope="session")
def references(demo_models_dir: Path) -> dict[str, Reference]:
    return {name: Reference(demo_models_dir / name) for name in ("tiny-llama", "tiny-gpt2")}
