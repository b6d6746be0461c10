"""Load one registry entry: config → tasks → weights (dtype, quantization, placement) → tokenizer.

A checkpoint whose own architecture class serves every requested task is loaded once with that
class (BertForPreTraining serves fill_mask and next_sentence with one set of weights); otherwise
each task gets its Auto class. Loading runs in a worker thread; nothing here touches asyncio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PretrainedConfig

from ..config import ModelSpec
from ..tasks import Task, tasks_for_architecture
from .generation_config import lenient_generation_config

log = logging.getLogger(__name__)
# Progress bars in a server log are noise (one per checkpoint shard, redrawn in place).
transformers.utils.logging.disable_progress_bar()

# Task → the Auto class that loads a model for it, when the checkpoint's own class does not.
_AUTO_CLASS_OF_TASK: dict[Task, str] = {
    Task.GENERATE: "AutoModelForCausalLM",
    Task.FILL_MASK: "AutoModelForMaskedLM",
    Task.NEXT_SENTENCE: "AutoModelForNextSentencePrediction",
    Task.ANSWER_QUESTION: "AutoModelForQuestionAnswering",
    Task.MULTIMODAL_CHAT: "AutoModelForImageTextToText",
    Task.CLASSIFY_IMAGE: "AutoModel",
    Task.EMBED: "AutoModel",
}
# Tasks whose inputs go through a processor (images), not only a tokenizer.
_PROCESSOR_TASKS = frozenset({Task.MULTIMODAL_CHAT, Task.CLASSIFY_IMAGE, Task.EMBED})
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Config attributes that hold the context window, most specific first.
_CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class ModelLoadError(Exception):
    """Loading failed for a reason the operator can fix; the message says what to change."""


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
    memory_bytes: int = 0

    vocab_size: int = 0
    """Ids the tokenizer can decode; the model's output layer may be larger."""
    special_token_ids: dict[str, list[int]] = field(default_factory=dict)
    """bos/eos/pad/unk/mask/sep/cls → ids (eos may be several: generation_config's too)."""
    special_tokens: dict[str, str] = field(default_factory=dict)
    """"bos_token", "mask_token", … (and "image_token") → the token's text."""

    def first_module(self) -> torch.nn.Module:
        return next(iter(self.modules.values()))


_SPECIAL_ROLES = ("bos", "eos", "pad", "unk", "mask", "sep", "cls")


def _special_tokens(tokenizer: Any, module: torch.nn.Module) -> tuple[dict[str, list[int]], dict[str, str]]:
    ids: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for role in _SPECIAL_ROLES:
        value = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(value, int):
            ids[role] = [value]
        token = getattr(tokenizer, f"{role}_token", None)
        if isinstance(token, str):
            texts[f"{role}_token"] = token
    image_token = getattr(tokenizer, "image_token", None)
    if isinstance(image_token, str):
        texts["image_token"] = image_token
    gen_eos = getattr(getattr(module, "generation_config", None), "eos_token_id", None)
    eos = list(ids.get("eos", []))
    for value in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
        if isinstance(value, int) and value not in eos:
            eos.append(value)
    if eos:
        ids["eos"] = eos
    return ids, texts


def read_architecture(spec: ModelSpec) -> tuple[PretrainedConfig, str]:
    """The checkpoint's config and its first declared architecture (cheap: reads config.json)."""
    try:
        config = AutoConfig.from_pretrained(
            spec.path, trust_remote_code=spec.trust_remote_code, revision=spec.revision)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError… here
        raise ModelLoadError(f"cannot read the model config at {spec.path!r}: {exc}") from exc
    architectures = getattr(config, "architectures", None) or []
    return config, (architectures[0] if architectures else config.__class__.__name__)


def resolve_tasks(spec: ModelSpec, architecture: str) -> tuple[Task, ...]:
    """The configured tasks, or those the architecture implies."""
    if spec.tasks:
        return spec.tasks
    inferred = tasks_for_architecture(architecture)
    if not inferred:
        raise ModelLoadError(
            f"cannot infer tasks from architecture {architecture!r}; set key 'tasks' "
            f"(one or more of {', '.join(t.value for t in Task)})")
    return inferred


def _context_window(config: PretrainedConfig) -> int:
    for cfg in (getattr(config, "text_config", None), config):
        for attr in _CONTEXT_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return 2048


def _torch_dtype(spec: ModelSpec) -> torch.dtype | str:
    if spec.dtype != "auto":
        return _TORCH_DTYPES[spec.dtype]
    # On CPU, half precision is slow and inexact; the checkpoint's dtype is right for GPUs.
    return "auto" if torch.cuda.is_available() else torch.float32


def _quantization_config(spec: ModelSpec) -> Any | None:
    if spec.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401  (presence check: transformers' message is obscure)
    except ImportError as exc:
        raise ModelLoadError(
            f"key 'quantization' = {spec.quantization!r} needs bitsandbytes: "
            "pip install 'tokenwire[quantization]', or set quantization = \"none\"") from exc
    if spec.quantization == "int8":
        return transformers.BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=spec.llm_int8_threshold,
            llm_int8_skip_modules=list(spec.llm_int8_skip_modules) if spec.llm_int8_skip_modules else None)
    compute = (torch.float32 if not torch.cuda.is_available() else torch.bfloat16) \
        if spec.bnb_4bit_compute_dtype == "auto" else _TORCH_DTYPES[spec.bnb_4bit_compute_dtype]
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=spec.quantization, bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=spec.bnb_4bit_use_double_quant,
        llm_int8_skip_modules=list(spec.llm_int8_skip_modules) if spec.llm_int8_skip_modules else None)


def _device_map(spec: ModelSpec) -> str | dict[str, str]:
    if spec.device_map is None:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if isinstance(spec.device_map, str):
        return spec.device_map
    return dict(spec.device_map)


def _classes_for(architecture: str, tasks: tuple[Task, ...]) -> dict[Task, Any]:
    own = getattr(transformers, architecture, None)
    if own is not None and set(tasks) <= set(tasks_for_architecture(architecture)):
        return {task: own for task in tasks}
    return {task: getattr(transformers, _AUTO_CLASS_OF_TASK[task]) for task in tasks}


def _load_tokenizer(spec: ModelSpec, tasks: tuple[Task, ...]) -> tuple[Any, Any | None]:
    kwargs = {"trust_remote_code": spec.trust_remote_code, "revision": spec.revision}
    if _PROCESSOR_TASKS & set(tasks):
        processor = transformers.AutoProcessor.from_pretrained(spec.path, **kwargs)
        return getattr(processor, "tokenizer", processor), processor
    return transformers.AutoTokenizer.from_pretrained(spec.path, **kwargs), None


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load weights and tokenizer for one registry entry. Raises ModelLoadError."""
    config, architecture = read_architecture(spec)
    tasks = resolve_tasks(spec, architecture)
    common: dict[str, Any] = {
        "dtype": _torch_dtype(spec),
        "device_map": _device_map(spec),
        "trust_remote_code": spec.trust_remote_code,
        "revision": spec.revision,
        # Pickled weights execute code on load; serve safetensors only.
        "use_safetensors": True,
    }
    if spec.max_memory:
        common["max_memory"] = {int(k) if k.isdigit() else k: v for k, v in spec.max_memory.items()}
    quantization = _quantization_config(spec)
    if quantization is not None:
        common["quantization_config"] = quantization
    if spec.is_local and Task.GENERATE in tasks:
        generation_config = lenient_generation_config(spec.path, spec.name)
        if generation_config is not None:
            common["generation_config"] = generation_config

    modules: dict[Task, torch.nn.Module] = {}
    by_class: dict[Any, torch.nn.Module] = {}
    for task, cls in _classes_for(architecture, tasks).items():
        if cls not in by_class:
            try:
                by_class[cls] = cls.from_pretrained(spec.path, **common).eval()
            except Exception as exc:
                raise ModelLoadError(f"cannot load weights of model {spec.name!r} with "
                                     f"{cls.__name__}: {exc}") from exc
        modules[task] = by_class[cls]
    tokenizer, processor = _load_tokenizer(spec, tasks)

    first = next(iter(by_class.values()))
    hf_map = getattr(first, "hf_device_map", None) or {"": str(next(first.parameters()).device)}
    window = _context_window(config)
    memory = sum(m.get_memory_footprint() for m in by_class.values())
    special_ids, special_texts = _special_tokens(tokenizer, first)
    return LoadedModel(
        spec=spec, tasks=tasks, architecture=architecture, config=config,
        tokenizer=tokenizer, processor=processor, modules=modules,
        max_total_tokens=window,
        max_input_tokens=min(spec.max_input_tokens or window, window),
        dtype=str(first.dtype).removeprefix("torch."),
        device_map={k: str(v) for k, v in hf_map.items()},
        memory_bytes=int(memory),
        vocab_size=len(tokenizer),
        special_token_ids=special_ids,
        special_tokens=special_texts,
    )
