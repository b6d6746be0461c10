"""A model loaded and ready to serve: what every task runner needs from one registry entry.

Its own module so that what the loader calls (e.g. the native open_clip path) can name it
without importing the loader back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PretrainedConfig

from ..config import ModelSpec
from ..tasks import Task
from .encoder_profile import EncoderProfile
from .placement import Reservation


@dataclass
class LoadedModel:
    """Everything a task runner needs from one registry entry, ready to serve."""

    spec: ModelSpec
    tasks: tuple[Task, ...]
    architecture: str
    config: PretrainedConfig
    tokenizer: Any
    processor: Any | None
    modules: dict[Task, torch.nn.Module]
    max_total_tokens: int
    max_input_tokens: int
    dtype: str
    device_map: dict[str, str] = field(default_factory=dict)
    """Module → device label ("cpu", "cuda:0", "disk"); "" is the whole model."""
    memory_bytes: int = 0
    quantization: str = "none"
    """Effective scheme: the registry's, or the one a pre-quantized checkpoint was saved with."""
    unquantized_modules: tuple[str, ...] = ()
    """Modules (patterns) bitsandbytes leaves in full precision; empty when not quantized."""
    placement: str = ""
    """How the device map was made: a device ("cpu", "cuda:0"), a strategy, or "explicit"."""
    memory_per_device: dict[str, int] = field(default_factory=dict)
    """Device label → bytes of weights (and buffers) loaded there."""
    reserved_per_device: dict[str, int] = field(default_factory=dict)
    """Device label → bytes the plan keeps free for KV cache, activations and logits."""
    reservation: Reservation | None = None

    vocab_size: int = 0
    """Ids the tokenizer can decode; the model's output layer may be larger."""
    special_token_ids: dict[str, list[int]] = field(default_factory=dict)
    """bos/eos/pad/unk/mask/sep/cls → ids (eos may be several: generation_config's too)."""
    special_tokens: dict[str, str] = field(default_factory=dict)
    """"bos_token", "mask_token", … (and "image_token") → the token's text."""
    encoder: EncoderProfile = field(default_factory=EncoderProfile)
    """Labels, score functions and pooling of the encoder tasks (empty for other models)."""

    def first_module(self) -> torch.nn.Module:
        return next(iter(self.modules.values()))
