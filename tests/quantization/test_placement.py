"""Placement plans on meta-device models with fake GPU budgets (no GPU needed): accelerate's
planner with the model's no-split classes, balanced loads, the serving reservation honoured, and
the errors that stop a plan that cannot work."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tokenwire.config import ModelSpec
from tokenwire.models import placement as pl
from tokenwire.models import quantization as qz
from tokenwire.models.load_error import ModelLoadError
from tokenwire.tasks import Task

GiB = 2**30
LAYERS = 16
# Llama-3.2-1B's shape (tied embeddings, GQA 32/8 heads): ~2.5 GB in bfloat16.
CONFIG = LlamaConfig(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=LAYERS,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    max_position_embeddings=131072,
    tie_word_embeddings=True,
)
_LAYER = re.compile(r"^model\.layers\.\d+$")


def spec(device_map: object = "balanced", max_memory: Mapping[object, int] | None = None, **kw: object) -> ModelSpec:
    values: dict[str, object] = {"max_batch_size": 8, "max_input_tokens": 1024, "max_new_tokens": 1024, **kw}
    budgets = {str(k): v for k, v in (max_memory or {}).items()} or None
    return ModelSpec(name="big", path="/nowhere", device_map=device_map, max_memory=budgets, **values)  # type: ignore[arg-type]


def shape_for(s: ModelSpec, config: LlamaConfig = CONFIG) -> pl.Shape:
    meta = pl.meta_model(LlamaForCausalLM, config, torch.bfloat16)
    q = qz.resolve(s, config, on_gpu=True)
    skip = qz.skip_modules(s, q, meta, (Task.GENERATE,)) if q.is_bnb else ()
    reserve = pl.reservation(
        s, config, (Task.GENERATE,), meta, 2, s.max_input_tokens or 1024, config.max_position_embeddings
    )
    return pl.Shape(meta, torch.bfloat16, reserve, q, skip)


def loads(plan: pl.Plan) -> dict[str, int]:
    return {d: plan.weights.get(d, 0) + plan.reserved.get(d, 0) for d in set(plan.weights) | set(plan.reserved)}


def layer_size(shape: pl.Shape) -> int:
    """One decoder layer as planned: its weights and its KV cache."""
    return max(shape.sizes[f"model.layers.{i}"] for i in range(LAYERS))


def check_plan(shape: pl.Shape, plan: pl.Plan, budgets: Mapping[object, int]) -> None:
    # Every decoder layer whole on one device: no key inside a layer.
    assert not [k for k in plan.device_map if k.startswith("model.layers.") and not _LAYER.match(k)]
    placed = {k for k in plan.device_map if _LAYER.match(k)}
    assert placed == {f"model.layers.{i}" for i in range(LAYERS)} or "model.layers" in plan.device_map
    # Reservation honoured: weights + KV of its layers + activations (+ logits) within each budget.
    for device, budget in budgets.items():
        label = pl.device_label(pl.parse_device(str(device)))
        assert loads(plan).get(label, 0) <= budget, (label, loads(plan), budget)
    for gpu in plan.gpus:
        label = pl.device_label(gpu)
        kv_here = sum(shape.kv_under(k) for k, d in plan.device_map.items() if d == gpu)
        assert plan.reserved[label] >= kv_here + shape.reserve.activations


def test_reservation_formula() -> None:
    s = spec(max_batch_size=8, max_input_tokens=1024, max_new_tokens=1024)
    shape = shape_for(s)
    r = shape.reserve
    assert r.batch == 8 and r.context == 2048 and r.prefill_tokens == 8 * 1024
    assert r.kv_layers == tuple(f"model.layers.{i}" for i in range(LAYERS))
    assert r.kv_per_layer == 2 * 8 * 2048 * (8 * 64) * 2  # K and V, kv_heads × head_dim, bf16
    per_token = 2 * 2048 + 32 * 64 + 2 * 8 * 64 + 3 * 8192
    assert r.activations == 8 * 1024 * per_token * 2 + 8 * 1024 * 1024
    assert r.logits == 8 * 128256 * (2 + 4) and r.logits_module == "lm_head"
    # The context is capped by the model's window; kv_cache_reserve replaces the KV total.
    assert (
        shape_for(spec(max_input_tokens=1024, max_new_tokens=10**6)).reserve.context == CONFIG.max_position_embeddings
    )
    assert shape_for(spec(kv_cache_reserve=LAYERS * 1000)).reserve.kv_per_layer == 1000


def test_chunked_prefill_bounds_the_activation_term() -> None:
    per_token = (2 * 2048 + 32 * 64 + 2 * 8 * 64 + 3 * 8192) * 2
    # 32 × 32k-token prompts: without chunking a whole prompt (and its 32k × 32k mask) is one forward
    whole = shape_for(
        spec(max_batch_size=32, max_input_tokens=32768, max_new_tokens=16, prefill_chunk_tokens=0)
    ).reserve
    assert whole.prefill_tokens == 32768 and whole.activations == 32768 * per_token + 32768 * 32768
    # in 2048-token chunks: the prefill budget (16384) bounds the tokens; a chunk's mask spans the prompt
    chunked = shape_for(spec(max_batch_size=32, max_input_tokens=32768, max_new_tokens=16)).reserve
    assert chunked.prefill_tokens == 16384
    assert chunked.activations == 16384 * per_token + max(16384 * 2048, 2048 * 32768)
    assert chunked.activations < whole.activations / 2
    # an image-text chat model's prompts are never chunked: reserved whole even so
    s = spec(max_batch_size=32, max_input_tokens=32768, max_new_tokens=16)
    meta = pl.meta_model(LlamaForCausalLM, CONFIG, torch.bfloat16)
    chat = pl.reservation(s, CONFIG, (Task.MULTIMODAL_CHAT,), meta, 2, 32768, CONFIG.max_position_embeddings)
    assert chat.prefill_tokens == whole.prefill_tokens and chat.activations == whole.activations


@pytest.mark.parametrize("gpus", [2, 4])
@pytest.mark.parametrize("strategy", ["balanced", "auto"])
def test_balanced_over_fake_gpus(gpus: int, strategy: str) -> None:
    budgets = {i: 3 * GiB for i in range(gpus)} | {"cpu": 64 * GiB}
    s = spec(strategy, budgets)
    shape = shape_for(s)
    plan = pl.plan_placement(shape, s)
    check_plan(shape, plan, budgets)
    gpu_loads = [loads(plan)[pl.device_label(g)] for g in range(gpus)]
    assert plan.gpus == list(range(gpus)) and "cpu" not in plan.devices
    assert max(gpu_loads) - min(gpu_loads) <= layer_size(shape), gpu_loads


@pytest.mark.parametrize("gpus", [2, 4])
def test_sequential_fills_in_order_and_low_0_spares_gpu_0(gpus: int) -> None:
    budgets = {i: 3 * GiB for i in range(gpus)} | {"cpu": 64 * GiB}
    shape = shape_for(spec("sequential", budgets))
    sequential = pl.plan_placement(shape, spec("sequential", budgets))
    check_plan(shape, sequential, budgets)
    order = [d for d in sequential.device_map.values()]
    assert order == sorted(order, key=lambda d: (isinstance(d, str), d))  # GPU 0 first, then 1, …
    assert loads(sequential)["cuda:0"] > loads(sequential)[pl.device_label(max(sequential.gpus))]

    low = pl.plan_placement(shape_for(spec("balanced_low_0", budgets)), spec("balanced_low_0", budgets))
    check_plan(shape, low, budgets)
    # GPU 0 holds only what the others cannot: nothing when three GPUs have room for it all.
    others = [loads(low)[pl.device_label(g)] for g in range(1, gpus)]
    assert (0 not in low.gpus) if gpus == 4 else loads(low)["cuda:0"] < min(others)
    assert max(others) - min(others) <= layer_size(shape), others


def test_reservation_moves_layers_off_a_gpu() -> None:
    """The same budgets hold the whole model without the reservation, not with it: the plan
    offloads instead of filling the GPUs, and keeps the offloaded layers' KV on the GPU that
    runs them."""
    budgets = {0: int(1.5 * GiB), 1: int(1.5 * GiB), "cpu": 64 * GiB}
    bare = spec("auto", budgets, kv_cache_reserve=0, max_batch_size=1, max_input_tokens=8, max_new_tokens=8)
    assert "cpu" not in pl.plan_placement(shape_for(bare), bare).devices
    s = spec("auto", budgets)
    shape = shape_for(s)
    plan = pl.plan_placement(shape, s)
    check_plan(shape, plan, budgets)
    assert "cpu" in plan.devices and plan.gpus == [0, 1]
    offloaded_kv = sum(shape.kv_under(k) for k, d in plan.device_map.items() if d == "cpu")
    assert offloaded_kv > 0
    on_gpu0_kv = sum(shape.kv_under(k) for k, d in plan.device_map.items() if d == 0)
    assert plan.reserved["cuda:0"] >= on_gpu0_kv + offloaded_kv + shape.reserve.activations


def test_quantized_plan_uses_packed_sizes() -> None:
    budgets = {0: 3 * GiB, 1: 3 * GiB}
    plain = pl.plan_placement(shape_for(spec("auto", budgets)), spec("auto", budgets))
    # Bytes per bf16 weight byte: int8 1/2 (+ a float32 scale per row); nf4 (0.5 + 4/64)/2
    # (+ a float32 absmax per 64-block).
    for scheme, ratio in (("int8", 0.5), ("nf4", (0.5 + 4 / 64) / 2)):
        s = spec("auto", budgets, quantization=scheme)
        shape = shape_for(s)
        plan = pl.plan_placement(shape, s)
        check_plan(shape, plan, budgets)
        # Layers shrink by ~ratio; the embedding (kept in bf16, tied to lm_head) does not.
        layer_plain = shape_for(spec("auto", budgets)).weights_under("model.layers.0")
        assert shape.weights_under("model.layers.0") == pytest.approx(layer_plain * ratio, rel=0.01)
        assert sum(plan.weights.values()) < sum(plain.weights.values())


def test_model_that_does_not_fit_max_memory() -> None:
    budgets = {0: 1 * GiB, 1: 1 * GiB}  # no cpu, no disk: 2.5 GB of weights cannot fit
    s = spec("auto", budgets)
    with pytest.raises(ModelLoadError) as err:
        pl.plan_placement(shape_for(s), s)
    message = str(err.value)
    assert "model 'big', key 'max_memory'" in message and "does not fit" in message
    assert "quantization" in message and "max_batch_size" in message
    # One device with a budget: checked too.
    one = spec("cuda:0", {0: 2 * GiB})
    with pytest.raises(ModelLoadError, match=r"key 'max_memory'.*cuda:0 needs"):
        pl.plan_placement(shape_for(one), one)


def test_explicit_map_over_fake_gpus() -> None:
    table = {"model.embed_tokens": "cuda:0", "lm_head": "0", "model.norm": "1", "model.rotary_emb": "1"}
    table |= {f"model.layers.{i}": "0" if i < LAYERS // 2 else "cuda:1" for i in range(LAYERS)}
    s = spec(table, {0: 4 * GiB, 1: 4 * GiB})
    shape = shape_for(s)
    plan = pl.plan_placement(shape, s)
    assert plan.strategy == "explicit" and plan.gpus == [0, 1]
    assert plan.device_map["model.layers.15"] == 1 and plan.device_map["lm_head"] == 0
    check_plan(shape, plan, {0: 4 * GiB, 1: 4 * GiB})


def test_explicit_map_errors_name_the_module() -> None:
    typo = spec({"model.embed_tokens": "0", "model.layer": "0", "model.norm": "0", "lm_head": "0"})
    with pytest.raises(ModelLoadError) as err:
        pl.plan_placement(shape_for(typo), typo)
    assert "model 'big', key 'device_map': unknown module 'model.layer'" in str(err.value)
    assert "did you mean 'model.layers'" in str(err.value)
    partial = spec({"model.embed_tokens": "0", "lm_head": "0"})
    with pytest.raises(ModelLoadError, match=r"key 'device_map': no device for .*'model.layers', 'model.norm'"):
        pl.plan_placement(shape_for(partial), partial)


def test_fake_gpus_are_refused_at_load() -> None:
    s = spec("auto", {0: 3 * GiB, 1: 3 * GiB})
    plan = pl.plan_placement(shape_for(s), s)
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    with pytest.raises(ModelLoadError, match=r"model 'big', key 'max_memory': the plan uses cuda:"):
        pl.check_devices(s, plan)
