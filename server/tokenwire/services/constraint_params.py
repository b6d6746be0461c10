"""A request's `constraint` (GenerateRequest / MultimodalChatRequest) → a compiled constraint.

Validation (the oneof's value, its combination with the other fields) names the field; the
compilation itself runs off the event loop (constraints/compiler.py)."""

from __future__ import annotations

from typing import Any

from ..constraints.compiler import CompiledConstraint, compile_constraint
from ..constraints.spec import ConstraintSpec, make_spec
from ..errors import FailedPrecondition, InvalidArgument
from ..models.loaded_model import LoadedModel


def constraint_spec(request: Any) -> ConstraintSpec | None:
    """The request's constraint, validated; None when it has none."""
    if not request.HasField("constraint"):
        return None
    constraint = request.constraint
    kind = constraint.WhichOneof("kind")
    if kind is None:
        return None
    if request.HasField("stopping") and request.stopping.ignore_eos:
        raise InvalidArgument(
            "stopping.ignore_eos", "cannot be combined with a constraint (EOS is how a constrained output ends)"
        )
    if kind == "json_object":
        return make_spec(kind, flag=constraint.json_object)
    if kind == "choices":
        return make_spec(kind, choices=list(constraint.choices.values))
    return make_spec(kind, text=getattr(constraint, kind))


async def compiled_constraint(request: Any, model: LoadedModel) -> CompiledConstraint | None:
    spec = constraint_spec(request)
    if spec is None:
        return None
    if not model.special_token_ids.get("eos"):
        raise FailedPrecondition(f"model {model.spec.name!r} has no EOS token, which a constrained output needs to end")
    return await compile_constraint(spec, model)
