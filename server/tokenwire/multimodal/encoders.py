"""Dual (text / image) encoders behind one small interface, for ClassifyImage and Embed.

Two implementations: transformers' CLIP-style models (`CLIPModel`, `SiglipModel`, and the
OpenCLIP checkpoints published in transformers' format, which load as `CLIPModel`), and native
open_clip models (`tokenwire.multimodal.open_clip`, optional). `encoder_for` picks by table.

Threading: `tokenize` and `pixels` run in worker threads of the servicer (per request);
`encode_*` run on the model's batcher thread (one batch at a time per model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import torch
from PIL import Image

from ..errors import FailedPrecondition
from ..models.loader import LoadedModel
from ..tasks import Task

# Text models trained on fixed-length padded input without an attention mask (pooling at the
# last position): their texts are padded to the full context window, as their model cards demand.
_PAD_TO_MAX_LENGTH = frozenset({"siglip"})


class DualEncoder(Protocol):
    max_text_tokens: int
    """Longest text, in tokens (special tokens included)."""
    image_cost: int
    """What one image counts towards the batcher's max_batch_tokens (its patch count)."""

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """(token ids per text, special tokens included; each text's full length in tokens,
        which may exceed max_text_tokens: the caller rejects or truncates those)."""

    def truncate(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, cut to max_text_tokens the model's way."""

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """One RGB image → the model's input tensor [3, H, W] (dtype ready for the model)."""

    def encode_text(self, ids: list[list[int]]) -> torch.Tensor:
        """Texts → projected embeddings [len(ids), dim], float32 on the CPU."""

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] → projected embeddings [n, dim], float32 on the CPU."""

    def logit_scale(self) -> float:
        """The learned temperature, already exponentiated: logits = scale * cosine."""


def _features(out: Any) -> torch.Tensor:
    """get_*_features returns a tensor (transformers 4.x) or an output whose pooler_output is
    the projection (5.x)."""
    features: torch.Tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
    return features


class HFDualEncoder:
    """transformers' CLIPModel-like models: get_text_features / get_image_features."""

    def __init__(self, model: LoadedModel, module: torch.nn.Module) -> None:
        if model.processor is None or getattr(model.processor, "image_processor", None) is None:
            raise FailedPrecondition(f"model {model.spec.name!r} has no image processor")
        self.module: Any = module
        self.tokenizer = model.tokenizer
        # A fast tokenizer's truncation setting is state on the shared Rust object; switching it
        # while another thread encodes fails ("Already borrowed"), so our calls take turns.
        self._tokenizer_lock = threading.Lock()
        self.image_processor = model.processor.image_processor
        self.max_text_tokens = model.max_input_tokens
        self._pad_to_max = getattr(model.config, "model_type", "") in _PAD_TO_MAX_LENGTH
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        parameter = next(module.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        vision = getattr(model.config, "vision_config", None)
        size, patch = getattr(vision, "image_size", 0), getattr(vision, "patch_size", 0)
        self.image_cost = (size // patch) ** 2 + 1 if isinstance(size, int) and isinstance(patch, int) and patch else 1

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        ids = [list(row) for row in encoded]
        return ids, [len(row) for row in ids]

    def truncate(self, texts: list[str]) -> list[list[int]]:
        with self._tokenizer_lock:
            out = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_text_tokens)
        return [list(ids) for ids in out["input_ids"]]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        values: torch.Tensor = self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        return values.to(self.dtype) if self.dtype.is_floating_point else values

    @torch.inference_mode()
    def encode_text(self, ids: list[list[int]]) -> torch.Tensor:
        width = self.max_text_tokens if self._pad_to_max else max(len(t) for t in ids)
        input_ids = torch.full((len(ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, tokens in enumerate(ids):  # right padding, as the tokenizers do
            input_ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[i, : len(tokens)] = 1
        if self._pad_to_max:  # trained on padded text, without a mask (their tokenizers give none)
            out = self.module.get_text_features(input_ids=input_ids.to(self.device))
        else:
            out = self.module.get_text_features(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            )
        return _features(out).float().cpu()

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.module.get_image_features(pixel_values=pixels.to(self.device))).float().cpu()

    def logit_scale(self) -> float:
        return float(self.module.logit_scale.detach().float().exp().item())


def _is_transformers(module: torch.nn.Module) -> bool:
    return hasattr(module, "get_text_features") and hasattr(module, "get_image_features")


def _is_open_clip(module: torch.nn.Module) -> bool:
    return hasattr(module, "encode_text") and hasattr(module, "encode_image")


def _open_clip_encoder(model: LoadedModel, module: torch.nn.Module) -> DualEncoder:
    from .open_clip import OpenClipEncoder

    return OpenClipEncoder(model, module)


# (recognises the module, builds its encoder), first match wins.
_ENCODERS: tuple[
    tuple[Callable[[torch.nn.Module], bool], Callable[[LoadedModel, torch.nn.Module], DualEncoder]], ...
] = (
    (_is_transformers, HFDualEncoder),
    (_is_open_clip, _open_clip_encoder),
)


def encoder_for(model: LoadedModel, task: Task) -> DualEncoder:
    """The encoder serving `task` (CLASSIFY_IMAGE or EMBED) of `model`."""
    module = model.modules[task]
    for recognises, build in _ENCODERS:
        if recognises(module):
            return build(model, module)
    raise FailedPrecondition(
        f"model {model.spec.name!r} ({type(module).__name__}) has no text and "
        "image encoders (get_text_features/get_image_features or encode_text/encode_image)"
    )
