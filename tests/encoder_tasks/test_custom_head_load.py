"""Custom-head checkpoints that are wrong fail at load, with the file and the layer named; the
model is marked FAILED and the other models still serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tokenwire.config import ModelSpec
from tokenwire.models.load_error import ModelLoadError
from tokenwire.models.loader import load_model
from tokenwire.models.registry import ModelRegistry, ModelState

GOOD = {
    "pooling": "cls",
    "layers": [
        {"type": "linear", "in": 64, "out": 8},
        {"type": "activation", "fn": "gelu"},
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "in": 8, "out": 2},
    ],
    "output": "softmax",
    "labels": ["no", "yes"],
}


def _checkpoint(
    demo_models_dir: Path, tmp_path: Path, spec: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None
) -> Path:
    path = tmp_path / "head"
    shutil.copytree(demo_models_dir / "tiny-bert-sentiment", path)
    (path / "tokenwire_head.json").write_text(json.dumps(spec))
    if tensors is None:
        tensors = {
            "0.weight": torch.zeros(8, 64),
            "0.bias": torch.zeros(8),
            "3.weight": torch.zeros(2, 8),
            "3.bias": torch.zeros(2),
        }
    save_file(tensors, str(path / "head.safetensors"))
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec(name="mine", path=str(path)))
    return str(info.value)


def test_a_good_multi_layer_head_loads(demo_models_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(ModelSpec(name="mine", path=str(_checkpoint(demo_models_dir, tmp_path, GOOD))))
    assert loaded.encoder.labels == ("no", "yes")
    assert loaded.encoder.classify_function == "softmax"
    assert [t.value for t in loaded.tasks] == ["classify_text"]  # two outputs: no Rerank


def _with_layer(index: int, **changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(GOOD))
    spec["layers"][index].update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            _with_layer(0, **{"in": 32}),
            'tokenwire_head.json layers[0]: "in" is 32 but the encoder\'s hidden size is 64',
        ),
        (
            _with_layer(3, **{"in": 9}),
            'tokenwire_head.json layers[3]: "in" is 9 but the previous linear layer\'s out is 8',
        ),
        (_with_layer(1, fn="swishy"), 'tokenwire_head.json layers[1]: "fn" must be one of'),
        (_with_layer(2, p=1.5), 'tokenwire_head.json layers[2]: "p" must be a number in [0, 1)'),
        (_with_layer(2, type="conv"), 'tokenwire_head.json layers[2]: "type" must be'),
        ({**GOOD, "labels": ["only-one"]}, "tokenwire_head.json labels: has 1 entries but the last linear layer has 2"),
        ({**GOOD, "pooling": "attention"}, "tokenwire_head.json pooling: must be one of cls, mean, pooler"),
        ({**GOOD, "output": "relu"}, "tokenwire_head.json output: must be one of"),
        ({**GOOD, "layers": []}, "tokenwire_head.json layers: must be a non-empty list"),
        ({**GOOD, "extra": 1}, "unknown keys ['extra']"),
    ],
)
def test_bad_head_json_names_file_and_layer(
    demo_models_dir: Path, tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    message = _load_error(_checkpoint(demo_models_dir, tmp_path, spec))
    assert "model 'mine'" in message
    assert expected in message


def test_softmax_over_one_output_is_refused(demo_models_dir: Path, tmp_path: Path) -> None:
    spec = {"pooling": "cls", "layers": [{"type": "linear", "in": 64, "out": 1}], "output": "softmax", "labels": ["x"]}
    tensors = {"0.weight": torch.zeros(1, 64), "0.bias": torch.zeros(1)}
    assert "softmax over one output is always 1" in _load_error(_checkpoint(demo_models_dir, tmp_path, spec, tensors))


@pytest.mark.parametrize(
    ("tensors", "expected"),
    [
        (
            {"0.weight": torch.zeros(8, 64), "0.bias": torch.zeros(8), "3.weight": torch.zeros(2, 8)},
            "missing '3.bias' for layers[3]",
        ),
        (
            {
                "0.weight": torch.zeros(8, 63),
                "0.bias": torch.zeros(8),
                "3.weight": torch.zeros(2, 8),
                "3.bias": torch.zeros(2),
            },
            "'0.weight' has shape [8, 63] but layers[0] of tokenwire_head.json needs [8, 64]",
        ),
        (
            {
                "0.weight": torch.zeros(8, 64),
                "0.bias": torch.zeros(8),
                "3.weight": torch.zeros(2, 8),
                "3.bias": torch.zeros(2),
                "1.weight": torch.zeros(1),
            },
            "tensors ['1.weight'] match no parameter",
        ),
    ],
)
def test_bad_weights_name_the_tensor_and_layer(
    demo_models_dir: Path, tmp_path: Path, tensors: dict[str, torch.Tensor], expected: str
) -> None:
    message = _load_error(_checkpoint(demo_models_dir, tmp_path, GOOD, tensors))
    assert "head.safetensors" in message and expected in message


def test_a_failed_head_leaves_the_other_models_serving(demo_models_dir: Path, tmp_path: Path) -> None:
    bad = _checkpoint(demo_models_dir, tmp_path, _with_layer(0, **{"in": 32}))
    registry = ModelRegistry(
        (
            ModelSpec(name="bad", path=str(bad)),
            ModelSpec(name="good", path=str(demo_models_dir / "tiny-bert-sentiment")),
        )
    )
    import asyncio

    async def nothing() -> None:
        return None

    asyncio.run(registry.load_all(nothing))
    assert registry.entries["bad"].state is ModelState.FAILED
    assert "tokenwire_head.json layers[0]" in registry.entries["bad"].error
    assert registry.entries["good"].state is ModelState.READY
