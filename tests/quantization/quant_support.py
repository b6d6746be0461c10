"""Helpers of the quantization tests (a uniquely named module: pytest puts every test directory
on sys.path, so a generic name could clash with another directory's helper).

`outputs`: what is compared between a quantized demo model and the same model unquantized, one
function per model kind, each returning named float tensors from one fixed input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from tokenwire.models.loader import LoadedModel

SCHEMES = ("nf4", "fp4", "int8")
TEXT = "the quick brown fox jumps over the lazy dog and runs"


def quantized_name(model: str, scheme: str) -> str:
    return f"{model}-{scheme}"


def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))


def _causal(m: LoadedModel) -> dict[str, torch.Tensor]:
    ids = m.tokenizer(TEXT, return_tensors="pt")
    return {"logits": m.first_module()(**ids).logits}


def _bert(m: LoadedModel) -> dict[str, torch.Tensor]:
    enc = m.tokenizer("the cat sat on the [MASK] .", "it was a sunny day", return_tensors="pt")
    out = m.first_module()(**enc)
    return {"mlm_logits": out.prediction_logits, "nsp_logits": out.seq_relationship_logits}


def _bert_qa(m: LoadedModel) -> dict[str, torch.Tensor]:
    enc = m.tokenizer("where is the cat ?", "the cat sat on the mat in the house", return_tensors="pt")
    out = m.first_module()(**enc)
    return {"start_logits": out.start_logits, "end_logits": out.end_logits}


def _clip(m: LoadedModel) -> dict[str, torch.Tensor]:
    assert m.processor is not None
    enc = m.processor(text=["a photo of a cat", "a photo of a dog"], images=image(), return_tensors="pt", padding=True)
    out = m.first_module()(**enc)
    return {"logits_per_image": out.logits_per_image, "text_embeds": out.text_embeds, "image_embeds": out.image_embeds}


def _llava(m: LoadedModel) -> dict[str, torch.Tensor]:
    assert m.processor is not None
    prompt = m.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this"}]}],
        add_generation_prompt=True,
    )
    enc = m.processor(text=prompt, images=image(), return_tensors="pt")
    return {"logits": m.first_module()(**enc).logits}


OUTPUTS: dict[str, Callable[[LoadedModel], dict[str, torch.Tensor]]] = {
    "tiny-llama": _causal,
    "tiny-gpt2": _causal,
    "tiny-bert": _bert,
    "tiny-bert-qa": _bert_qa,
    "tiny-clip": _clip,
    "tiny-llava": _llava,
}


@torch.inference_mode()
def outputs(name: str, model: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in OUTPUTS[name](model).items()}


def relative_error(quantized: torch.Tensor, reference: torch.Tensor) -> float:
    """‖q − r‖₂ / ‖r‖₂ over the whole tensor: scale-free, so one tolerance fits every head."""
    return float((quantized - reference).norm() / reference.norm().clamp_min(1e-12))
