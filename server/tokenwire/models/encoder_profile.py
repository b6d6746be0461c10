"""What the encoder tasks need to know about a checkpoint beyond its weights, read once at load.

* **Classifiers** (ClassifyText, ClassifyTokens, Rerank): the label names by index
  (``config.id2label``, or a custom head's ``labels``) and the function that turns logits into
  scores — for ClassifyText the rule of transformers' text-classification pipeline
  (``problem_type`` "regression" → none; "multi_label_classification" or one output → sigmoid;
  else softmax), for Rerank the one sentence-transformers' ``CrossEncoder.predict`` applies
  (``config.sentence_transformers.activation_fn``, else sigmoid for one output); a custom head's
  ``output`` for both.
* **Embedding models** (EmbedText): a sentence-transformers checkpoint describes its pipeline in
  ``modules.json`` (Transformer → Pooling → optional Normalize); the pooling mode comes from
  ``1_Pooling/config.json`` and the longest input from ``sentence_bert_config.json``'s
  ``max_seq_length`` (sentence-transformers cuts longer inputs there; tokenwire makes it the
  model's ``max_input_tokens`` unless the registry sets one). A plain encoder pools by mean.

Modules tokenwire cannot reproduce exactly (a Dense layer, several pooling modes at once) fail
the load with the file named, rather than serving vectors that differ from the library's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from ..config import ModelSpec
from ..tasks import Task
from .custom_head import HEAD_CONFIG, HeadSpec, read_head_spec
from .load_error import ModelLoadError

ST_MODULES = "modules.json"
ST_CONFIG = "sentence_bert_config.json"
POOLINGS = ("cls", "mean", "max", "last")
# 1_Pooling/config.json flags → tokenwire's pooling names.
_ST_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}
_ST_UNSUPPORTED_FLAGS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
# CrossEncoder activation (a torch class path) → tokenwire's function name.
_CROSS_ENCODER_ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "none",
    "torch.nn.modules.activation.Tanh": "tanh",
}
_ST_MODULE_TYPES = ("Transformer", "Pooling", "Normalize")
_TEXT_CLASSIFIER_TASKS = frozenset({Task.CLASSIFY_TEXT, Task.RERANK})


@dataclass(frozen=True)
class EncoderProfile:
    labels: tuple[str, ...] = ()
    """Label names by output index (classifiers); empty otherwise."""
    classify_function: str = ""
    """"softmax", "sigmoid" or "none": ClassifyText's function when the request names none."""
    rerank_function: str = ""
    """"sigmoid", "none" or "tanh": the score Rerank reports unless raw_scores."""
    pooling: str = ""
    """EmbedText's pooling when the request names none ("cls", "mean", "max", "last")."""
    normalize: bool = False
    """The checkpoint ends with a Normalize module (vectors are unit length before any cut)."""
    embedding_dimensions: int = 0
    """Width of an EmbedText vector (the encoder's hidden size)."""
    max_seq_length: int | None = None
    """sentence_bert_config.json's max_seq_length, when present."""
    head: HeadSpec | None = None
    """A custom head (tokenwire_head.json), served for ClassifyText and Rerank."""


def local_dir(spec: ModelSpec) -> Path | None:
    """The checkpoint's directory when it is a local one (custom heads and sentence-transformers
    files are read from local checkpoints only)."""
    path = Path(spec.path)
    return path if spec.is_local and path.is_dir() else None


def has_custom_head(spec: ModelSpec) -> bool:
    directory = local_dir(spec)
    return directory is not None and (directory / HEAD_CONFIG).is_file()


def _head_spec(spec: ModelSpec, directory: Path) -> HeadSpec:
    try:
        return read_head_spec(directory)
    except ModelLoadError as exc:
        raise ModelLoadError(f"model {spec.name!r}: {exc}") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def implied_tasks(spec: ModelSpec, config: PretrainedConfig, architecture_tasks: tuple[Task, ...]) -> tuple[Task, ...]:
    """The tasks a checkpoint's files imply, given those its architecture implies: a custom head
    makes a text classifier (and a reranker when it has one output); a sequence classifier with
    one output is a cross-encoder and reranks too."""
    directory = local_dir(spec)
    if directory is not None and (directory / HEAD_CONFIG).is_file():
        head = _head_spec(spec, directory)
        return (Task.CLASSIFY_TEXT, Task.RERANK) if head.outputs == 1 else (Task.CLASSIFY_TEXT,)
    if Task.CLASSIFY_TEXT in architecture_tasks and getattr(config, "num_labels", 0) == 1:
        return (*architecture_tasks, Task.RERANK)
    return architecture_tasks


def _labels(config: PretrainedConfig) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    count = int(getattr(config, "num_labels", len(id2label)) or 0)
    return tuple(str(id2label.get(i, f"LABEL_{i}")) for i in range(count))


def _classify_function(config: PretrainedConfig) -> str:
    """transformers' text-classification pipeline's default function_to_apply."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or getattr(config, "num_labels", 0) == 1:
        return "sigmoid"
    return "softmax"


def _rerank_function(spec: ModelSpec, config: PretrainedConfig) -> str:
    """sentence-transformers' CrossEncoder default activation for this config."""
    st = getattr(config, "sentence_transformers", None)
    path = st.get("activation_fn") if isinstance(st, dict) else None
    if path is None:
        return "sigmoid" if getattr(config, "num_labels", 0) == 1 else "none"
    if path not in _CROSS_ENCODER_ACTIVATIONS:
        raise ModelLoadError(
            f"model {spec.name!r}: config.json sentence_transformers.activation_fn {path!r} is not one "
            f"tokenwire applies ({', '.join(_CROSS_ENCODER_ACTIVATIONS)})"
        )
    return _CROSS_ENCODER_ACTIVATIONS[path]


def _sentence_transformers(spec: ModelSpec, directory: Path) -> tuple[str, bool, int | None] | None:
    """(pooling, normalize, max_seq_length) of a sentence-transformers checkpoint; None if it is not one."""
    modules_path = directory / ST_MODULES
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    if not isinstance(modules, list):
        raise ModelLoadError(f"model {spec.name!r}: {modules_path} must be a list of modules")
    pooling, normalize = "mean", False
    kinds = []
    for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        kinds.append(kind)
        if kind not in _ST_MODULE_TYPES:
            raise ModelLoadError(
                f"model {spec.name!r}: {ST_MODULES} has a {kind!r} module; tokenwire serves "
                f"sentence-transformers pipelines of {', '.join(_ST_MODULE_TYPES)} modules only"
            )
        if kind == "Transformer" and module.get("path", "") not in ("", "."):
            raise ModelLoadError(
                f"model {spec.name!r}: {ST_MODULES}'s Transformer module lives in {module.get('path')!r}; "
                "point the registry's path at that folder"
            )
        if kind == "Pooling":
            pooling = _st_pooling(spec, directory / str(module.get("path", "")) / "config.json")
        normalize = normalize or kind == "Normalize"
    st_config = directory / ST_CONFIG
    max_seq = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
    return pooling, normalize, max_seq if isinstance(max_seq, int) and max_seq > 0 else None


def _st_pooling(spec: ModelSpec, path: Path) -> str:
    config = _read_json(path)
    modes = [name for flag, name in _ST_POOLING_FLAGS.items() if config.get(flag)]
    unsupported = [flag for flag in _ST_UNSUPPORTED_FLAGS if config.get(flag)]
    if unsupported or len(modes) != 1:
        raise ModelLoadError(
            f"model {spec.name!r}: {path} must enable exactly one of "
            f"{', '.join(_ST_POOLING_FLAGS)} (got {modes + unsupported or 'none'})"
        )
    return modes[0]


def read_profile(spec: ModelSpec, config: PretrainedConfig, tasks: tuple[Task, ...]) -> EncoderProfile:
    """Everything above for a model serving `tasks` (reads small JSON files only)."""
    directory = local_dir(spec)
    head = (
        _head_spec(spec, directory)
        if directory is not None and _TEXT_CLASSIFIER_TASKS & set(tasks) and (directory / HEAD_CONFIG).is_file()
        else None
    )
    labels: tuple[str, ...] = ()
    classify = rerank = ""
    if head is not None:
        labels, classify, rerank = head.labels, head.output, head.output
    elif {Task.CLASSIFY_TEXT, Task.CLASSIFY_TOKENS, Task.RERANK} & set(tasks):
        labels, classify = _labels(config), _classify_function(config)
        rerank = _rerank_function(spec, config) if Task.RERANK in tasks else ""
    pooling, normalize, max_seq = "", False, None
    dims = 0
    if Task.EMBED_TEXT in tasks:
        found = _sentence_transformers(spec, directory) if directory is not None else None
        pooling, normalize, max_seq = found if found is not None else ("mean", False, None)
        dims = int(getattr(config, "hidden_size", 0) or 0)
    return EncoderProfile(labels, classify, rerank, pooling, normalize, dims, max_seq, head)
