"""Load one registry entry: config → tasks → plan (quantization, placement) → weights → tokenizer.

A checkpoint whose own architecture class serves every requested task is loaded once with that
class (BertForPreTraining serves fill_mask and next_sentence with one set of weights); otherwise
each task gets its Auto class. Before any weight is read, each class is planned on a meta-device
copy (`placement`): which layers bitsandbytes quantizes (`quantization`), which device each
module goes to, and the memory kept free for serving; a plan that cannot work raises
ModelLoadError naming the model, the registry key and what to change (the registry marks the
model FAILED with it, like any load failure, and serves the others). Loading runs in a worker
thread; nothing here touches asyncio.
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PretrainedConfig

from ..config import DEVICE_MAP_STRATEGIES, ModelSpec
from ..tasks import Task, tasks_for_architecture
from . import placement
from . import quantization as qz
from .adapters import merge_adapter
from .custom_head import attach_head
from .encoder_profile import EncoderProfile, has_custom_head, implied_tasks, local_dir, read_profile
from .generation_config import lenient_generation_config
from .load_error import ModelLoadError
from .loaded_model import LoadedModel

log = logging.getLogger(__name__)
# Progress bars in a server log are noise (one per checkpoint shard, redrawn in place).
transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

# Task → the Auto class that loads a model for it, when the checkpoint's own class does not.
_AUTO_CLASS_OF_TASK: dict[Task, str] = {
    Task.GENERATE: "AutoModelForCausalLM",
    Task.FILL_MASK: "AutoModelForMaskedLM",
    Task.NEXT_SENTENCE: "AutoModelForNextSentencePrediction",
    Task.ANSWER_QUESTION: "AutoModelForQuestionAnswering",
    Task.MULTIMODAL_CHAT: "AutoModelForImageTextToText",
    Task.CLASSIFY_IMAGE: "AutoModel",
    Task.EMBED: "AutoModel",
    Task.CLASSIFY_TEXT: "AutoModelForSequenceClassification",
    Task.CLASSIFY_TOKENS: "AutoModelForTokenClassification",
    Task.EMBED_TEXT: "AutoModel",
    Task.RERANK: "AutoModelForSequenceClassification",
}
# Tasks a custom head (tokenwire_head.json) serves: its module is the bare encoder plus the head.
_HEAD_TASKS = frozenset({Task.CLASSIFY_TEXT, Task.RERANK})
# Tasks whose inputs go through a processor (images), not only a tokenizer.
_PROCESSOR_TASKS = frozenset({Task.MULTIMODAL_CHAT, Task.CLASSIFY_IMAGE, Task.EMBED})
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_MAX_INPUT_TOKENS = 8192
# Config attributes that hold the context window, most specific first.
_CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


__all__ = ["LoadedModel", "ModelLoadError", "load_model", "read_architecture", "resolve_tasks"]


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


OPEN_CLIP = "OpenCLIP"
"""The architecture name given to native open_clip checkpoints (open_clip_config.json)."""


def read_architecture(spec: ModelSpec) -> tuple[PretrainedConfig, str]:
    """The checkpoint's config and its first declared architecture (cheap: reads config.json)."""
    open_clip_config = _open_clip_config(spec)
    if open_clip_config is not None:
        return open_clip_config, OPEN_CLIP
    try:
        config = AutoConfig.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code, revision=spec.revision)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError… here
        raise ModelLoadError(f"cannot read the model config at {spec.path!r}: {exc}") from exc
    architectures = getattr(config, "architectures", None) or []
    return config, (architectures[0] if architectures else config.__class__.__name__)


def _open_clip_config(spec: ModelSpec) -> PretrainedConfig | None:
    """For a native open_clip directory (no config.json): a config carrying its embed_dim."""
    from ..multimodal.open_clip import CONFIG_FILE, DEFAULT_CONTEXT_LENGTH, is_open_clip_checkpoint

    if not spec.is_local or not is_open_clip_checkpoint(spec.path):
        return None
    try:
        model_cfg = json.loads((Path(spec.path) / CONFIG_FILE).read_text(encoding="utf-8"))["model_cfg"]
        text_cfg = model_cfg.get("text_cfg", {})
        config = PretrainedConfig()
        config.projection_dim = int(model_cfg["embed_dim"])
        config.max_position_embeddings = int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH))
        return config
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"model {spec.name!r}: cannot read {CONFIG_FILE} in {spec.path}: {exc}") from exc


def _load_open_clip(spec: ModelSpec, config: PretrainedConfig, tasks: tuple[Task, ...]) -> LoadedModel:
    """A native open_clip checkpoint through the optional open_clip package (no transformers
    class, quantization or placement plan: one device)."""
    from ..multimodal.open_clip import load_open_clip

    if spec.quantization != "none":
        raise ModelLoadError(
            f"model {spec.name!r}, key 'quantization': native open_clip checkpoints "
            'load unquantized; set quantization = "none"'
        )
    device = "cuda" if torch.cuda.is_available() and spec.device_map in (None, "auto", "cuda", "cuda:0") else "cpu"
    bundle = load_open_clip(
        spec.path,
        device=device,
        precision="fp32" if spec.dtype in ("auto", "float32") else ("bf16" if spec.dtype == "bfloat16" else "fp16"),
    )
    module = bundle.model
    first = next(module.parameters())
    return LoadedModel(
        spec=spec,
        tasks=tasks,
        architecture=OPEN_CLIP,
        config=config,
        tokenizer=bundle.tokenizer,
        processor=bundle.preprocess,
        modules={task: module for task in tasks},
        max_total_tokens=bundle.context_length,
        max_input_tokens=bundle.context_length,
        dtype=str(first.dtype).removeprefix("torch."),
        device_map={"": str(first.device)},
        memory_bytes=sum(p.numel() * p.element_size() for p in module.parameters()),
        vocab_size=int(getattr(bundle.tokenizer, "vocab_size", 0) or 0),
    )


def resolve_tasks(spec: ModelSpec, architecture: str, config: PretrainedConfig) -> tuple[Task, ...]:
    """The configured tasks, or those the architecture and the checkpoint's files imply
    (custom heads, one-output classifiers: see encoder_profile.implied_tasks)."""
    if spec.tasks:
        return spec.tasks
    inferred = implied_tasks(spec, config, tasks_for_architecture(architecture))
    if not inferred:
        raise ModelLoadError(
            f"cannot infer tasks from architecture {architecture!r}; set key 'tasks' "
            f"(one or more of {', '.join(t.value for t in Task)})"
        )
    return inferred


def _context_window(config: PretrainedConfig) -> int:
    for cfg in (getattr(config, "text_config", None), config):
        for attr in _CONTEXT_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return 2048


def _load_dtype(spec: ModelSpec) -> torch.dtype | str:
    """What from_pretrained gets: on GPU, "auto" keeps the checkpoint's dtype."""
    if spec.dtype != "auto":
        return _TORCH_DTYPES[spec.dtype]
    # On CPU, half precision is slow and inexact; the checkpoint's dtype is right for GPUs.
    return "auto" if _targets_gpu(spec) else torch.float32


def _plan_dtype(spec: ModelSpec, config: PretrainedConfig) -> torch.dtype:
    """The dtype the weights will have, for planning (resolves "auto")."""
    loaded = _load_dtype(spec)
    if isinstance(loaded, torch.dtype):
        return loaded
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = _TORCH_DTYPES.get(declared.removeprefix("torch."))
    return declared if isinstance(declared, torch.dtype) else torch.float32


def _targets_gpu(spec: ModelSpec) -> bool:
    """Whether any part of the model is meant to compute on a GPU."""
    requested = spec.device_map
    if isinstance(requested, dict):
        return any(isinstance(placement.parse_device(d), int) for d in requested.values())
    if isinstance(requested, str) and requested not in DEVICE_MAP_STRATEGIES:
        return isinstance(placement.parse_device(requested), int)
    if spec.max_memory:
        return any(isinstance(placement.parse_device(d), int) for d in spec.max_memory)
    return torch.cuda.is_available()


_TEMP_DIRS: list[str] = []


@atexit.register
def _remove_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def _offload_folder(spec: ModelSpec) -> str:
    if spec.offload_folder:
        Path(spec.offload_folder).mkdir(parents=True, exist_ok=True)
        return spec.offload_folder
    path = tempfile.mkdtemp(prefix=f"tokenwire-offload-{spec.name}-")
    _TEMP_DIRS.append(path)
    return path


@dataclass
class _Planned:
    shape: placement.Shape
    plan: placement.Plan
    skip: tuple[str, ...]


def _plan(
    spec: ModelSpec,
    cls: Any,
    config: PretrainedConfig,
    tasks: tuple[Task, ...],
    q: qz.Quantization,
    max_input: int,
    window: int,
    budgets: dict[placement.Device, int] | None,
) -> _Planned:
    dtype = _plan_dtype(spec, config)
    try:
        meta = placement.meta_model(cls, config, dtype, spec.trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot build model {spec.name!r} with {getattr(cls, '__name__', cls)} to plan its placement: {exc}"
        ) from exc
    skip = qz.skip_modules(spec, q, meta, tasks) if q.is_bnb else ()
    reserve = placement.reservation(spec, config, tasks, meta, dtype.itemsize, max_input, window)
    shape = placement.Shape(meta, dtype, reserve, q, skip)
    plan = placement.plan_placement(shape, spec, budgets)
    placement.check_devices(spec, plan)
    if q.is_bnb:
        if plan.uses_disk and not plan.gpus:
            raise ModelLoadError(
                f"model {spec.name!r}, key 'device_map': a {q.scheme}-quantized model cannot be "
                f"offloaded to disk without a GPU (bitsandbytes keeps offloaded layers unquantized); "
                f'give it the memory it needs in max_memory, or set quantization = "none"'
            )
        computing = {"cuda"} if plan.offloaded else plan.device_types()
        qz.require_backend(spec, q, computing)
    return _Planned(shape, plan, skip)


def _load_kwargs(spec: ModelSpec, planned: _Planned, q: qz.Quantization, common: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(common, device_map=dict(planned.plan.device_map))
    if q.is_bnb and not q.from_checkpoint:
        kwargs["quantization_config"] = qz.bnb_config(q, planned.skip, fp32_offload=planned.plan.offloaded)
    if planned.plan.uses_disk:
        kwargs["offload_folder"] = _offload_folder(spec)
    return kwargs


def _measure(model: torch.nn.Module, hf_map: dict[str, Any]) -> dict[str, int]:
    """Bytes of every parameter and buffer, by the device the map gives its module."""
    keys = sorted(hf_map, key=len, reverse=True)
    out: dict[str, int] = {}
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in tensors:
        key = next((k for k in keys if k == "" or name == k or name.startswith(k + ".")), None)
        label = placement.device_label(placement.parse_device(hf_map[key])) if key is not None else str(tensor.device)
        out[label] = out.get(label, 0) + qz.tensor_bytes(tensor)
    return out


def _remaining(plan: placement.Plan) -> dict[placement.Device, int] | None:
    if not plan.budgets:
        return None
    return {
        placement.parse_device(label): budget - plan.weights.get(label, 0) - plan.reserved.get(label, 0)
        for label, budget in plan.budgets.items()
    }


def _classes_for(architecture: str, tasks: tuple[Task, ...], custom_head: bool = False) -> dict[Task, Any]:
    own = getattr(transformers, architecture, None)
    if own is not None and set(tasks) <= set(tasks_for_architecture(architecture)):
        return {task: own for task in tasks}
    return {
        task: transformers.AutoModel if custom_head and task in _HEAD_TASKS else getattr(transformers, name)
        for task, name in ((t, _AUTO_CLASS_OF_TASK[t]) for t in tasks)
    }


def _check_rerank(spec: ModelSpec, tasks: tuple[Task, ...], profile: EncoderProfile) -> None:
    if Task.RERANK in tasks and len(profile.labels) != 1:
        raise ModelLoadError(
            f"model {spec.name!r}, key 'tasks': rerank needs a classifier with one output "
            f"(a cross-encoder), this one has {len(profile.labels)}"
        )


def _attach_heads(spec: ModelSpec, modules: dict[Task, torch.nn.Module]) -> None:
    """Wrap the encoder serving ClassifyText / Rerank with the checkpoint's custom head."""
    directory = local_dir(spec)
    assert directory is not None
    headed: dict[int, torch.nn.Module] = {}
    for task, module in modules.items():
        if task in _HEAD_TASKS:
            if id(module) not in headed:
                try:
                    headed[id(module)] = attach_head(module, directory)
                except ModelLoadError as exc:
                    raise ModelLoadError(f"model {spec.name!r}: {exc}") from exc
            modules[task] = headed[id(module)]


def _load_tokenizer(spec: ModelSpec, tasks: tuple[Task, ...]) -> tuple[Any, Any | None]:
    kwargs = {"trust_remote_code": spec.trust_remote_code, "revision": spec.revision}
    if _PROCESSOR_TASKS & set(tasks):
        processor = transformers.AutoProcessor.from_pretrained(spec.path, **kwargs)  # type: ignore[no-untyped-call]
        return getattr(processor, "tokenizer", processor), processor
    return transformers.AutoTokenizer.from_pretrained(spec.path, **kwargs), None


def preflight(spec: ModelSpec) -> None:
    """The configuration checks of `load_model` without reading any weight: quantization
    backend, placement against max_memory, explicit device maps. `tokenwire serve` runs them
    for every model before opening its port and refuses to start on the first mistake (a model
    whose files cannot even be read is left to load time, where it is marked FAILED and the
    others serve). Raises ModelLoadError naming the model, the key and what to change."""
    try:
        config, architecture = read_architecture(spec)
        tasks = resolve_tasks(spec, architecture, config)
    except ModelLoadError:
        return
    if architecture == OPEN_CLIP:
        return
    window = _context_window(config)
    max_input = min(spec.max_input_tokens or min(window, DEFAULT_MAX_INPUT_TOKENS), window)
    q = qz.resolve(spec, config, _targets_gpu(spec))
    budgets: dict[placement.Device, int] | None = None
    for cls in dict.fromkeys(_classes_for(architecture, tasks, has_custom_head(spec)).values()):
        budgets = _remaining(_plan(spec, cls, config, tasks, q, max_input, window, budgets).plan)


def load_model(spec: ModelSpec) -> LoadedModel:
    """Plan, then load weights and tokenizer for one registry entry. Raises ModelLoadError."""
    config, architecture = read_architecture(spec)
    tasks = resolve_tasks(spec, architecture, config)
    if architecture == OPEN_CLIP:
        return _load_open_clip(spec, config, tasks)
    window = _context_window(config)
    profile = read_profile(spec, config, tasks)
    _check_rerank(spec, tasks, profile)
    # Unset: the model's window, capped so that the memory reserved for a full batch of the
    # longest prompts stays sane on long-context models (128k windows); raise it explicitly.
    # A sentence-transformers checkpoint's max_seq_length caps it too (the library cuts there).
    default_input = min(window, DEFAULT_MAX_INPUT_TOKENS, profile.max_seq_length or window)
    max_input = min(spec.max_input_tokens or default_input, window)
    q = qz.resolve(spec, config, _targets_gpu(spec))
    common: dict[str, Any] = {
        "dtype": _load_dtype(spec),
        "trust_remote_code": spec.trust_remote_code,
        "revision": spec.revision,
        # Pickled weights execute code on load: safetensors only, unless the config allows them.
        "use_safetensors": None if spec.allow_pickle_weights else True,
    }
    if spec.is_local and Task.GENERATE in tasks:
        generation_config = lenient_generation_config(spec.path, spec.name)
        if generation_config is not None:
            common["generation_config"] = generation_config

    modules: dict[Task, torch.nn.Module] = {}
    by_class: dict[Any, torch.nn.Module] = {}
    plans: list[_Planned] = []
    budgets: dict[placement.Device, int] | None = None
    custom_head = profile.head is not None
    for task, cls in _classes_for(architecture, tasks, custom_head).items():
        if cls not in by_class:
            planned = _plan(spec, cls, config, tasks, q, max_input, window, budgets)
            log.info(
                "model %s (%s): %s placement %s; reserved %s",
                spec.name,
                cls.__name__,
                planned.plan.strategy,
                planned.plan.device_map,
                planned.shape.reserve.describe(),
            )
            try:
                loaded = cls.from_pretrained(spec.path, **_load_kwargs(spec, planned, q, common)).eval()
            except Exception as exc:
                raise ModelLoadError(f"cannot load weights of model {spec.name!r} with {cls.__name__}: {exc}") from exc
            by_class[cls] = merge_adapter(loaded, spec)
            plans.append(planned)
            budgets = _remaining(planned.plan)
        modules[task] = by_class[cls]
    if custom_head:
        _attach_heads(spec, modules)
    tokenizer, processor = _load_tokenizer(spec, tasks)

    first = next(iter(by_class.values()))
    memory: dict[str, int] = {}
    reserved: dict[str, int] = {}
    for model, planned in zip(by_class.values(), plans, strict=True):
        hf_map = getattr(model, "hf_device_map", None) or {"": str(next(model.parameters()).device)}
        for label, nbytes in _measure(model, hf_map).items():
            memory[label] = memory.get(label, 0) + nbytes
        for label, nbytes in planned.plan.reserved.items():
            reserved[label] = reserved.get(label, 0) + nbytes
    hf_map = getattr(first, "hf_device_map", None) or {"": str(next(first.parameters()).device)}
    special_ids, special_texts = _special_tokens(tokenizer, first)
    return LoadedModel(
        spec=spec,
        tasks=tasks,
        architecture=architecture,
        config=config,
        tokenizer=tokenizer,
        processor=processor,
        modules=modules,
        max_total_tokens=window,
        max_input_tokens=max_input,
        dtype=str(first.dtype).removeprefix("torch."),
        device_map={k: placement.device_label(placement.parse_device(v)) for k, v in hf_map.items()},
        memory_bytes=sum(memory.values()),
        quantization=q.scheme,
        unquantized_modules=plans[0].skip,
        placement=plans[0].plan.strategy,
        memory_per_device=memory,
        reserved_per_device=reserved,
        reservation=plans[0].shape.reserve,
        vocab_size=len(tokenizer),
        special_token_ids=special_ids,
        special_tokens=special_texts,
        encoder=profile,
    )
