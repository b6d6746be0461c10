"""Native open_clip checkpoints (optional: `pip install open_clip_torch` with a torchvision that
matches the installed torch — a mismatched torchvision breaks every transformers import, so it
is never a hard dependency).

OpenCLIP checkpoints published in transformers' format (config.json + CLIPModel weights) need
none of this: they load as `CLIPModel` and go through `HFDualEncoder`. This module serves the
native layout of the hub's open_clip repositories:

    open_clip_config.json        {"model_cfg": {...}, "preprocess_cfg": {...}}
    open_clip_model.safetensors  the weights (pickled .bin files are refused, as for every model)

`load_open_clip` builds the model, its eval transform and tokenizer; `OpenClipEncoder` adapts a
loaded model to the DualEncoder interface (the LoadedModel carries the transform as
`processor` and the open_clip tokenizer as `tokenizer`).
"""

from __future__ import annotations

import json
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..models.load_error import ModelLoadError
from ..models.loaded_model import LoadedModel

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
DEFAULT_CONTEXT_LENGTH = 77
"""Text tokens a CLIP text tower reads when its config does not say (open_clip's default)."""
# create_model_from_pretrained keyword ← preprocess_cfg key.
_PREPROCESS_KWARGS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


def is_open_clip_checkpoint(path: str | Path) -> bool:
    """A directory in open_clip's native layout (and not in transformers' format)."""
    root = Path(path)
    return (root / CONFIG_FILE).is_file() and not (root / "config.json").is_file()


@dataclass
class OpenClipBundle:
    model: torch.nn.Module
    preprocess: Any
    """PIL image → tensor [3, H, W] (open_clip's eval transform)."""
    tokenizer: Any
    context_length: int
    embed_dim: int


def load_open_clip(path: str | Path, device: str = "cpu", precision: str = "fp32") -> OpenClipBundle:
    """Load a native open_clip checkpoint directory. Raises ModelLoadError."""
    try:
        import open_clip
    except Exception as exc:  # ImportError, or torchvision's operator errors when mismatched
        raise ModelLoadError(
            f"{path} is a native open_clip checkpoint, which needs the optional open_clip_torch "
            f"package and a torchvision matching torch {torch.__version__} ({exc})"
        ) from exc
    root = Path(path)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{root} has no {WEIGHTS_FILE} (pickled checkpoints are not served)")
    try:
        config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
        model_cfg, preprocess_cfg = config["model_cfg"], config.get("preprocess_cfg", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot read {root / CONFIG_FILE}: {exc}") from exc
    # open_clip finds architectures by name in its config registry: register this one under a
    # name derived from its content (stable, and distinct for distinct configs).
    name = f"tokenwire-{zlib.crc32(json.dumps(model_cfg, sort_keys=True).encode()):08x}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(model_cfg), encoding="utf-8")
        open_clip.add_model_config(tmp)
    kwargs = {_PREPROCESS_KWARGS[k]: v for k, v in preprocess_cfg.items() if k in _PREPROCESS_KWARGS}
    try:
        model, preprocess = open_clip.create_model_from_pretrained(
            name, pretrained=str(weights), device=device, precision=precision, **kwargs
        )
    except Exception as exc:
        raise ModelLoadError(f"open_clip cannot load {root}: {exc}") from exc
    tokenizer = open_clip.get_tokenizer(name)
    context_length = int(model_cfg.get("text_cfg", {}).get("context_length", DEFAULT_CONTEXT_LENGTH))
    return OpenClipBundle(model.eval(), preprocess, tokenizer, context_length, int(model_cfg["embed_dim"]))


def _token_count(tokenizer: Any, text: str) -> int | None:
    """Tokens `text` takes with start/end tokens, or None when the tokenizer cannot tell."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "sot_token_id"):  # SimpleTokenizer (BPE)
        return len(tokenizer.encode(text)) + 2
    inner: Any = getattr(tokenizer, "tokenizer", None)  # HFTokenizer wraps a transformers tokenizer
    if callable(inner):
        return len(inner(text)["input_ids"])
    return None


class OpenClipEncoder:
    """DualEncoder over an open_clip model: encode_text / encode_image on fixed-length text."""

    def __init__(self, model: LoadedModel, module: torch.nn.Module) -> None:
        self.module: Any = module
        self.preprocess: Any = model.processor
        self.tokenizer = model.tokenizer
        self.max_text_tokens = int(getattr(self.tokenizer, "context_length", 0) or model.max_input_tokens)
        parameter = next(module.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        grid = getattr(getattr(module, "visual", None), "grid_size", None)
        self.image_cost = int(grid[0] * grid[1]) + 1 if isinstance(grid, (tuple, list)) and len(grid) == 2 else 1

    def _ids(self, texts: list[str]) -> list[list[int]]:
        # open_clip tokenizers return [n, context_length], zero-padded and cut to fit.
        rows = self.tokenizer(texts)
        return [[int(t) for t in row] for row in rows]

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        ids = self._ids(texts)
        counts = [_token_count(self.tokenizer, text) for text in texts]
        # A tokenizer that cannot tell how long a text is has cut it already: report it as fitting.
        return ids, [
            c if c is not None else min(len(row), self.max_text_tokens) for c, row in zip(counts, ids, strict=True)
        ]

    def truncate(self, texts: list[str]) -> list[list[int]]:
        return self._ids(texts)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        values: torch.Tensor = self.preprocess(image)
        return values.to(self.dtype) if self.dtype.is_floating_point else values

    @torch.inference_mode()
    def encode_text(self, ids: list[list[int]]) -> torch.Tensor:
        rows = torch.tensor([t[: self.max_text_tokens] for t in ids], dtype=torch.long, device=self.device)
        out: torch.Tensor = self.module.encode_text(rows)
        return out.float().cpu()

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module.encode_image(pixels.to(self.device))
        return out.float().cpu()

    def logit_scale(self) -> float:
        return float(self.module.logit_scale.detach().float().exp().item())
