"""ClassifyImage and Embed: request → batch item (validated, tokenized, pixels ready) → one
batched forward per model → per-request result.

A batch of items from concurrent requests runs ONE text forward (every text of every item,
padded together) and one image forward per input shape; each item then finishes its own
result from its slice (softmax over its labels, or its vectors, normalized when asked).
`prepare_*` run in worker threads of the servicer; `run_batch` on the model's batcher thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidArgument
from .encoders import DualEncoder
from .images import ImageLimits, decode_image

DEFAULT_HYPOTHESIS_TEMPLATE = "a photo of a {}"
MAX_LABELS = 1000


@dataclass
class ClipItem:
    """One request's share of a batch."""

    texts: list[list[int]]
    pixels: list[torch.Tensor]
    """One [3, H, W] tensor per image."""
    finish: Callable[[torch.Tensor, torch.Tensor, float], Any]
    """(text embeddings [t, d], image embeddings [i, d], logit scale) → the request's result."""
    image_cost: int = 1

    @property
    def cost(self) -> int:
        return sum(len(t) for t in self.texts) + self.image_cost * len(self.pixels)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    unit: torch.Tensor = x / x.norm(p=2, dim=-1, keepdim=True)
    return unit


def _texts(encoder: DualEncoder, texts: list[str], field: Callable[[int], str], truncate: bool) -> list[list[int]]:
    ids, counts = encoder.tokenize(texts)
    limit = encoder.max_text_tokens
    long = [i for i, n in enumerate(counts) if n > limit]
    if long and not truncate:
        i = long[0]
        raise InvalidArgument(
            field(i),
            f"has {counts[i]} tokens, more than the model's limit of {limit} "
            "(max_input_tokens)" + ("; set truncate to cut it" if field(i).startswith("texts") else ""),
        )
    if long:
        for i, row in zip(long, encoder.truncate([texts[i] for i in long]), strict=True):
            ids[i] = row
    return ids


def prepare_classify(request: Any, encoder: DualEncoder, limits: ImageLimits) -> ClipItem:
    """Validate a ClassifyImageRequest; its result is [(label, score)] by descending score."""
    labels = list(request.labels)
    if not labels:
        raise InvalidArgument("labels", "must have at least one label")
    if len(labels) > MAX_LABELS:
        raise InvalidArgument("labels", f"must have at most {MAX_LABELS} labels, got {len(labels)}")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if not label:
            raise InvalidArgument(f"labels[{i}]", "must not be empty")
        if label in seen:
            raise InvalidArgument(
                f"labels[{i}]", f"duplicates labels[{seen[label]}] ({label!r}); labels must be unique"
            )
        seen[label] = i
    template = request.hypothesis_template or DEFAULT_HYPOTHESIS_TEMPLATE
    if template.count("{}") != 1:
        raise InvalidArgument("hypothesis_template", f"must contain '{{}}' exactly once, got {template!r}")
    if not request.HasField("image"):
        raise InvalidArgument("image", "is required")
    texts = _texts(
        encoder, [template.replace("{}", label) for label in labels], lambda i: f"labels[{i}]", truncate=False
    )
    image = decode_image(request.image.data, request.image.mime_type, "image", limits)
    pixels = encoder.pixels(image)

    def finish(text: torch.Tensor, images: torch.Tensor, scale: float) -> list[tuple[str, float]]:
        logits = scale * (_normalize(images) @ _normalize(text).T)[0]
        scores = logits.softmax(dim=-1).tolist()
        order = sorted(range(len(labels)), key=lambda k: -scores[k])  # stable: ties keep request order
        return [(labels[k], scores[k]) for k in order]

    return ClipItem(texts, [pixels], finish, encoder.image_cost)


def prepare_embed(request: Any, encoder: DualEncoder, limits: ImageLimits, max_inputs: int) -> ClipItem:
    """Validate an EmbedRequest; its result is (vectors: texts first, then images; dimensions)."""
    count = len(request.texts) + len(request.images)
    if count == 0:
        raise InvalidArgument("texts", "at least one text or image is required")
    if count > max_inputs:
        raise InvalidArgument(
            "texts" if len(request.texts) > max_inputs else "images",
            f"at most {max_inputs} texts and images in total (the model's max_batch_size), got {count}",
        )
    for i, text in enumerate(request.texts):
        if not text:
            raise InvalidArgument(f"texts[{i}]", "must not be empty")
    texts = (
        _texts(encoder, list(request.texts), lambda i: f"texts[{i}]", truncate=request.truncate)
        if request.texts
        else []
    )
    pixels = [
        encoder.pixels(decode_image(image.data, image.mime_type, f"images[{i}]", limits))
        for i, image in enumerate(request.images)
    ]
    normalize = request.normalize

    def finish(text: torch.Tensor, images: torch.Tensor, scale: float) -> tuple[list[list[float]], int]:
        vectors = torch.cat([text, images]) if len(images) else text
        if normalize:
            vectors = _normalize(vectors)
        return vectors.tolist(), int(vectors.shape[-1])

    return ClipItem(texts, pixels, finish, encoder.image_cost)


def run_batch(encoder: DualEncoder, items: Sequence[ClipItem]) -> list[Any]:
    """One text forward for all the items' texts, one image forward per pixel shape."""
    texts = [t for item in items for t in item.texts]
    text = encoder.encode_text(texts) if texts else torch.empty(0, 0)
    pixels = [p for item in items for p in item.pixels]
    images: list[torch.Tensor | None] = [None] * len(pixels)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, p in enumerate(pixels):
        by_shape.setdefault(tuple(p.shape), []).append(k)
    for rows in by_shape.values():
        for k, vector in zip(rows, encoder.encode_image(torch.stack([pixels[k] for k in rows])), strict=True):
            images[k] = vector
    dim = text.shape[-1] if texts else (images[0].shape[-1] if images and images[0] is not None else 0)
    scale = encoder.logit_scale()
    results = []
    t = i = 0
    for item in items:
        nt, ni = len(item.texts), len(item.pixels)
        item_images = torch.stack([v for v in images[i : i + ni] if v is not None]) if ni else torch.empty(0, dim)
        results.append(item.finish(text[t : t + nt] if nt else torch.empty(0, dim), item_images, scale))
        t, i = t + nt, i + ni
    return results
