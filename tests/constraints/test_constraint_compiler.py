"""The compiler layer on its own: xgrammar's grammars for JSON Schemas, the cache, the matcher."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from tokenwire.config import ModelSpec
from tokenwire.constraints.compiler import compile_constraint, grammars_of
from tokenwire.constraints.matcher import ConstraintMatcher, new_bitmask
from tokenwire.constraints.spec import make_spec
from tokenwire.models.loader import load_model


@pytest.fixture(scope="module")
def llama(demo_models_dir: Path):  # type: ignore[no-untyped-def]
    return load_model(ModelSpec(name="tiny-llama", path=str(demo_models_dir / "tiny-llama")))


def _spell(tok, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    """`text` as one token per character (the vocabulary's own, else its UTF-8 byte tokens), so
    no SentencePiece word-start marker creeps in."""
    vocab = tok.get_vocab()
    out: list[int] = []
    for ch in text:
        out.extend([vocab[ch]] if ch in vocab else [vocab[f"<0x{b:02X}>"] for b in ch.encode()])
    return out


def _compile(model, kind: str, text: str = "", **kw):  # type: ignore[no-untyped-def]
    spec = make_spec(kind, text=text, **kw)
    assert spec is not None
    return asyncio.run(compile_constraint(spec, model))


@pytest.mark.parametrize("schema", [{"type": "string", "maxLength": 8}, {"type": "string", "minLength": 1}])
def test_length_limited_strings_refuse_control_characters(llama, schema) -> None:  # type: ignore[no-untyped-def]
    """xgrammar 0.2.9's rule for length-limited strings lets U+0000-U+001F through (invalid
    JSON); the compiler swaps in the rule of every other JSON string."""
    matcher = ConstraintMatcher(_compile(llama, "json_schema", json.dumps(schema)))
    tok = llama.tokenizer
    for t in _spell(tok, '"a'):
        assert matcher.accept(t)
    assert not matcher.accept(tok.convert_tokens_to_ids("<0x10>"))
    assert matcher.accept(_spell(tok, '"')[0])


def test_identical_constraints_compile_once(llama) -> None:  # type: ignore[no-untyped-def]
    first = _compile(llama, "regex", "[ab]+c")
    assert _compile(llama, "regex", "[ab]+c") is first
    assert _compile(llama, "regex", "[ab]+d") is not first
    assert grammars_of(llama) is grammars_of(llama)


def test_a_terminated_matcher_allows_only_eos(llama) -> None:  # type: ignore[no-untyped-def]
    compiled = _compile(llama, "choices", choices=["yes"])
    matcher = ConstraintMatcher(compiled)
    tok = llama.tokenizer
    for t in _spell(tok, "yes"):
        assert matcher.accept(t)
    eos = tok.eos_token_id
    assert matcher.accept(eos) and matcher.terminated
    mask = new_bitmask(2, compiled.words)
    matcher.fill(mask, 1)
    allowed = np.flatnonzero(np.unpackbits(mask[1].view(np.uint8), bitorder="little"))
    assert allowed.tolist() == [eos]
    assert not mask[0].any()
    assert matcher.accept(eos) and not matcher.accept(5)


def test_fork_is_independent(llama) -> None:  # type: ignore[no-untyped-def]
    matcher = ConstraintMatcher(_compile(llama, "choices", choices=["ab", "cd"]))
    other = matcher.fork()
    tok = llama.tokenizer
    a = _spell(tok, "ab")
    c = _spell(tok, "cd")
    assert matcher.accept(a[0]) and not matcher.accept(c[0])
    assert other.accept(c[0])
