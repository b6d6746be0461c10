"""The scheduler's side of structured output: one step's token bitmasks from the rows'
matchers, and the matchers moved past the tokens the step chose.

Only constrained rows are filled (`mask_rows` tells the core which); an unconstrained batch
builds nothing. Beams follow their parents: a parent followed by one child hands its matcher
over, one followed by several is forked, once per child.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..constraints.matcher import ConstraintMatcher, new_bitmask
from ..decoding.beam import BeamStep
from .batch_state import BeamGroup, SampleRow

log = logging.getLogger(__name__)

Masks = tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]] | tuple[None, None]


def _fill(matchers: Sequence[ConstraintMatcher | None]) -> Masks:
    constrained = [i for i, m in enumerate(matchers) if m is not None]
    if not constrained:
        return None, None
    first = matchers[constrained[0]]
    assert first is not None
    mask = new_bitmask(len(matchers), first.compiled.words)
    rows = np.zeros(len(matchers), np.bool_)
    for i in constrained:
        matcher = matchers[i]
        assert matcher is not None
        matcher.fill(mask, i)
        rows[i] = True
    return mask, rows


def sample_masks(samples: Sequence[SampleRow]) -> Masks:
    """Bitmasks for the sampled/greedy rows of one step, in their order."""
    return _fill([m.matcher for m in samples])


def beam_masks(groups: Sequence[BeamGroup]) -> Masks:
    """Bitmasks for the beam rows of one step (each group's rows_expected rows, in order)."""
    matchers: list[ConstraintMatcher | None] = []
    for group in groups:
        if group.matchers is None:
            matchers.extend([None] * group.rows)
        else:
            assert len(group.matchers) == group.rows
            matchers.extend(group.matchers)
    return _fill(matchers)


def accept(matcher: ConstraintMatcher, token: int, where: str) -> None:
    if not matcher.accept(token):  # the core masked everything else: a bug if it happens
        log.error("%s: token %d is not allowed by its constraint (accepted nothing)", where, token)


def follow_beams(group: BeamGroup, step: BeamStep) -> None:
    """After a beam step: each continuing beam takes (or forks) its parent's matcher and moves
    past its token."""
    if group.matchers is None or step.done:
        return
    old = group.matchers
    parents = [int(p) for p in step.parents]
    children = Counter(parents)
    new: list[ConstraintMatcher] = []
    for parent, token in zip(parents, step.tokens, strict=True):
        matcher = old[parent] if children[parent] == 1 else old[parent].fork()
        accept(matcher, int(token), f"request {group.request.id} beam")
        new.append(matcher)
    group.matchers = new
