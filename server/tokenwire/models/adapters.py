"""LoRA (peft) adapters, merged into the base weights at load time.

Merging once costs nothing per token afterwards and leaves a plain transformers model, so
everything downstream (quantization already applied, placement, the decode engine) is
unchanged. The adapter directory is what `peft` saves: adapter_config.json + weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ModelSpec
from .load_error import ModelLoadError


def merge_adapter(model: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """`model` with `spec.adapter` merged in (the model itself when there is none)."""
    if not spec.adapter:
        return model
    if not (Path(spec.adapter) / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"model {spec.name!r}, key 'adapter': {spec.adapter} has no "
            "adapter_config.json (expected a directory saved by peft)"
        )
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelLoadError(
            f"model {spec.name!r}, key 'adapter' needs peft: pip install 'tokenwire[lora]', or remove the key"
        ) from exc
    try:
        merged: torch.nn.Module = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
    except Exception as exc:  # peft raises ValueError/KeyError/RuntimeError on a mismatch
        raise ModelLoadError(
            f"model {spec.name!r}, key 'adapter': cannot apply the adapter at {spec.adapter} to this model: {exc}"
        ) from exc
    return merged.eval()
