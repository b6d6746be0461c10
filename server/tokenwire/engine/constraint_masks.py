"""The scheduler's side of structured output: one step's token bitmasks from the rows'
matchers, and the matchers moved past the tokens the step chose.

Only constrained rows are filled (`mask_rows` tells the core which); an unconstrained batch
builds nothing. The rows are filled in one native call over the core's threads, and during a
decode step while the forward pass runs (MaskFiller). Beams follow their parents: a parent
followed by one child hands its matcher over, one followed by several is forked, once per child.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..constraints.matcher import BitmaskFiller, ConstraintMatcher, new_bitmask
from ..decoding.beam import BeamStep
from .batch_state import BeamGroup, Member, SampleRow

log = logging.getLogger(__name__)

Masks = tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]] | tuple[None, None]


def constrained(members: Sequence[Member]) -> bool:
    return any(m.request.params.constraint is not None for m in members)


@dataclass
class StepMasks:
    """One step's bitmasks: for the sampled/greedy rows and for the beam rows, each in the
    order _select lays them out (members order)."""

    samples: Masks
    beams: Masks


class MaskFiller:
    """Fills a step's bitmasks — on a thread of its own, so that it runs while the forward pass
    does (`start` before the forward, `result` after it): the matchers only move when the
    step's tokens are accepted, after both."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._filler: BitmaskFiller | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenwire-masks")

    def fill(self, members: Sequence[Member]) -> StepMasks:
        if self._filler is None:
            self._filler = BitmaskFiller(self._threads)
        samples = [m for m in members if isinstance(m, SampleRow)]
        groups = [m for m in members if isinstance(m, BeamGroup)]
        beam_matchers: list[ConstraintMatcher | None] = []
        for group in groups:
            if group.matchers is None:
                beam_matchers.extend([None] * group.rows)
            else:
                assert len(group.matchers) == group.rows
                beam_matchers.extend(group.matchers)
        return StepMasks(self._fill([m.matcher for m in samples]), self._fill(beam_matchers))

    def _fill(self, matchers: Sequence[ConstraintMatcher | None]) -> Masks:
        rows = [(i, m) for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return None, None
        mask = new_bitmask(len(matchers), rows[0][1].compiled.words)
        assert self._filler is not None
        self._filler.fill(rows, mask)
        flags = np.zeros(len(matchers), np.bool_)
        flags[[i for i, _ in rows]] = True
        return mask, flags

    def start(self, members: Sequence[Member]) -> concurrent.futures.Future[StepMasks]:
        """Begin filling for `members` (call it only when one of them is constrained)."""
        return self._pool.submit(self.fill, list(members))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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
