"""Where a model's modules go (GPUs, CPU, disk), planned before any weight is read, with room
left to serve.

A plan is made on a meta-device copy of the model (no memory, milliseconds) by accelerate's
`infer_auto_device_map`, with the model's `_no_split_modules` (a decoder layer is never split
across devices) and the sizes the weights will have once loaded: the target dtype, and
bitsandbytes' packed sizes for the layers it quantizes. The plan is then handed to
`from_pretrained` as an explicit device map, so what loads is what was planned.

Strategies (registry key `device_map`):
  omitted          the whole model on one device: the first GPU, else the CPU;
  "cpu"/"cuda:N"   the whole model on that device;
  "sequential"     fill GPU 0, then GPU 1, …, then the CPU, then disk (where max_memory allows);
  "balanced"/"auto"  the same order, with GPU loads (weights + reservation) equal to within one
                   layer: each GPU is filled up to the water level of what is left, which gives
                   accelerate per-GPU caps (found by bisection against accelerate itself);
  "balanced_low_0" as balanced, with GPU 0 holding only what the others cannot;
  { module = device, … }  an explicit table: every module must exist, every weight be covered.

Reservation — memory held back from the weights so that a model that loads does not run out of
memory on its first full batch of long requests. With
  B = max_batch_size, T_in = max_input_tokens, T = min(context window, T_in + max_new_tokens),
  e = bytes per element of the compute dtype, L = decoder layers, H = hidden size,
  I = intermediate size, q = heads × head_dim, kv = kv_heads × head_dim, V = vocabulary,
  W = widest prompt in one forward = min(T_in, prefill_chunk_tokens) (T_in when chunking is off
      or the model takes images, whose prompts are never chunked; a longer prompt is prefilled
      W tokens at a time),
  P = prefill tokens = min(B × W, max(max_batch_tokens, W)) (the scheduler's prefill token
      budget; one-shot tasks batch within max_batch_tokens the same way, with W = T_in),
the reservation is
  KV cache     2 × B × T × kv × e per decoder layer, on the device of that layer
               (`kv_cache_reserve` = a size replaces the total; 0 switches it off);
  activations  P × (2H + q + 2kv + 3I) × e + max(P × W, W × T_in) (the boolean attention mask
               of a batched prefill, or of a chunk that sees the whole prompt before it), on
               every device that computes (each GPU used; the CPU when no GPU is);
  logits       rows × V × (e + 4), on the device of the output layer (rows = B for generation,
               P for fill-mask, 0 otherwise; +4: the float32 copy for the sampler).
Layers offloaded to the CPU or disk run on the first GPU, so their KV cache is reserved there.
The KV and logits terms are attached to their modules as meta buffers, so accelerate moves them
with their layer; the activation term is taken off every compute device's budget first. It
assumes memory-efficient (SDPA / flash) attention: eager attention also materialises
B × heads × T_in² scores per layer.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import DEVICE_MAP_STRATEGIES, ModelSpec
from ..tasks import Task
from . import quantization as qz
from .load_error import ModelLoadError

log = logging.getLogger(__name__)

Device = int | str
"""accelerate's device keys: a GPU index, "cpu", "disk" (or "mps")."""
_FAKE = "_tokenwire_planned"  # meta buffer carrying planned bytes that are not weights
_OFFLOAD = ("cpu", "disk")
PLAN_ROUNDS = 8
"""Rounds of planning, each making room on the execution GPU for what the last one offloaded
(their KV cache, logits, full-precision copies); it settles in two or three."""


def parse_device(value: str | int) -> Device:
    """ "cuda" / "cuda:1" / "1" / 1 → GPU index; "cpu", "disk", "mps" stay strings."""
    if isinstance(value, int):
        return value
    text = str(value)
    if text == "cuda":
        return 0
    if text.startswith("cuda:"):
        return int(text.split(":", 1)[1])
    return int(text) if text.isdigit() else text


def device_label(device: Device) -> str:
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# --- the reservation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """Bytes kept free for serving (see the module docstring for the formula)."""

    batch: int = 0
    context: int = 0
    prefill_tokens: int = 0
    kv_per_layer: int = 0
    kv_layers: tuple[str, ...] = ()
    activations: int = 0
    logits: int = 0
    logits_module: str | None = None

    @property
    def kv_total(self) -> int:
        return self.kv_per_layer * len(self.kv_layers)

    def describe(self) -> str:
        return (
            f"{fmt_bytes(self.kv_total)} KV cache for {self.batch} rows × {self.context} tokens, "
            f"{fmt_bytes(self.activations)} activations per device, "
            f"{fmt_bytes(self.logits)} logits"
        )


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def decoder_layers(meta: torch.nn.Module, config: Any) -> tuple[str, ...]:
    """Names of the layers that hold a KV cache: the ModuleList of the language model whose
    length is the text config's layer count."""
    count = getattr(_text_config(config), "num_hidden_layers", None)
    getter = getattr(meta, "get_decoder", None)
    decoder = getter() if callable(getter) else meta
    prefix = next((n for n, m in meta.named_modules() if m is decoder), "")
    for name, module in meta.named_modules():
        inside = not prefix or name == prefix or name.startswith(prefix + ".")
        if inside and isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return tuple(f"{name}.{i}" for i in range(len(module)))
    return ()


def _output_module(meta: torch.nn.Module) -> str | None:
    getter = getattr(meta, "get_output_embeddings", None)
    out = getter() if callable(getter) else None
    return next((n for n, m in meta.named_modules() if m is out), None) if out is not None else None


def reservation(
    spec: ModelSpec,
    config: Any,
    tasks: tuple[Task, ...],
    meta: torch.nn.Module,
    element_size: int,
    max_input_tokens: int,
    window: int,
) -> Reservation:
    text = _text_config(config)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    heads = int(getattr(text, "num_attention_heads", 0) or 1)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    inter = int(getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * hidden)
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    e, batch = element_size, spec.max_batch_size
    generative = bool({Task.GENERATE, Task.MULTIMODAL_CHAT} & set(tasks))
    if generative:
        context = min(window, max_input_tokens + spec.max_new_tokens)
        # Prompts with images are never chunked (the vision tower needs them whole).
        chunked = spec.prefill_chunk_tokens and Task.MULTIMODAL_CHAT not in tasks
        widest = min(max_input_tokens, spec.prefill_chunk_tokens) if chunked else max_input_tokens
        prefill = min(batch * widest, max(spec.max_batch_tokens, widest))
        mask = max(prefill * widest, widest * max_input_tokens)
        layers = decoder_layers(meta, config)
        kv_total = (
            2 * batch * context * kv_heads * head_dim * e * len(layers)
            if spec.kv_cache_reserve is None
            else spec.kv_cache_reserve
        )
        rows = batch
    else:
        context = max_input_tokens
        prefill = min(batch * max_input_tokens, spec.max_batch_tokens)
        mask = prefill * max_input_tokens
        layers, kv_total = (), 0
        rows = prefill if Task.FILL_MASK in tasks else 0
    activations = prefill * (2 * hidden + heads * head_dim + 2 * kv_heads * head_dim + 3 * inter) * e + mask
    logits = rows * vocab * (e + 4)
    out = _output_module(meta)
    if out is None:  # nowhere to attach it: every compute device keeps room for it
        activations, logits = activations + logits, 0
    return Reservation(
        batch=batch,
        context=context,
        prefill_tokens=prefill,
        kv_per_layer=kv_total // max(len(layers), 1),
        kv_layers=layers,
        activations=activations,
        logits=logits,
        logits_module=out,
    )


# --- the model's planning sizes -------------------------------------------------------------


def meta_model(cls: Any, config: Any, dtype: torch.dtype, trust_remote_code: bool = False) -> torch.nn.Module:
    """An empty (meta-device) instance of `cls`, weights tied as they will be once loaded."""
    import copy

    from accelerate import init_empty_weights
    from transformers import PreTrainedModel

    config = copy.deepcopy(config)
    model: torch.nn.Module
    with init_empty_weights(include_buffers=True):
        if isinstance(cls, type) and issubclass(cls, PreTrainedModel):
            model = cls._from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
        else:  # an Auto class
            model = cls.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    with contextlib.suppress(Exception):
        model.tie_weights()  # type: ignore[operator]
    return model


class Shape:
    """A meta model with the sizes accelerate should plan with: weights in `dtype`, bitsandbytes'
    sizes for the layers it will quantize, and the reservation as meta buffers on its modules."""

    def __init__(
        self,
        meta: torch.nn.Module,
        dtype: torch.dtype,
        reserve: Reservation,
        q: qz.Quantization | None = None,
        skip: tuple[str, ...] = (),
    ) -> None:
        self.meta, self.dtype, self.reserve = meta, dtype, reserve
        self.q = q or qz.Quantization()
        self.skip = skip
        self.no_split = sorted(getattr(meta, "_no_split_modules", None) or [])
        self.quantized = qz.quantized_linears(meta, skip) if self.q.is_bnb else {}
        self.full_precision: set[str] = set()
        """Quantized layers that stay full precision because they are offloaded beside GPUs."""
        self.reserved_at: dict[str, int] = {}
        self.refresh()

    def refresh(self) -> None:
        from accelerate.utils import CustomDtype, compute_module_sizes

        weight_extra: dict[str, int] = {}
        self.special: dict[str, Any] = {}
        packed = CustomDtype.INT4 if qz.element_bytes(self.q) < 1 else torch.int8
        for name, module in self.quantized.items():
            if name not in self.full_precision:
                self.special[f"{name}.weight"] = packed
                weight = module.weight
                assert isinstance(weight, torch.Tensor)
                weight_extra[name] = qz.constant_bytes(self.q, weight)
        reserved: dict[str, int] = {}
        for layer in self.reserve.kv_layers:
            host = self._host(layer)
            reserved[host] = reserved.get(host, 0) + self.reserve.kv_per_layer
        if self.reserve.logits_module and self.reserve.logits:
            host = self._host(self.reserve.logits_module)
            reserved[host] = reserved.get(host, 0) + self.reserve.logits
        self.reserved_at = reserved
        for name in set(weight_extra) | set(reserved) | self._fakes():
            nbytes = weight_extra.get(name, 0) + reserved.get(name, 0)
            self.meta.get_submodule(name).register_buffer(
                _FAKE, torch.empty(nbytes, dtype=torch.uint8, device="meta"), persistent=False
            )
        self.sizes: dict[str, int] = dict(
            compute_module_sizes(self.meta, dtype=self.dtype, special_dtypes=self.special)
        )

    def _fakes(self) -> set[str]:
        return {n.rsplit(".", 1)[0] if "." in n else "" for n, _ in self.meta.named_buffers() if n.endswith(_FAKE)}

    def _host(self, name: str) -> str:
        """Where planned bytes of module `name` hang: the module itself when accelerate never
        splits it (no-split class or leaf), else its first leaf with weights (accelerate drops
        the buffers of a module it splits)."""
        module = self.meta.get_submodule(name)
        if type(module).__name__ in self.no_split or not list(module.children()):
            return name
        for sub, child in module.named_modules():
            if sub and not list(child.children()) and list(child.parameters(recurse=False)):
                return f"{name}.{sub}"
        return name

    def reserved_under(self, key: str) -> int:
        return sum(v for k, v in self.reserved_at.items() if _under(k, key))

    def kv_under(self, key: str) -> int:
        return self.reserve.kv_per_layer * sum(1 for layer in self.reserve.kv_layers if _under(layer, key))

    def weights_under(self, key: str) -> int:
        return self.sizes.get(key, 0) - self.reserved_under(key)

    def names(self) -> set[str]:
        named = {n for n, _ in self.meta.named_modules()} | {n for n, _ in self.meta.named_parameters()}
        return named | {n for n, _ in self.meta.named_buffers() if not n.endswith(_FAKE)}

    def units(self) -> list[tuple[str, int]]:
        """The pieces accelerate places, in its order: parameters, then children, descending
        until a no-split module or a leaf."""
        out: list[str] = []

        def visit(prefix: str, module: torch.nn.Module) -> None:
            out.extend(prefix + n for n, _ in module.named_parameters(recurse=False))
            for n, child in module.named_children():
                if not list(child.children()) or type(child).__name__ in self.no_split:
                    out.append(prefix + n)
                else:
                    visit(prefix + n + ".", child)

        visit("", self.meta)
        return [(n, self.sizes.get(n, 0)) for n in out]


def _under(name: str, key: str) -> bool:
    return key == "" or name == key or name.startswith(key + ".")


# --- plans ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """A device map for from_pretrained, with what it puts where."""

    strategy: str
    device_map: dict[str, Device]
    weights: dict[str, int] = field(default_factory=dict)
    """Device label → planned weight bytes."""
    reserved: dict[str, int] = field(default_factory=dict)
    """Device label → bytes reserved for KV cache, activations and logits."""
    budgets: dict[str, int] = field(default_factory=dict)
    """Device label → budget the plan was checked against (empty: not checked)."""

    @property
    def devices(self) -> set[Device]:
        return set(self.device_map.values())

    @property
    def gpus(self) -> list[int]:
        return sorted(d for d in self.devices if isinstance(d, int))

    @property
    def offloaded(self) -> bool:
        """Some modules on CPU or disk while others compute on a GPU."""
        return bool(self.gpus) and any(d in _OFFLOAD for d in self.devices)

    @property
    def uses_disk(self) -> bool:
        return "disk" in self.devices

    def device_types(self) -> set[str]:
        return {"cuda" if isinstance(d, int) else str(d) for d in self.devices}


@contextlib.contextmanager
def _quiet_accelerate() -> Iterator[None]:
    """Planning for GPUs this process cannot see (fake budgets) makes accelerate warn on each
    call; the search below makes dozens."""
    logger = logging.getLogger("accelerate.utils.modeling")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # accelerate counts the reservation's meta buffers as "buffers of offloaded layers"
            # and warns about them; only here, not for the whole process.
            warnings.filterwarnings(
                "ignore", message=r"Current model requires \d+ bytes of buffer for offloaded layers"
            )
            yield
    finally:
        logger.setLevel(level)


def _infer(shape: Shape, max_memory: dict[Device, int]) -> dict[str, Device]:
    from accelerate import infer_auto_device_map

    return dict(
        infer_auto_device_map(
            shape.meta,
            max_memory=dict(max_memory),
            no_split_module_classes=shape.no_split,
            dtype=shape.dtype,
            special_dtypes=shape.special,
        )
    )


def _loads(shape: Shape, device_map: dict[str, Device]) -> dict[Device, int]:
    loads: dict[Device, int] = {}
    for key, device in device_map.items():
        loads[device] = loads.get(device, 0) + shape.sizes.get(key, 0)
    return loads


def _water_target(remaining: int, caps: list[int], low_first: bool) -> int:
    """What the first of `caps` should take so that all of them end up as level as capacities
    allow (or, with `low_first`, only what the others cannot take)."""
    if low_first:
        return max(0, remaining - sum(caps[1:]))
    left, ordered = remaining, sorted(caps)
    for k, cap in enumerate(ordered):
        if cap * (len(ordered) - k) >= left:
            return min(caps[0], left // (len(ordered) - k))
        left -= cap
    return caps[0]


def _balanced(shape: Shape, budgets: dict[Device, int], gpus: list[int], low_zero: bool) -> dict[str, Device]:
    units = shape.units()
    total = sum(s for _, s in units)
    biggest = max((s for _, s in units), default=0)
    caps = dict(budgets)
    placed = 0
    for i, gpu in enumerate(gpus[:-1]):
        target = _water_target(total - placed, [budgets[g] for g in gpus[i:]], low_zero and i == 0)
        # Loads GPU `gpu` can get: sums of the next units in order; take the one nearest the target.
        sums, acc, start = [0], 0, 0
        for k, (_, size) in enumerate(units):
            acc += size
            if acc <= placed:
                start = k + 1
        acc = 0
        for _, size in units[start:]:
            acc += size
            sums.append(acc)
        want = min((s for s in sums if s <= budgets[gpu]), key=lambda s: (abs(s - target), s), default=0)
        lo, hi = want, min(budgets[gpu], want + biggest + 1)

        def load(cap: int, gpu: int = gpu) -> int:  # called within this iteration only
            return _loads(shape, _infer(shape, {**caps, gpu: cap})).get(gpu, 0)

        if load(hi) < want:
            caps[gpu] = budgets[gpu]
        else:
            while lo < hi:  # the smallest cap that still gives `want` (accelerate keeps room on GPU 0)
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if load(mid) < want else (lo, mid)
            caps[gpu] = lo
        placed += _loads(shape, _infer(shape, caps)).get(gpu, 0)
    return _infer(shape, caps)


def _offloaded_bytes(shape: Shape, device_map: dict[str, Device]) -> int:
    return sum(v for d, v in _loads(shape, device_map).items() if d in _OFFLOAD)


def _execution_gpu(device_map: dict[str, Device]) -> int | None:
    """Where accelerate runs offloaded layers: the first GPU in the map's order."""
    return next((d for d in device_map.values() if isinstance(d, int)), None)


def plan_strategy(shape: Shape, strategy: str, budgets: dict[Device, int]) -> dict[str, Device]:
    """A device map for a named strategy within `budgets` (GPU ids may be fake)."""
    gpus = sorted(d for d, v in budgets.items() if isinstance(d, int) and v > 0)
    base = dict(budgets)
    compute: list[Device] = list(gpus) or (["cpu"] if "cpu" in base else [])
    for device in compute:
        base[device] = max(0, base[device] - shape.reserve.activations)
    extra: dict[int, int] = {}
    with _quiet_accelerate():
        for _ in range(PLAN_ROUNDS):
            caps = {d: max(0, v - extra.get(d, 0)) if isinstance(d, int) else v for d, v in base.items()}
            device_map = _infer(shape, caps)
            if strategy != "sequential" and len(gpus) > 1:
                balanced = _balanced(shape, caps, gpus, strategy == "balanced_low_0")
                if _offloaded_bytes(shape, balanced) <= _offloaded_bytes(shape, device_map):
                    device_map = balanced
            execution = _execution_gpu(device_map)
            if execution is None:
                break
            off = [k for k, d in device_map.items() if d in _OFFLOAD]
            # Offloaded layers run on the execution GPU: their KV cache and logits live there.
            need = sum(shape.kv_under(k) for k in off)
            if shape.reserve.logits_module and any(_under(shape.reserve.logits_module, k) for k in off):
                need += shape.reserve.logits
            # Quantized layers offloaded beside GPUs load in full precision (bitsandbytes).
            newly = {n for n in shape.quantized if n not in shape.full_precision and any(_under(n, k) for k in off)}
            if newly:
                shape.full_precision |= newly
                shape.refresh()
            if need <= extra.get(execution, 0) and not newly:
                break
            extra[execution] = max(extra.get(execution, 0), need)
    return device_map


def check_explicit(shape: Shape, spec: ModelSpec, table: dict[str, str]) -> dict[str, Device]:
    """An explicit module → device table, normalised; unknown or missing modules are errors."""
    names = shape.names()
    for key in table:
        if key and key not in names:
            modules = sorted(n for n, _ in shape.meta.named_modules() if n)
            hint = difflib.get_close_matches(key, modules, n=1)
            near = f" (did you mean {hint[0]!r}?)" if hint else ""
            top = ", ".join(n for n, _ in shape.meta.named_children())
            raise ModelLoadError(
                f"model {spec.name!r}, key 'device_map': unknown module {key!r}{near}; module "
                f"names are as in named_modules() of {type(shape.meta).__name__} (top level: {top})"
            )
    weights = [n for n, _ in shape.meta.named_parameters()]
    missing = [n for n in weights if not any(_under(n, k) for k in table)]
    if missing:
        owners = _covering_modules(shape.meta, set(missing))
        raise ModelLoadError(
            f"model {spec.name!r}, key 'device_map': no device for {len(missing)} weight(s) of "
            f"{', '.join(repr(o) for o in owners[:4])}{' …' if len(owners) > 4 else ''}; map these "
            f"modules (or a parent) too"
        )
    return {k: parse_device(v) for k, v in table.items()}


def _covering_modules(meta: torch.nn.Module, missing: set[str]) -> list[str]:
    """The largest modules all of whose weights are in `missing` (what to add to the map)."""
    out: list[str] = []
    for name, module in meta.named_modules():
        params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters()]
        if name and params and set(params) <= missing and not any(_under(name, o) for o in out):
            out.append(name)
    return out


def detected_budgets() -> dict[Device, int]:
    """Free memory of each visible GPU and 90% of the available RAM (accelerate's default)."""
    import psutil

    budgets: dict[Device, int] = {}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            budgets[i] = int(torch.cuda.mem_get_info(i)[0])
    budgets["cpu"] = int(psutil.virtual_memory().available * 0.9)
    return budgets


def _summarise(shape: Shape, plan: Plan) -> None:
    gpus = plan.gpus
    execution = gpus[0] if gpus else "cpu"
    for key, device in plan.device_map.items():
        label = device_label(device)
        plan.weights[label] = plan.weights.get(label, 0) + shape.weights_under(key)
        reserved_here = shape.reserved_under(key)
        if device == "disk" or (device == "cpu" and gpus):
            label = device_label(execution)  # offloaded layers compute on the first GPU (or CPU)
        if reserved_here:
            plan.reserved[label] = plan.reserved.get(label, 0) + reserved_here
    compute: list[Device] = list(gpus) or ["cpu"]
    for device in compute:
        label = device_label(device)
        plan.reserved[label] = plan.reserved.get(label, 0) + shape.reserve.activations


def plan_placement(shape: Shape, spec: ModelSpec, budgets: dict[Device, int] | None = None) -> Plan:
    """The plan for `spec.device_map` within `spec.max_memory` (or `budgets`, else what the
    machine has free). Raises ModelLoadError when the model does not fit."""
    requested = spec.device_map
    user_budgets = {parse_device(k): v for k, v in (spec.max_memory or {}).items()}
    if requested is None or (isinstance(requested, str) and requested not in DEVICE_MAP_STRATEGIES):
        device = parse_device(requested) if requested else (0 if torch.cuda.is_available() else "cpu")
        plan = Plan(device_label(device), {"": device})
    elif isinstance(requested, str):
        budgets = budgets or user_budgets or detected_budgets()
        plan = Plan(requested, plan_strategy(shape, requested, budgets))
        if any(isinstance(d, int) and v > 0 for d, v in budgets.items()) and not plan.gpus:
            _summarise(shape, plan)
            raise ModelLoadError(
                _no_fit(spec, shape, plan, "no GPU has room for a single layer next to the reservation")
            )
        spilled = _offloaded_bytes(shape, {k: d for k, d in plan.device_map.items() if d == "disk"})
        if plan.uses_disk and "disk" not in (budgets if spec.max_memory is None else user_budgets):
            _summarise(shape, plan)
            raise ModelLoadError(
                _no_fit(
                    spec, shape, plan, f"{fmt_bytes(spilled)} of it would go to disk, which max_memory does not allow"
                )
            )
    else:
        plan = Plan("explicit", check_explicit(shape, spec, dict(requested)))
    _summarise(shape, plan)
    checked = budgets or user_budgets
    if not checked and plan.gpus and torch.cuda.is_available():
        checked = {g: int(torch.cuda.mem_get_info(g)[0]) for g in plan.gpus if g < torch.cuda.device_count()}
    for device, budget in checked.items():
        label = device_label(device)
        if label in plan.weights or label in plan.reserved:
            plan.budgets[label] = budget
            need = plan.weights.get(label, 0) + plan.reserved.get(label, 0)
            if device != "disk" and need > budget:
                raise ModelLoadError(
                    _no_fit(spec, shape, plan, f"{label} needs {fmt_bytes(need)} but has {fmt_bytes(budget)}")
                )
    return plan


def _no_fit(spec: ModelSpec, shape: Shape, plan: Plan, what: str) -> str:
    key = "max_memory" if spec.max_memory else "device_map"
    weights = sum(v for k, v in plan.weights.items())
    fixes = ["raise max_memory (or add cpu / disk to it)"]
    if spec.device_map not in DEVICE_MAP_STRATEGIES:
        fixes.append('spread it over devices with device_map = "auto"')
    if not shape.q.active:
        fixes.append('set quantization = "nf4" or "int8"')
    fixes.append("lower max_batch_size / max_input_tokens / max_new_tokens (or set kv_cache_reserve)")
    return (
        f"model {spec.name!r}, key {key!r}: the model does not fit ({plan.strategy}): {what}. "
        f"It needs {fmt_bytes(weights)} of weights plus a reservation of "
        f"{shape.reserve.describe()}; {', '.join(fixes[:-1])}, or {fixes[-1]}"
    )


def check_devices(spec: ModelSpec, plan: Plan) -> None:
    """Every GPU in the plan exists on this machine."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    absent = [g for g in plan.gpus if g >= count]
    if absent:
        key = "device_map" if spec.device_map is not None and not spec.max_memory else "max_memory"
        raise ModelLoadError(
            f"model {spec.name!r}, key {key!r}: the plan uses {', '.join(device_label(g) for g in absent)} "
            f"but this machine has {count} GPU(s); use devices that exist (cpu, cuda:0 … "
            f"cuda:{max(count - 1, 0)})"
        )
