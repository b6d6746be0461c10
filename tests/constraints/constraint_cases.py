"""Constraints the structured-output tests run: JSON Schemas of every kind the issue names, regexes,
choices and grammars, each with how to check an output against it."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

SCHEMAS: dict[str, dict[str, Any]] = {
    "object-required": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "enum": {"type": "string", "enum": ["red", "green", "blue"]},
    "array-min-max": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 4},
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                },
                "required": ["id", "tags"],
                "additionalProperties": False,
            },
            "ok": {"type": "boolean"},
        },
        "required": ["user", "ok"],
        "additionalProperties": False,
    },
    "number-range": {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "ratio": {"type": "number", "minimum": -1, "maximum": 1},
        },
        "required": ["score", "ratio"],
        "additionalProperties": False,
    },
    "string-pattern": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
        "required": ["code"],
        "additionalProperties": False,
    },
}

REGEXES = {
    "date": r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
    "word-list": r"(cat|dog|bird)( (cat|dog|bird)){0,3}",
    "phone": r"\+?[0-9]{2,3} [0-9]{3}-[0-9]{4}",
}

CHOICES = {
    "sentiment": ["positive", "negative", "neutral"],
    "quoted": ['say "hi"', "naïve café", "a\\b"],
}

GRAMMARS = {
    "arithmetic": ('root ::= expr\nexpr ::= term ("+" term)*\nterm ::= [0-9] | "(" expr ")"', r"[0-9()+]+"),
    "yes-no": ('root ::= "yes" | "no" | "maybe, " root', r"(maybe, )*(yes|no)"),
}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def compact_json(text: str) -> Any:
    """The parsed value; the text must be compact (no whitespace outside strings)."""
    value = json.loads(text)
    outside = _STRING.sub('""', text)
    assert not any(ch.isspace() for ch in outside), text
    return value


def valid_json(schema: dict[str, Any], text: str) -> None:
    jsonschema.validate(compact_json(text), schema)


def matches(pattern: str, text: str) -> None:
    assert re.fullmatch(pattern, text), (pattern, text)


def balanced(text: str) -> None:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        assert depth >= 0, text
    assert depth == 0, text
