"""Whether a model decodes on the KV pool, and the pool it gets: found once, at load.

The pool path needs one causal self-attention module per decoder layer that calls transformers'
attention interface, every layer's weights resident on one device (no CPU/disk offload: those
layers compute elsewhere than they live), and a KV reservation. Then a probe compares it with
the model's own forward on two short prompts and one decode step; any difference, error or
layer the pool did not see sends the model down the fallback path (DynamicCache), with the
reason reported in GetModelInfo. Checking behaviour rather than version strings keeps this
right on the GPU machine's older transformers and on architectures nobody listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..models.loader import LoadedModel
from ..models.placement import decoder_layers
from . import attention, decode_graphs
from .kv_pool import KVPool, PoolShape
from .logits_check import relative_error, tolerance
from .pool_runner import PoolRunner

log = logging.getLogger(__name__)

PROBE_PROMPTS = ([3, 5, 7, 11, 13], [17, 19, 23])
"""Two prompts of different lengths (token ids every vocabulary has)."""


MIN_SLOT_TOKENS = 16
"""A smaller KV row is no use (and the probe's prompts would not fit it)."""


class NoPool(Exception):
    """Why this model cannot decode on the pool."""


@dataclass(frozen=True)
class PoolChoice:
    runner: PoolRunner | None
    reason: str
    """Why `runner` is None; empty otherwise."""
    graphs_reason: str = ""
    """Why the runner decodes without static-shape steps (CUDA graphs), when it could have."""


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _attention_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    names = decoder_layers(module, module.config)
    if not names:
        raise NoPool("no decoder layer list found")
    found = []
    for name in names:
        layer = module.get_submodule(name)
        own = [m for m in layer.modules() if m is not layer and getattr(m, "is_causal", None) is True]
        if len(own) != 1:
            raise NoPool(f"decoder layer {name} has {len(own)} causal self-attention modules, not one")
        if getattr(layer, "crossattention", None) is not None:
            raise NoPool("decoder layers with cross-attention (an encoder-decoder cache)")
        found.append(own[0])
    return found


def _layer_device(attn: torch.nn.Module) -> torch.device:
    if getattr(attn, "_hf_hook", None) is not None and getattr(attn._hf_hook, "offload", False):
        raise NoPool("weights offloaded to the CPU or disk")
    devices = {p.device for p in attn.parameters()}
    if len(devices) != 1:
        raise NoPool(f"attention weights on {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type == "meta":
        raise NoPool("weights offloaded to disk")
    return device


def _offloaded(model: LoadedModel) -> bool:
    places = set(model.device_map.values())
    return "disk" in places or ("cpu" in places and any(p.startswith("cuda") for p in places))


def pool_shape(model: LoadedModel, layers: int, dtype: torch.dtype) -> PoolShape:
    """Slots and tokens per slot from the placement plan's KV reservation: the reservation
    becomes the allocation. A reservation smaller than max_batch_size full-context rows gets
    fewer slots; smaller than one row, one shorter slot."""
    text = _text_config(model.config)
    heads = int(getattr(text, "num_attention_heads", 0) or 1)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or int(getattr(text, "hidden_size", 0)) // heads)
    reserve = model.reservation
    if reserve is None or reserve.context <= 0:
        raise NoPool("no KV reservation was planned for this model")
    per_token = PoolShape(layers, 1, 1, kv_heads, head_dim, dtype).bytes_per_token
    budget = reserve.kv_per_layer  # bytes per layer (kv_cache_reserve = a size spreads it over the layers)
    if budget < per_token * 2:
        raise NoPool("kv_cache_reserve = 0 leaves no room for a KV pool")
    slots = min(model.spec.max_batch_size, budget // (reserve.context * per_token))
    tokens = reserve.context
    if slots < 1:
        slots, tokens = 1, budget // per_token
    if tokens < MIN_SLOT_TOKENS:
        raise NoPool(f"kv_cache_reserve holds {tokens} tokens per row, fewer than {MIN_SLOT_TOKENS}")
    return PoolShape(layers, slots, tokens, kv_heads, head_dim, dtype)


def open_pool(model: LoadedModel, module: Any, *, static_decode: bool | None = None) -> PoolChoice:
    """The pool path for `module` (the model's generating module), or why not. Decode steps
    run as CUDA graphs per batch bucket where the model sits on one GPU and its registry
    entry allows them (`cuda_graphs`); `static_decode=True` runs the same static-shape steps
    eagerly on any device (what the CPU tests check)."""
    original = getattr(module.config, "_attn_implementation", None) or "sdpa"
    try:
        if _offloaded(model):
            raise NoPool("weights offloaded to the CPU or disk")
        attns = _attention_modules(module)
        devices = [_layer_device(a) for a in attns]
        on_one_gpu = len(set(devices)) == 1 and devices[0].type == "cuda"
        static = static_decode if static_decode is not None else (model.spec.cuda_graphs and on_one_gpu)
        embed = module.get_input_embeddings()
        dtype = embed.weight.dtype if embed is not None and embed.weight.dtype.is_floating_point else torch.float32
        pool = KVPool(pool_shape(model, len(attns), dtype), devices, scratch=static)
        runner = PoolRunner(module, pool, {id(a): i for i, a in enumerate(attns)})
        attention.register()
        module.set_attn_implementation(attention.NAME)
        try:
            _probe(module, runner)
        except Exception:
            module.set_attn_implementation(original)
            raise
        graphs_reason = "" if static else _why_no_graphs(model, on_one_gpu)
        if static:
            graphs_reason = _add_static_steps(model, runner, capture=on_one_gpu and static_decode is None)
        return PoolChoice(runner, "", graphs_reason)
    except (torch.OutOfMemoryError, MemoryError):
        raise  # the reservation did not fit after all: the model fails to load, it does not limp on
    except NoPool as exc:
        return PoolChoice(None, str(exc))
    except attention.PoolUnsupported as exc:
        return PoolChoice(None, f"the pool's attention does not implement {exc}")
    except Exception as exc:  # an architecture the pool path does not fit: serve it the old way
        log.warning("model %s: KV pool probe failed, decoding with DynamicCache", model.spec.name, exc_info=True)
        return PoolChoice(None, f"probe failed: {type(exc).__name__}: {exc}")


def _why_no_graphs(model: LoadedModel, on_one_gpu: bool) -> str:
    if not model.spec.cuda_graphs:
        return "cuda_graphs = false"
    return "not on one GPU" if not on_one_gpu else ""


def _add_static_steps(model: LoadedModel, runner: PoolRunner, capture: bool) -> str:
    """Give `runner` its static decode steps (captured on a GPU); why not, if they fail."""
    try:
        # The layers' own device (always indexed, "cuda:0"): the attention looks its step's
        # metadata up by the device its tensors are on.
        runner.graphs = decode_graphs.build(
            runner.model,
            runner.pool,
            runner.layer_of,
            runner.pool.devices[0],
            runner.pool.shape.slots,
            runner.logits_to_keep,
            capture,
        )
        return ""
    except (torch.OutOfMemoryError, MemoryError):
        raise
    except Exception as exc:  # a kernel that cannot be captured (bitsandbytes, say): eager steps
        log.warning("model %s: decode steps stay eager, CUDA graph capture failed", model.spec.name, exc_info=True)
        runner.graphs = None
        return f"capture failed: {type(exc).__name__}: {exc}"


@torch.inference_mode()
def _probe(module: Any, runner: PoolRunner) -> None:
    """Pool prefill + one decode step against the model's own forward, uncached."""
    prompts = [list(p) for p in PROBE_PROMPTS][: runner.pool.shape.slots]
    seen: set[int] = set()
    runner.layer_of = _Recording(runner.layer_of, seen)
    try:
        first = runner.prefill(prompts).clone()  # on CUDA: a view of the reused pinned buffer
        nxt = [int(t) for t in first.argmax(dim=-1)]
        second = runner.decode(nxt).clone()
    finally:
        runner.layer_of = dict(runner.layer_of)
        runner.reset()
    if len(seen) != runner.pool.shape.layers:
        raise NoPool(f"the pool's attention saw {len(seen)} of {runner.pool.shape.layers} layers")
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt + [nxt[i]]], device=runner.device)
        ref = module(input_ids=ids, use_cache=False).logits[0].float().cpu()
        for got, want in ((first[i], ref[-2]), (second[i], ref[-1])):
            err = relative_error(got, want)
            if err > tolerance(runner.pool.shape.dtype):
                raise NoPool(f"probe logits differ from the model's own forward (relative error {err:.2e})")


class _Recording(dict[int, int]):
    """layer_of that records which layers were looked up (the probe's coverage check)."""

    def __init__(self, inner: dict[int, int], seen: set[int]) -> None:
        super().__init__(inner)
        self._seen = seen

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        value = super().get(key, default)
        if value is not None:
            self._seen.add(value)
        return value
