"""Helpers of the Multimodal tests: transformers references beside the served demo models, and
images made on the spot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPModel, LlavaForConditionalGeneration

from tokenwire.v1 import common_pb2, multimodal_pb2


def noise_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A random RGB image (width, height): different seeds steer tiny-llava differently."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **save: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def pb_image(image: Image.Image, fmt: str = "PNG", mime: str | None = None) -> common_pb2.Image:
    default_mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(fmt, "")
    return common_pb2.Image(data=encode(image, fmt), mime_type=default_mime if mime is None else mime)


def user(*parts: str | Image.Image, role: str = "user") -> multimodal_pb2.ChatMessage:
    """A chat message from text and PIL image parts, in order (images sent as PNG)."""
    return multimodal_pb2.ChatMessage(
        role=role,
        parts=[
            multimodal_pb2.ContentPart(text=p) if isinstance(p, str) else multimodal_pb2.ContentPart(image=pb_image(p))
            for p in parts
        ],
    )


class LlavaReference:
    """transformers' own processor + generate() on tiny-llava, float32 CPU: the ground truth."""

    def __init__(self, path: Path) -> None:
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])

    def inputs(self, messages: list[tuple[str, list[str | Image.Image]]]) -> Any:
        conversation = [
            {
                "role": role,
                "content": [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in parts],
            }
            for role, parts in messages
        ]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        images = [p for _, parts in messages for p in parts if not isinstance(p, str)]
        return self.processor(images=images or None, text=text, return_tensors="pt")

    @torch.inference_mode()
    def generate(self, messages: list[tuple[str, list[str | Image.Image]]], **kwargs: Any) -> Any:
        inputs = self.inputs(messages)
        out = self.model.generate(**inputs, pad_token_id=self.processor.tokenizer.pad_token_id, **kwargs)
        return out, inputs["input_ids"].shape[1]

    def greedy(
        self, messages: list[tuple[str, list[str | Image.Image]]], max_new_tokens: int, **kwargs: Any
    ) -> list[int]:
        out, prompt_len = self.generate(messages, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
        tokens = out[0, prompt_len:].tolist()
        for i, t in enumerate(tokens):
            if t in self.eos:
                return tokens[: i + 1]
        return tokens


class ClipReference:
    def __init__(self, path: Path) -> None:
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = CLIPModel.from_pretrained(path, dtype=torch.float32).eval()

    @torch.inference_mode()
    def classify(self, image: Image.Image, texts: list[str]) -> list[float]:
        """Softmax over texts of CLIPModel's logits_per_image, as the model card computes it."""
        inputs = self.processor(text=texts, images=image, return_tensors="pt", padding=True)
        return self.model(**inputs).logits_per_image.softmax(dim=1)[0].tolist()

    @torch.inference_mode()
    def text_features(self, texts: list[str], **tokenizer: Any) -> torch.Tensor:
        inputs = self.processor.tokenizer(texts, padding=True, return_tensors="pt", **tokenizer)
        out = self.model.get_text_features(**inputs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.inference_mode()
    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        inputs = self.processor(images=images, return_tensors="pt")
        out = self.model.get_image_features(**inputs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output
