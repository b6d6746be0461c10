"""bitsandbytes quantization of one registry entry: which scheme, which modules stay in full
precision, the config transformers loads with, and the checks that fail before any weight is read.

Which scheme: the registry's `quantization` key; a checkpoint saved already quantized (its
config.json holds a `quantization_config`) loads as it is, with its own settings.

Which modules stay unquantized: `llm_int8_skip_modules` when set (it replaces the defaults, as in
transformers; each entry must match a module). Otherwise the defaults: the output layer and
embeddings tied to it (transformers' own choice) and, for multimodal chat models, the vision
tower and the projector — a few percent of the weights, and quantizing them costs more image
understanding than it saves memory.

Sizes for placement planning (bytes per weight element): int8 1 (+ one float32 scale per output
row), nf4/fp4 0.5 (+ one float32 absmax per 64-element block; with double quantization one byte
per block plus one float32 per 256 blocks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ModelSpec
from ..tasks import Task
from .load_error import ModelLoadError

log = logging.getLogger(__name__)

SCHEMES = ("int8", "nf4", "fp4")
#: Modules of multimodal chat models kept in full precision by default (LLaVA's names first).
MULTIMODAL_KEEP = ("vision_tower", "multi_modal_projector", "mm_projector", "visual")
_BLOCK = 64  # bitsandbytes 4-bit block size (elements per absmax)
_NESTED_BLOCK = 256  # double quantization: absmaxes per float32 constant
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _DropPerForwardNotice(logging.Filter):
    """LLM.int8() casts float32 activations to float16 (on CPU: always) and logs it on every
    forward of every layer; the model's dtype is in ModelInfo, the log needs it not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_DropPerForwardNotice())


@dataclass(frozen=True)
class Quantization:
    """The effective quantization of one model (the registry's, or the checkpoint's own)."""

    scheme: str = "none"
    """"none", "int8", "nf4", "fp4", or another method a checkpoint was saved with."""
    from_checkpoint: bool = False
    compute_dtype: torch.dtype = torch.float32
    double_quant: bool = False
    threshold: float = 6.0
    skip_modules: tuple[str, ...] | None = None
    """The configured patterns; None means the defaults (see the module docstring)."""

    @property
    def active(self) -> bool:
        return self.scheme != "none"

    @property
    def is_bnb(self) -> bool:
        return self.scheme in SCHEMES

    def describe(self) -> str:
        return self.scheme + (" (as saved in the checkpoint)" if self.from_checkpoint else "")


def _checkpoint_config(config: Any) -> dict[str, Any] | None:
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return None
    return dict(qc) if isinstance(qc, dict) else dict(qc.to_dict())


def _checkpoint_scheme(qc: dict[str, Any]) -> str:
    if qc.get("load_in_8bit") or qc.get("_load_in_8bit"):
        return "int8"
    if qc.get("load_in_4bit") or qc.get("_load_in_4bit"):
        return str(qc.get("bnb_4bit_quant_type") or "fp4")
    return str(qc.get("quant_method") or "unknown")


def _compute_dtype(spec: ModelSpec, on_gpu: bool) -> torch.dtype:
    for value in (spec.bnb_4bit_compute_dtype, spec.dtype):
        if value != "auto":
            return _DTYPES[value]
    if not on_gpu:
        return torch.float32  # CPU kernels: half precision is slow and inexact there
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve(spec: ModelSpec, config: Any, on_gpu: bool) -> Quantization:
    """The quantization to load `spec` with; a pre-quantized checkpoint wins (and must agree)."""
    qc = _checkpoint_config(config)
    if qc is not None:
        scheme = _checkpoint_scheme(qc)
        if spec.quantization not in ("none", scheme):
            raise ModelLoadError(
                f"model {spec.name!r}, key 'quantization': the checkpoint at {spec.path} is saved "
                f'already quantized ({scheme}) and loads as it is; set quantization = "none" '
                f"(or \"{scheme}\"), or point key 'path' at the unquantized checkpoint"
            )
        compute = qc.get("bnb_4bit_compute_dtype")
        skip = qc.get("llm_int8_skip_modules")
        return Quantization(
            scheme=scheme,
            from_checkpoint=True,
            compute_dtype=_DTYPES.get(str(compute).removeprefix("torch."), _compute_dtype(spec, on_gpu)),
            double_quant=bool(qc.get("bnb_4bit_use_double_quant")),
            threshold=float(qc.get("llm_int8_threshold", 6.0)),
            skip_modules=tuple(skip) if skip else None,
        )
    if spec.quantization == "none":
        return Quantization()
    return Quantization(
        scheme=spec.quantization,
        compute_dtype=_compute_dtype(spec, on_gpu),
        double_quant=spec.bnb_4bit_use_double_quant,
        threshold=spec.llm_int8_threshold,
        skip_modules=spec.llm_int8_skip_modules,
    )


def require_backend(spec: ModelSpec, q: Quantization, device_types: Iterable[str]) -> None:
    """bitsandbytes is importable and has a backend for every device the model computes on."""
    if not q.is_bnb:
        return
    if q.from_checkpoint:
        what = f"model {spec.name!r}, key 'path': the checkpoint is saved quantized with bitsandbytes ({q.scheme})"
        fix = "or point key 'path' at an unquantized checkpoint"
    else:
        what = f"model {spec.name!r}, key 'quantization' = {q.scheme!r}"
        fix = 'or set quantization = "none"'
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise ModelLoadError(
            f"{what} needs bitsandbytes, which is not installed: pip install 'tokenwire[quantization]', {fix}"
        ) from exc
    supported = set(getattr(bnb, "supported_torch_devices", {"cuda"}))
    needed = set(device_types) - {"disk", "meta"}
    missing = sorted(needed - supported)
    if not missing and "cuda" in needed:
        try:
            from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib

            if isinstance(lib, ErrorHandlerMockBNBNativeLibrary):
                missing = ["cuda"]
        except ImportError:  # layout of other releases: let transformers report it
            pass
    if missing:
        raise ModelLoadError(
            f"{what}: bitsandbytes {getattr(bnb, '__version__', '?')} has no supported backend "
            f"for {', '.join(missing)} (it supports: {', '.join(sorted(supported)) or 'none'}); "
            f"install a bitsandbytes build for this device, place the model on a supported one "
            f"with key 'device_map', {fix}"
        )


def _matches(name: str, pattern: str) -> bool:
    """transformers' rule for llm_int8_skip_modules entries (prefix, regex or suffix)."""
    try:
        from transformers.quantizers.quantizers_utils import should_convert_module

        return not should_convert_module(name, [pattern])
    except ImportError:  # older layout: prefix or suffix at a module boundary
        return name == pattern or name.startswith(pattern + ".") or name.endswith("." + pattern)


def _transformers_default_skips(meta: torch.nn.Module) -> list[str]:
    try:  # transformers 5.x
        from transformers.quantizers.base import get_keys_to_not_convert
    except ImportError:
        try:
            from transformers.integrations.bitsandbytes import get_keys_to_not_convert  # type: ignore[attr-defined,no-redef]
        except ImportError:  # its rule, by hand: the output layer
            getter = getattr(meta, "get_output_embeddings", None)
            out = getter() if callable(getter) else None
            return [n for n, m in meta.named_modules() if out is not None and m is out]
    return list(get_keys_to_not_convert(meta))


def default_skip_modules(meta: torch.nn.Module, tasks: Iterable[Task]) -> tuple[str, ...]:
    modules = {name for name, _ in meta.named_modules()}
    # transformers names the last *parameter* (e.g. "qa_outputs.bias"), which matches no module;
    # what it means to keep is the module holding it (the task head).
    skip = {key if key in modules else key.rsplit(".", 1)[0] for key in _transformers_default_skips(meta)}
    skip.discard("")
    if Task.MULTIMODAL_CHAT in set(tasks):
        skip |= {name for name, _ in meta.named_modules() if name.rsplit(".", 1)[-1] in MULTIMODAL_KEEP}
    # A child of a kept module is kept anyway; listing it is noise.
    return tuple(sorted(s for s in skip if not any(s.startswith(o + ".") for o in skip)))


def skip_modules(spec: ModelSpec, q: Quantization, meta: torch.nn.Module, tasks: Iterable[Task]) -> tuple[str, ...]:
    """The modules kept in full precision; a configured entry that matches nothing is an error."""
    if q.skip_modules is None:
        return default_skip_modules(meta, tasks)
    names = [n for n, _ in meta.named_modules() if n]
    for pattern in q.skip_modules:
        if not any(_matches(n, pattern) for n in names):
            top = sorted({n.split(".")[0] for n in names})
            raise ModelLoadError(
                f"model {spec.name!r}, key 'llm_int8_skip_modules': {pattern!r} matches no module "
                f"of {type(meta).__name__}; use module names as in named_modules(), e.g. "
                f"{', '.join(repr(n) for n in _examples(meta))} (top level: {', '.join(top)})"
            )
    return tuple(q.skip_modules)


def _examples(meta: torch.nn.Module) -> list[str]:
    linear = [n for n, m in meta.named_modules() if _is_linear(m)]
    return linear[:2] + linear[-1:]


def _is_linear(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return type(module) is torch.nn.Linear or isinstance(module, Conv1D)


def quantized_linears(meta: torch.nn.Module, skip: Iterable[str]) -> dict[str, torch.nn.Module]:
    """The Linear (and GPT-2 Conv1D) modules bitsandbytes will replace, by name."""
    patterns = list(skip)
    return {
        name: m for name, m in meta.named_modules() if _is_linear(m) and not any(_matches(name, p) for p in patterns)
    }


def element_bytes(q: Quantization) -> float:
    """Bytes per quantized weight element, without the per-block constants."""
    return 1.0 if q.scheme == "int8" else 0.5


def constant_bytes(q: Quantization, weight: torch.Tensor) -> int:
    """Bytes of the quantization constants of one weight (absmax / scales)."""
    numel = weight.numel()
    if q.scheme == "int8":
        return 4 * int(weight.shape[0])  # one float32 scale per output row
    blocks = -(-numel // _BLOCK)
    if q.double_quant:
        return blocks + 4 * -(-blocks // _NESTED_BLOCK)
    return 4 * blocks


def bnb_config(q: Quantization, skip: Iterable[str], fp32_offload: bool) -> Any:
    """The BitsAndBytesConfig for from_pretrained (never for a pre-quantized checkpoint)."""
    from transformers import BitsAndBytesConfig

    common: dict[str, Any] = {"llm_int8_skip_modules": list(skip), "llm_int8_enable_fp32_cpu_offload": fp32_offload}
    if q.scheme == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=q.threshold, **common)  # type: ignore[no-untyped-call]
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type=q.scheme,
        bnb_4bit_compute_dtype=q.compute_dtype,
        bnb_4bit_use_double_quant=q.double_quant,
        **common,
    )


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Memory of one loaded parameter, with bitsandbytes' quantization constants."""
    total = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)
    if state is not None:
        for part in (getattr(state, "absmax", None), getattr(getattr(state, "state2", None), "absmax", None)):
            if isinstance(part, torch.Tensor):
                total += part.numel() * part.element_size()
    scb = getattr(tensor, "SCB", None)
    if isinstance(scb, torch.Tensor):
        total += scb.numel() * scb.element_size()
    return total
