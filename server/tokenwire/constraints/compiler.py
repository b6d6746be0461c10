"""Compiling constraints with xgrammar: per model, cached, on threads of their own, time-limited.

xgrammar compiles a grammar against a tokenizer into a token-level automaton (for a 128k
vocabulary, tens of milliseconds for a typical JSON Schema, but unbounded for a pathological
grammar). So compilation never runs on the event loop or a scheduler thread: it runs on a
small pool of COMPILE_THREADS threads, and a request waits at most COMPILE_TIMEOUT_S for it
(then INVALID_ARGUMENT). A native compile cannot be interrupted, so a runaway one keeps its
thread until it ends; with the pool bounded, runaways can delay other compilations but never
generation. The result — compiled grammar or error — is cached per model under the
constraint's text (LRU, CACHE_ENTRIES per model), so identical constraints compile once, even
when they arrive while the first compilation is still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..errors import FailedPrecondition, InvalidArgument
from ..models.loaded_model import LoadedModel
from .spec import ConstraintSpec

COMPILE_THREADS = 2
COMPILE_TIMEOUT_S = 10.0
CACHE_ENTRIES = 128

_pool = concurrent.futures.ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="tokenwire-grammar")
# "[05:08:01] /project/cpp/regex_converter.cc:94: " and glog's "Check failed: (...) is false: ".
_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: .*? is false: )?")


@dataclass(frozen=True)
class CompiledConstraint:
    """A compiled constraint and what the scheduler needs to mask with it."""

    spec: ConstraintSpec
    grammar: Any  # xgrammar.CompiledGrammar
    words: int
    """int32 words per bitmask row: ceil(logits width / 32)."""
    stop_token_ids: tuple[int, ...]
    """The model's EOS ids: the only tokens the grammar allows where it may end."""


# xgrammar 0.2.9 writes the characters of a string with minLength / maxLength as this class,
# which lets raw control characters (U+0000-U+001F) through: invalid JSON. The rule every other
# JSON string uses excludes them; tokenwire swaps it in (escapes stay out of such strings,
# which is valid JSON too). tests/constraints/test_constraint_compiler.py shows the need.
_LENGTH_LIMITED_CHAR = r"[^\"\\\r\n]"
_JSON_STRING_CHAR = r"[^\0-\x1f\"\\]"


def _json_schema_grammar(schema: str) -> Any:
    """The EBNF grammar of a JSON Schema, compact (no whitespace between tokens), with the
    length-limited string rule fixed (above)."""
    import xgrammar as xgr

    grammar = xgr.Grammar.from_json_schema(schema, any_whitespace=False, strict_mode=True, separators=(",", ":"))
    text = str(grammar)
    return text.replace(_LENGTH_LIMITED_CHAR, _JSON_STRING_CHAR) if _LENGTH_LIMITED_CHAR in text else grammar


def _library_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return _NATIVE_PREFIX.sub("", text.splitlines()[0] if text else type(exc).__name__)


def logits_width(model: LoadedModel) -> int:
    config = model.config
    for cfg in (getattr(config, "text_config", None), config):
        value = getattr(cfg, "vocab_size", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return max(value, model.vocab_size)
    return model.vocab_size


class ModelGrammars:
    """One model's xgrammar tokenizer info, compiler and cache."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._compiler: Any = None
        self._cache: OrderedDict[tuple[str, str], concurrent.futures.Future[CompiledConstraint]] = OrderedDict()
        self.stop_token_ids = tuple(model.special_token_ids.get("eos", ()))
        self.width = logits_width(model)

    def _get_compiler(self) -> Any:
        try:
            import xgrammar as xgr
        except ImportError:
            raise FailedPrecondition(
                "structured output needs the xgrammar package, which this server's Python lacks (pip install xgrammar)"
            ) from None

        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.model.tokenizer, vocab_size=self.width, stop_token_ids=list(self.stop_token_ids) or None
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1)
            return self._compiler

    def _compile(self, spec: ConstraintSpec) -> CompiledConstraint:
        compiler = self._get_compiler()
        try:
            if spec.kind == "json_schema":
                grammar = compiler.compile_grammar(_json_schema_grammar(spec.source))
            elif spec.kind == "json_object":  # the schema `true`: any value, compact like the others
                grammar = compiler.compile_grammar(_json_schema_grammar("true"))
            elif spec.kind == "regex":
                grammar = compiler.compile_regex(spec.source)
            else:  # grammar, choices
                grammar = compiler.compile_grammar(spec.source)
        except Exception as exc:  # xgrammar raises RuntimeError (and its own types) with the reason
            raise InvalidArgument(spec.field, f"does not compile: {_library_message(exc)}") from None
        return CompiledConstraint(spec, grammar, (self.width + 31) // 32, self.stop_token_ids)

    def future(self, spec: ConstraintSpec) -> concurrent.futures.Future[CompiledConstraint]:
        """The compilation of `spec`: cached, started now, or joined while it runs."""
        key = (spec.kind, spec.source)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
            future = _pool.submit(self._compile, spec)
            self._cache[key] = future
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return future


_models: dict[str, ModelGrammars] = {}
_models_lock = threading.Lock()


def grammars_of(model: LoadedModel) -> ModelGrammars:
    with _models_lock:
        found = _models.get(model.spec.name)
        if found is None or found.model is not model:  # first use, or the model was reloaded
            found = _models[model.spec.name] = ModelGrammars(model)
        return found


async def compile_constraint(spec: ConstraintSpec, model: LoadedModel) -> CompiledConstraint:
    """`spec` compiled for `model`; INVALID_ARGUMENT naming the field when it does not compile,
    or not within COMPILE_TIMEOUT_S."""
    future = grammars_of(model).future(spec)
    timeout_s = COMPILE_TIMEOUT_S
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
    except TimeoutError:
        raise InvalidArgument(
            spec.field,
            f"did not compile within {timeout_s:g} s; simplify it (the compilation goes on in the background)",
        ) from None
