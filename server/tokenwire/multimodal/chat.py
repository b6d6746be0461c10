"""MultimodalChatRequest → the prompt a vision-language model (LLaVA family) decodes from.

Pipeline (one worker thread per request; nothing here touches the event loop):
  1. structure  — messages, roles, parts, the per-request image count (cheap, before any
                  image is decoded);
  2. images     — each decoded as untrusted input (`images.decode_image`), errors naming
                  `messages[i].parts[j].image`;
  3. template   — the model's chat template renders the conversation, the generation prompt
                  appended, one image placeholder per image part;
  4. processor  — the model's processor expands the placeholders and turns the images into
                  the vision inputs (`pixel_values`, …), which go to the prefill forward only;
  5. decoding   — the request's decoding options, validated exactly as for Generate
                  (`services.generation_params.parse_generation_options`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jinja2 import TemplateError
from PIL import Image

from ..engine.defaults import GenerationDefaults
from ..engine.params import GenerationParams
from ..errors import FailedPrecondition, InvalidArgument
from ..models.loader import LoadedModel
from ..services.generation_params import parse_generation_options
from ..tasks import Task
from .images import ImageLimits, decode_image

# Processor outputs that describe the text; everything else it returns is a vision input.
_TEXT_KEYS = frozenset({"input_ids", "attention_mask"})


def _image_token(model: LoadedModel) -> str | None:
    token = getattr(model.processor, "image_token", None)
    return token if isinstance(token, str) and token else model.special_tokens.get("image_token")


def _conversation(
    request: Any, model: LoadedModel, limits: ImageLimits
) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """Validated chat-template messages, and (field, Image message) of each image in order."""
    if not request.messages:
        raise InvalidArgument("messages", "must have at least one message")
    image_token = _image_token(model)
    conversation: list[dict[str, Any]] = []
    images: list[tuple[str, Any]] = []
    for i, message in enumerate(request.messages):
        if not message.role:
            raise InvalidArgument(f"messages[{i}].role", "must not be empty")
        if not message.parts:
            raise InvalidArgument(f"messages[{i}].parts", "must have at least one part")
        content: list[dict[str, Any]] = []
        for j, part in enumerate(message.parts):
            field = f"messages[{i}].parts[{j}]"
            kind = part.WhichOneof("content")
            if kind is None:
                raise InvalidArgument(field, "exactly one of text and image must be set")
            if kind == "text":
                if image_token and image_token in part.text:
                    raise InvalidArgument(
                        f"{field}.text",
                        f"must not contain the image placeholder {image_token!r}; send images as image parts",
                    )
                content.append({"type": "text", "text": part.text})
            else:
                images.append((f"{field}.image", part.image))
                content.append({"type": "image"})
        conversation.append({"role": message.role, "content": content})
    if len(images) > limits.max_images_per_request:
        raise InvalidArgument(
            "messages", f"at most {limits.max_images_per_request} images per request, got {len(images)}"
        )
    if images and not image_token:
        raise FailedPrecondition(f"model {model.spec.name!r} has no image placeholder token; it cannot take images")
    return conversation, images


def _render(model: LoadedModel, conversation: list[dict[str, Any]]) -> str:
    processor, tokenizer = model.processor, model.tokenizer
    owner: Any = processor if getattr(processor, "chat_template", None) else tokenizer
    if not getattr(owner, "chat_template", None):
        raise FailedPrecondition(f"model {model.spec.name!r} has no chat template")
    try:
        text = owner.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    except TemplateError as exc:  # the template's own raise_exception(): a conversation it refuses
        raise InvalidArgument("messages", f"the model's chat template rejected the conversation: {exc}") from None
    return text if isinstance(text, str) else text[0]


def encode_chat(request: Any, model: LoadedModel, limits: ImageLimits) -> tuple[list[int], dict[str, Any] | None]:
    """Prompt token ids (image placeholders expanded) and the prefill-only vision inputs
    (None for a text-only conversation, which then shares batched prefills)."""
    conversation, image_parts = _conversation(request, model, limits)
    images: list[Image.Image] = [decode_image(img.data, img.mime_type, field, limits) for field, img in image_parts]
    text = _render(model, conversation)
    token = _image_token(model)
    if images and token is not None and text.count(token) != len(images):
        raise InvalidArgument(
            "messages",
            f"the model's chat template placed {text.count(token)} image "
            f"placeholder(s) for {len(images)} image(s); it may not accept images in "
            "some roles",
        )
    if model.processor is None:
        raise FailedPrecondition(f"model {model.spec.name!r} has no processor")
    encoded = model.processor(images=images or None, text=[text], return_tensors="pt")
    prompt_ids = [int(t) for t in encoded["input_ids"][0]]
    if len(prompt_ids) > model.max_input_tokens:
        raise InvalidArgument(
            "messages",
            f"the conversation takes {len(prompt_ids)} tokens (image tokens "
            f"included), more than the model's limit of {model.max_input_tokens} "
            "(max_input_tokens)",
        )
    if not images:
        return prompt_ids, None
    dtype = next(model.modules[Task.MULTIMODAL_CHAT].parameters()).dtype
    extra = {
        k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() and dtype.is_floating_point else v)
        for k, v in encoded.items()
        if k not in _TEXT_KEYS
    }
    return prompt_ids, extra


def chat_parser(limits: ImageLimits) -> Callable[..., GenerationParams]:
    """A `parse` for services.generation.submit: (request, model, defaults, max_rows, arrival)."""

    def parse(
        request: Any, model: LoadedModel, defaults: GenerationDefaults, max_rows: int, arrival: float
    ) -> GenerationParams:
        prompt_ids, extra = encode_chat(request, model, limits)
        return parse_generation_options(request, model, defaults, max_rows, arrival, prompt_ids, extra)

    return parse
