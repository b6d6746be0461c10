"""Each demo model loaded 4-bit (nf4, fp4) and 8-bit (int8) with bitsandbytes on the CPU stays
close to the same model unquantized, the quantization is real (bitsandbytes layers, less memory),
and what must stay in full precision does.

Tolerances: relative error ‖q − r‖₂ / ‖r‖₂ of each output tensor, the worst over the tensors
each model kind returns (quant_support.py), about 1.5× the value measured with bitsandbytes 0.50.2,
torch 2.15 CPU on the random-weight demo models (measured → tolerance):

| model        | nf4            | fp4            | int8            |
|--------------|----------------|----------------|-----------------|
| tiny-llama   | 0.091 → 0.14   | 0.111 → 0.17   | 0.0081 → 0.012  |
| tiny-gpt2    | 0.062 → 0.10   | 0.081 → 0.12   | 0.0058 → 0.009  |
| tiny-bert    | 0.025 → 0.04   | 0.030 → 0.045  | 0.011 → 0.017   |
| tiny-bert-qa | 0.0049 → 0.008 | 0.0073 → 0.011 | 0.0005 → 0.001  |
| tiny-clip    | 0.343 → 0.50   | 0.542 → 0.80   | 0.029 → 0.045   |
| tiny-llava   | 0.101 → 0.15   | 0.125 → 0.19   | 0.0084 → 0.013  |

Random tiny weights are the worst case for block quantization (hidden size 64 = one 4-bit block
per row; CLIP's text embeddings are a difference of nearly equal vectors); real checkpoints land
far below these. Double quantization changes nf4/fp4 by < 0.005 (checked on tiny-llama).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from quant_support import OUTPUTS, SCHEMES, outputs, relative_error
from tokenwire.config import ModelSpec
from tokenwire.models.loader import LoadedModel, load_model

TOLERANCE: dict[str, dict[str, float]] = {
    "tiny-llama": {"nf4": 0.14, "fp4": 0.17, "int8": 0.012},
    "tiny-gpt2": {"nf4": 0.10, "fp4": 0.12, "int8": 0.009},
    "tiny-bert": {"nf4": 0.04, "fp4": 0.045, "int8": 0.017},
    "tiny-bert-qa": {"nf4": 0.008, "fp4": 0.011, "int8": 0.001},
    "tiny-clip": {"nf4": 0.50, "fp4": 0.80, "int8": 0.045},
    "tiny-llava": {"nf4": 0.15, "fp4": 0.19, "int8": 0.013},
}
assert set(TOLERANCE) == set(OUTPUTS)


def _bnb_modules(model: torch.nn.Module) -> dict[str, str]:
    return {n: type(m).__name__ for n, m in model.named_modules() if type(m).__module__.startswith("bitsandbytes")}


@pytest.fixture(scope="module")
def references(demo_models_dir: Path) -> dict[str, tuple[LoadedModel, dict[str, torch.Tensor]]]:
    out = {}
    for name in OUTPUTS:
        model = load_model(ModelSpec(name=name, path=str(demo_models_dir / name)))
        out[name] = (model, outputs(name, model))
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(OUTPUTS))
def test_quantized_logits_close_to_unquantized(
    name: str, scheme: str, demo_models_dir: Path, references: dict[str, tuple[LoadedModel, dict[str, torch.Tensor]]]
) -> None:
    plain, expected = references[name]
    model = load_model(ModelSpec(name=name, path=str(demo_models_dir / name), quantization=scheme))
    layers = _bnb_modules(model.first_module())
    assert layers and set(layers.values()) == {"Linear8bitLt" if scheme == "int8" else "Linear4bit"}
    assert model.quantization == scheme and model.memory_bytes < plain.memory_bytes
    got = outputs(name, model)
    errors = {k: relative_error(got[k], expected[k]) for k in expected}
    assert 0 < max(errors.values()) <= TOLERANCE[name][scheme], errors


def test_double_quant_is_close_too(
    demo_models_dir: Path, references: dict[str, tuple[LoadedModel, dict[str, torch.Tensor]]]
) -> None:
    _, expected = references["tiny-llama"]
    for scheme in ("nf4", "fp4"):
        model = load_model(
            ModelSpec(
                name="m", path=str(demo_models_dir / "tiny-llama"), quantization=scheme, bnb_4bit_use_double_quant=True
            )
        )
        assert (
            relative_error(outputs("tiny-llama", model)["logits"], expected["logits"])
            <= TOLERANCE["tiny-llama"][scheme]
        )


def test_llava_vision_tower_and_projector_stay_unquantized(demo_models_dir: Path) -> None:
    model = load_model(ModelSpec(name="llava", path=str(demo_models_dir / "tiny-llava"), quantization="nf4"))
    quantized = _bnb_modules(model.first_module())
    assert not [n for n in quantized if ".vision_tower." in n or ".multi_modal_projector." in n]
    assert any(".language_model.layers." in n for n in quantized)
    assert {"model.vision_tower", "model.multi_modal_projector", "lm_head"} <= set(model.unquantized_modules)
    # llm_int8_skip_modules replaces the defaults (transformers' semantics): the tower quantizes.
    custom = load_model(
        ModelSpec(
            name="llava",
            path=str(demo_models_dir / "tiny-llava"),
            quantization="nf4",
            llm_int8_skip_modules=("lm_head",),
        )
    )
    assert any(".vision_tower." in n for n in _bnb_modules(custom.first_module()))
    assert custom.unquantized_modules == ("lm_head",)


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_checkpoint_saved_quantized_loads_as_it_is(scheme: str, demo_models_dir: Path, tmp_path: Path) -> None:
    source = demo_models_dir / "tiny-llama"
    quantized = load_model(ModelSpec(name="q", path=str(source), quantization=scheme))
    saved = tmp_path / f"saved-{scheme}"
    quantized.first_module().save_pretrained(saved)
    for f in source.iterdir():
        if "token" in f.name or f.name == "generation_config.json":
            shutil.copy(f, saved / f.name)
    assert json.loads((saved / "config.json").read_text())["quantization_config"]["quant_method"] == "bitsandbytes"

    reloaded = load_model(ModelSpec(name="saved", path=str(saved)))  # quantization = "none": as saved
    assert reloaded.quantization == scheme
    assert set(_bnb_modules(reloaded.first_module())) == set(_bnb_modules(quantized.first_module()))
    torch.testing.assert_close(outputs("tiny-llama", reloaded)["logits"], outputs("tiny-llama", quantized)["logits"])
    # Asking for the same scheme is fine too.
    assert load_model(ModelSpec(name="saved", path=str(saved), quantization=scheme)).quantization == scheme
