"""A request's constraint, validated but not yet compiled."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import InvalidArgument

MAX_SOURCE_BYTES = 256 * 1024
MAX_CHOICES = 1024


@dataclass(frozen=True)
class ConstraintSpec:
    """`kind` is the protocol's oneof case; `source` the text xgrammar compiles (a JSON Schema,
    a regex, an EBNF grammar; for `choices`, the grammar built from them; "" for json_object)."""

    kind: str
    source: str

    @property
    def field(self) -> str:
        """The request field an error about this constraint names."""
        return f"constraint.{self.kind}"


def _ebnf_literal(text: str) -> str:
    # xgrammar's EBNF string literals take JSON's escapes (\" \\ \n \uXXXX).
    return json.dumps(text, ensure_ascii=False)


def choices_grammar(choices: list[str]) -> str:
    """An EBNF grammar matching exactly one of `choices`."""
    return "root ::= " + " | ".join(_ebnf_literal(c) for c in choices)


def make_spec(
    kind: str, *, text: str = "", flag: bool = False, choices: list[str] | None = None
) -> ConstraintSpec | None:
    """Validate one oneof case of the protocol's Constraint; None when it asks for nothing."""
    field = f"constraint.{kind}"
    if kind == "json_object":
        return ConstraintSpec(kind, "") if flag else None
    if kind == "choices":
        values = choices or []
        if not values:
            raise InvalidArgument("constraint.choices.values", "must have at least one entry")
        if len(values) > MAX_CHOICES:
            raise InvalidArgument(
                "constraint.choices.values", f"must have at most {MAX_CHOICES} entries, got {len(values)}"
            )
        for i, value in enumerate(values):
            if not value:
                raise InvalidArgument(f"constraint.choices.values[{i}]", "must not be empty")
        source = choices_grammar(list(dict.fromkeys(values)))
    else:
        if not text.strip():
            raise InvalidArgument(field, "must not be empty")
        source = text
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_SOURCE_BYTES} bytes of UTF-8")
    if kind == "json_schema":
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(field, f"must be a JSON document: {exc}") from exc
        if not isinstance(schema, dict | bool):
            raise InvalidArgument(field, "must be a JSON Schema: an object (or true / false)")
    return ConstraintSpec(kind, source)
