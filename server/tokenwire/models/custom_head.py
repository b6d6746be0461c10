"""Custom heads ("BERT for any task"): any transformers encoder plus a small ``nn.Sequential``.

A checkpoint folder holds the encoder as ``save_pretrained`` writes it (``config.json``,
``model.safetensors``, tokenizer files) and two more files:

``tokenwire_head.json``::

    {"pooling": "cls" | "mean" | "pooler",
     "layers": [{"type": "linear", "in": 768, "out": 256},
                {"type": "activation", "fn": "relu" | "tanh" | "gelu"},
                {"type": "dropout", "p": 0.1},
                {"type": "linear", "in": 256, "out": 1}],
     "output": "sigmoid" | "softmax" | "none",
     "labels": ["positive"]}

``head.safetensors``: the ``nn.Sequential``'s ``state_dict()`` as torch writes it: keys
``"<index in layers>.weight"`` / ``".bias"``. Someone who trained ``nn.Sequential(...)`` on top
of ``BertModel`` saves it as it is.

The head runs on the pooled encoder output: "cls" is the first token's last hidden state,
"mean" the mean over the real (unpadded) tokens, "pooler" the encoder's own pooler output
(BERT's tanh dense layer on [CLS]). Everything is checked at load, before serving: the JSON's
shape, every layer's sizes against the previous layer and the encoder's hidden size, and every
tensor of ``head.safetensors`` (missing, extra, wrong shape); each error names the file and the
layer. The output's width must equal the number of labels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers.modeling_outputs import SequenceClassifierOutput

from .load_error import ModelLoadError

HEAD_CONFIG = "tokenwire_head.json"
HEAD_WEIGHTS = "head.safetensors"

POOLINGS = ("cls", "mean", "pooler")
OUTPUTS = ("sigmoid", "softmax", "none")
# Activation name in tokenwire_head.json → the torch module (parameter-free).
ACTIVATIONS: dict[str, Callable[[], torch.nn.Module]] = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "gelu": torch.nn.GELU,
    "sigmoid": torch.nn.Sigmoid,
    "silu": torch.nn.SiLU,
}


@dataclass(frozen=True)
class LayerSpec:
    """One entry of "layers": a linear map, an activation or a dropout (identity when serving)."""

    type: str
    in_features: int = 0
    out_features: int = 0
    bias: bool = True
    fn: str = ""
    p: float = 0.0


@dataclass(frozen=True)
class HeadSpec:
    """tokenwire_head.json, validated."""

    pooling: str
    layers: tuple[LayerSpec, ...]
    output: str
    labels: tuple[str, ...]

    @property
    def outputs(self) -> int:
        """Width of the head's output (the last linear layer's)."""
        return next(layer.out_features for layer in reversed(self.layers) if layer.type == "linear")


def _fail(where: str, message: str) -> ModelLoadError:
    return ModelLoadError(f"{HEAD_CONFIG}{' ' + where if where else ''}: {message}")


def _positive(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(where, f'"{key}" must be a positive integer, got {value!r}')
    return value


def _layer(entry: Any, where: str) -> LayerSpec:
    if not isinstance(entry, dict):
        raise _fail(where, f"must be an object, got {entry!r}")
    kind = entry.get("type")
    if kind == "linear":
        bias = entry.get("bias", True)
        if not isinstance(bias, bool):
            raise _fail(where, f'"bias" must be true or false, got {bias!r}')
        return LayerSpec("linear", _positive(entry, "in", where), _positive(entry, "out", where), bias)
    if kind == "activation":
        fn = entry.get("fn")
        if fn not in ACTIVATIONS:
            raise _fail(where, f'"fn" must be one of {", ".join(ACTIVATIONS)}, got {fn!r}')
        return LayerSpec("activation", fn=fn)
    if kind == "dropout":
        p = entry.get("p", 0.0)
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0.0 <= p < 1.0:
            raise _fail(where, f'"p" must be a number in [0, 1), got {p!r}')
        return LayerSpec("dropout", p=float(p))
    raise _fail(where, f'"type" must be "linear", "activation" or "dropout", got {kind!r}')


def read_head_spec(directory: Path, hidden_size: int | None = None) -> HeadSpec:
    """Parse and check tokenwire_head.json; with `hidden_size`, the first linear layer's input
    too (the pooled output's width)."""
    path = directory / HEAD_CONFIG
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {HEAD_CONFIG} in {directory}: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail("", "must be a JSON object")
    unknown = set(raw) - {"pooling", "layers", "output", "labels"}
    if unknown:
        raise _fail("", f"unknown keys {sorted(unknown)} (known: pooling, layers, output, labels)")
    pooling = raw.get("pooling")
    if pooling not in POOLINGS:
        raise _fail("pooling", f"must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    output = raw.get("output")
    if output not in OUTPUTS:
        raise _fail("output", f"must be one of {', '.join(OUTPUTS)}, got {output!r}")
    entries = raw.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _fail("layers", "must be a non-empty list")
    layers = tuple(_layer(entry, f"layers[{i}]") for i, entry in enumerate(entries))
    linears = [i for i, layer in enumerate(layers) if layer.type == "linear"]
    if not linears:
        raise _fail("layers", "must hold at least one linear layer")
    width = hidden_size
    for i in linears:
        layer = layers[i]
        if width is not None and layer.in_features != width:
            source = "the encoder's hidden size" if i == linears[0] else "the previous linear layer's out"
            raise _fail(f"layers[{i}]", f'"in" is {layer.in_features} but {source} is {width}')
        width = layer.out_features
    assert width is not None
    labels_raw = raw.get("labels")
    if labels_raw is None:
        labels: tuple[str, ...] = tuple(f"LABEL_{i}" for i in range(width))
    elif not isinstance(labels_raw, list) or not all(isinstance(x, str) and x for x in labels_raw):
        raise _fail("labels", f"must be a list of non-empty strings, got {labels_raw!r}")
    else:
        labels = tuple(labels_raw)
    if len(labels) != width:
        raise _fail("labels", f"has {len(labels)} entries but the last linear layer has {width} outputs")
    if len(set(labels)) != len(labels):
        raise _fail("labels", "must be unique")
    if output == "softmax" and width == 1:
        raise _fail("output", 'softmax over one output is always 1; use "sigmoid" or "none"')
    return HeadSpec(pooling, layers, output, labels)


def _module(layer: LayerSpec) -> torch.nn.Module:
    if layer.type == "linear":
        return torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if layer.type == "activation":
        return ACTIVATIONS[layer.fn]()
    return torch.nn.Dropout(layer.p)


def build_head(spec: HeadSpec, directory: Path) -> torch.nn.Sequential:
    """The nn.Sequential of `spec` with the weights of head.safetensors (strict, shape-checked)."""
    head = torch.nn.Sequential(*(_module(layer) for layer in spec.layers))
    path = directory / HEAD_WEIGHTS
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises OSError, SafetensorError, ... here
        raise ModelLoadError(f"cannot read {HEAD_WEIGHTS} in {directory}: {exc}") from exc
    expected = head.state_dict()
    for name, want in expected.items():
        index = name.split(".", 1)[0]
        if name not in tensors:
            raise ModelLoadError(f"{HEAD_WEIGHTS}: missing {name!r} for layers[{index}] of {HEAD_CONFIG}")
        got = tuple(tensors[name].shape)
        if got != tuple(want.shape):
            raise ModelLoadError(
                f"{HEAD_WEIGHTS}: {name!r} has shape {list(got)} but layers[{index}] of {HEAD_CONFIG} "
                f"needs {list(want.shape)}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelLoadError(
            f"{HEAD_WEIGHTS}: tensors {extra} match no parameter of the layers in {HEAD_CONFIG} "
            "(keys are '<layer index>.weight' / '.bias', as nn.Sequential.state_dict() writes them)"
        )
    head.load_state_dict({name: tensors[name] for name in expected})
    return head.eval()


class HeadedEncoder(torch.nn.Module):
    """An encoder with a custom head: forward(**tokenized) → SequenceClassifierOutput(logits).

    The logits are the head's raw output; the output function ("sigmoid", ...) is applied by
    the task code, which also lets a request override it.
    """

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Sequential, spec: HeadSpec) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.spec = spec
        if spec.pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise _fail("pooling", f'is "pooler" but {type(encoder).__name__} has no pooler layer')

    @property
    def config(self) -> Any:
        return self.encoder.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> SequenceClassifierOutput:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        if self.spec.pooling == "pooler":
            pooled = out.pooler_output
        elif self.spec.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:
            mask = attention_mask.to(out.last_hidden_state.device, out.last_hidden_state.dtype).unsqueeze(-1)
            pooled = (out.last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        first = next(self.head.parameters())
        return SequenceClassifierOutput(logits=self.head(pooled.to(first.device, first.dtype)))


def attach_head(encoder: torch.nn.Module, directory: Path) -> HeadedEncoder:
    """Read, check and build the head in `directory`, on the encoder's last device and dtype."""
    hidden = getattr(encoder.config, "hidden_size", None)
    spec = read_head_spec(directory, hidden if isinstance(hidden, int) else None)
    head = build_head(spec, directory)
    last = list(encoder.parameters())[-1]
    dtype = last.dtype if last.dtype.is_floating_point else torch.float32
    return HeadedEncoder(encoder, head.to(last.device, dtype), spec)
