"""One sequence's position in its constraint's grammar."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .compiler import CompiledConstraint


class ConstraintMatcher:
    """Follows the tokens one sequence (a sample, a beam) has produced under a constraint.

    EOS counts as the grammar's stop token: allowed only where the grammar may end, and
    accepting it terminates the matcher. A model without an EOS id ends when the grammar can
    take nothing more (``terminated`` turns true on the last token)."""

    def __init__(self, compiled: CompiledConstraint, matcher: Any = None) -> None:
        import xgrammar as xgr

        self.compiled = compiled
        stops = list(compiled.stop_token_ids)
        self._matcher = matcher or xgr.GrammarMatcher(
            compiled.grammar, override_stop_tokens=stops or None, terminate_without_stop_token=not stops
        )

    def fill(self, bitmask: npt.NDArray[np.int32], row: int) -> None:
        """Writes the allowed next tokens into bitmask[row] (int32 words, bit t % 32 of word t // 32).

        After the grammar has ended (its stop token accepted), only EOS is allowed: a beam that
        ended can still be carried as a running beam (transformers' beam search keeps ended
        continuations, at -1e9, when too few others exist), and it may only append EOS."""
        if self._matcher.is_terminated():
            words = bitmask[row].view(np.uint32)
            words[:] = 0
            for t in self.compiled.stop_token_ids:
                words[t // 32] |= np.uint32(1 << (t % 32))
            return
        self._matcher.fill_next_token_bitmask(bitmask, row)

    def accept(self, token: int) -> bool:
        """Moves past `token`; False if the grammar does not allow it (the matcher is unchanged)."""
        if self._matcher.is_terminated():
            return int(token) in self.compiled.stop_token_ids
        return bool(self._matcher.accept_token(int(token)))

    @property
    def terminated(self) -> bool:
        return bool(self._matcher.is_terminated())

    def fork(self) -> ConstraintMatcher:
        """An independent copy at the same position (a beam that several children follow)."""
        return ConstraintMatcher(self.compiled, self._matcher.fork())


def new_bitmask(rows: int, words: int) -> npt.NDArray[np.int32]:
    return np.zeros((rows, words), np.int32)


class BitmaskFiller:
    """Fills many rows' bitmasks in one native call, spread over `threads` threads (xgrammar's
    BatchGrammarMatcher); matchers past their end are filled here (EOS only)."""

    def __init__(self, threads: int) -> None:
        import xgrammar as xgr

        self._batch = xgr.BatchGrammarMatcher(max_threads=max(1, threads))

    def fill(self, rows: list[tuple[int, ConstraintMatcher]], bitmask: npt.NDArray[np.int32]) -> None:
        active = [(i, m) for i, m in rows if not m.terminated]
        for i, m in rows:
            if m.terminated:
                m.fill(bitmask, i)
        if len(active) == 1:
            active[0][1].fill(bitmask, active[0][0])
        elif active:
            self._batch.batch_fill_next_token_bitmask([m._matcher for _, m in active], bitmask, [i for i, _ in active])
