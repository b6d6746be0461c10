"""The model's own generation defaults (generation_config.json), sanitised once at load time.

Only values the checkpoint sets explicitly count (transformers' class defaults such as
top_k=50 are not the model's choice). An inconsistent or out-of-range file — `temperature`
set while `do_sample` is false, a negative `max_length`, `num_return_sequences` above
`num_beams` — must never stop a model from serving: each bad value is dropped with a warning
naming it, and the rest is used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationDefaults:
    """Explicit, valid generation_config values; None = not set by the model. (EOS ids come
    from the loader, which merges the tokenizer's and generation_config's.)"""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | Literal["never"] | None = None
    max_new_tokens: int | None = None
    max_length: int | None = None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# key → predicate a value must satisfy to be used.
_RULES: dict[str, Any] = {
    "temperature": lambda v: _number(v) and 0 <= v <= 100,
    "top_k": lambda v: _int(v) and v >= 0,
    "top_p": lambda v: _number(v) and 0 < v <= 1,
    "min_p": lambda v: _number(v) and 0 <= v <= 1,
    "typical_p": lambda v: _number(v) and 0 < v <= 1,
    "repetition_penalty": lambda v: _number(v) and 0 < v <= 100,
    "no_repeat_ngram_size": lambda v: _int(v) and v >= 0,
    "num_beams": lambda v: _int(v) and v >= 1,
    "length_penalty": _number,
    "early_stopping": lambda v: v in (True, False, "never"),
    "max_new_tokens": lambda v: _int(v) and v >= 1,
    "max_length": lambda v: _int(v) and v >= 1,
}


def generation_defaults(module: Any, model_name: str) -> GenerationDefaults:
    """Read `module.generation_config`, keeping only explicit valid values."""
    config = getattr(module, "generation_config", None)
    if config is None:
        return GenerationDefaults()
    try:
        explicit = config.to_diff_dict()
    except Exception:  # a config transformers cannot even diff: use nothing from it
        log.warning("model %s: generation_config unreadable; using no model defaults", model_name)
        return GenerationDefaults()
    values: dict[str, Any] = {}
    for key, ok in _RULES.items():
        if key in explicit and explicit[key] is not None:
            if ok(explicit[key]):
                values[key] = explicit[key]
            else:
                log.warning(
                    "model %s: generation_config.json %s=%r is invalid; ignored", model_name, key, explicit[key]
                )
    return GenerationDefaults(**values)
