"""The running batch: the one owner of which row is which.

Per running sequence it holds the member it belongs to (a sampled/greedy row, or a beam search's
group of rows), its next input token, its KV storage and length (through the KV backend, where
row i is pool slot i) and its C++ sampler row. Rows join, leave, fork (n > 1, beams) and follow
beam parents only through the methods below, which keep the members, the tokens, the KV rows
and the sampler's rows in step; nobody else computes a row offset.

Row order is member order: a member's rows are contiguous, starting at the sum of the rows of
the members before it (`spans`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..constraints.matcher import ConstraintMatcher
from ..decoding import BatchSampler, BeamSearch, BeamStepper
from .kv_backend import KVBackend
from .params import Method
from .request import GenerationRequest
from .sequence import SequenceOutput


@dataclass
class SampleRow:
    """A sampled or greedy sequence: one row, one C++ sampler row keyed `key`."""

    request: GenerationRequest
    key: tuple[int, int]
    output: SequenceOutput
    last_token_at: float | None = None
    matcher: ConstraintMatcher | None = None
    """Where the sequence stands in its request's constraint (None: unconstrained)."""

    @property
    def rows(self) -> int:
        return 1


@dataclass
class BeamGroup:
    """One request's beam search: `search.rows_expected` rows (1 before its first step)."""

    request: GenerationRequest
    search: BeamSearch
    matchers: list[ConstraintMatcher] | None = None
    """One per row (beam), in row order, under a constraint (None: unconstrained)."""

    @property
    def rows(self) -> int:
        return self.search.rows_expected


Member = SampleRow | BeamGroup


def spans(members: Sequence[Member]) -> Iterator[tuple[int, Member]]:
    """(first row, member) for members laid out in this order."""
    row = 0
    for m in members:
        yield row, m
        row += m.rows


class BatchState:
    def __init__(self, kv: KVBackend, vocab_size: int, tokenizer: Any, *, core_threads: int) -> None:
        self.kv = kv
        self.sampler = BatchSampler(vocab_size, num_threads=core_threads)
        self.beams = BeamStepper(num_threads=core_threads)
        self._vocab_size = vocab_size
        self._tokenizer = tokenizer
        self.members: list[Member] = []
        self._layout: list[tuple[int, int]] = []
        self.constrained = False
        """(first row, rows) of each member, as laid out now (a beam group's row count changes
        during its first step, before the batch is rearranged)."""
        self.next_tokens: list[int] = []
        """Each row's input token for the next decode step."""

    @property
    def rows(self) -> int:
        return len(self.next_tokens)

    # --- members ----------------------------------------------------------------------------

    def new_members(self, request: GenerationRequest) -> list[Member]:
        """The members of a request about to join (its sampler rows are added now, so the
        first token can be chosen from the prefill's logits). The seed is drawn here, once."""
        p = request.params
        if p.method is Method.BEAM:
            assert p.beam is not None
            matchers = [ConstraintMatcher(p.constraint)] if p.constraint is not None else None
            return [BeamGroup(request, BeamSearch(p.beam, p.prompt_ids, self._vocab_size), matchers)]
        seed = p.sampling.seed if p.sampling.seed is not None else secrets.randbits(63)
        request.seed = seed
        sampling = replace(p.sampling, seed=seed)
        members: list[Member] = []
        for i in range(p.n):  # n sequences: streams 0..n-1 under one seed
            key = (request.id, i)
            self.sampler.add(key, sampling, p.prompt_ids, stream=i)
            matcher = ConstraintMatcher(p.constraint) if p.constraint is not None else None
            members.append(SampleRow(request, key, SequenceOutput(i, p, self._tokenizer), matcher=matcher))
        return members

    def release(self, member: Member) -> None:
        """Forget a member's sampler row (it has left, or never joins)."""
        if isinstance(member, SampleRow) and member.key in self.sampler:
            self.sampler.remove(member.key)

    # --- the rows ---------------------------------------------------------------------------

    def prefill(self, prompts: list[list[int]], extra: Any = None) -> torch.Tensor:
        """Prefill prompts as provisional rows after the running ones; `join` settles them."""
        return self.kv.prefill(prompts, extra)

    def join(self, members: Sequence[Member], prompt_rows: Sequence[int], tokens: Sequence[int], prompts: int) -> None:
        """The last `prompts` rows were just prefilled; `members` continue them: member row k
        continues prompt `prompt_rows[k]` with input token `tokens[k]`."""
        base = self.kv.rows - prompts
        assert base == self.rows, "prefilled rows are joined before the next step"
        self.kv.arrange(list(range(base)) + [base + r for r in prompt_rows])
        self._set_members(self.members + list(members))
        self.next_tokens.extend(tokens)

    def decode(self) -> torch.Tensor:
        """One forward for every row → logits [rows, vocab] on the host."""
        return self.kv.decode(self.next_tokens)

    def advance(self, running: list[Member], keep: Sequence[int], tokens: Sequence[int]) -> None:
        """After a step: `running` members go on; row k continues old row keep[k] with `tokens[k]`."""
        moved = list(keep) != list(range(len(keep)))  # most steps: rows only leave the end, or none
        self.kv.arrange(keep, self._shared_prefixes(running, keep) if moved else None)
        self._set_members(running)
        self.next_tokens = list(tokens)

    def _shared_prefixes(self, running: list[Member], keep: Sequence[int]) -> list[int]:
        """For each new row, the tokens its slot already shares with its source: a beam that
        takes a sibling's place (its group's rows did not move) shares their prompt."""
        old = dict(zip(map(id, self.members), self._layout, strict=True))  # before this step
        shared: list[int] = []
        for first, m in spans(running):
            was = old.get(id(m))
            prompt = len(m.request.params.prompt_ids) if isinstance(m, BeamGroup) else 0
            for k in range(first, first + m.rows):
                inside = (
                    was is not None and was[0] == first and all(was[0] <= row < was[0] + was[1] for row in (k, keep[k]))
                )
                shared.append(prompt if inside else 0)
        return shared

    def _set_members(self, members: list[Member]) -> None:
        self.members = members
        self._layout = []
        self.constrained = False
        """Whether any member decodes under a constraint (then each step fills bitmasks)."""
        for first, m in spans(members):  # one pass: this runs every step
            self._layout.append((first, m.rows))
            self.constrained = self.constrained or m.request.params.constraint is not None

    def remove(self, leaving: Callable[[Member], bool]) -> list[Member]:
        """Drop the members `leaving` selects (their rows and sampler rows); returns them."""
        gone: list[Member] = []
        keep: list[int] = []
        stay: list[Member] = []
        for first, m in spans(self.members):
            if leaving(m):
                gone.append(m)
                self.release(m)
            else:
                keep.extend(range(first, first + m.rows))
                stay.append(m)
        if gone:
            self.kv.arrange(keep)
            self._set_members(stay)
            self.next_tokens = [self.next_tokens[k] for k in keep]
        return gone

    def clear(self) -> list[Member]:
        """Empty the batch (after a failed step); returns who was in it."""
        members, self.next_tokens = self.members, []
        self._set_members([])
        for m in members:
            self.release(m)
        for key in list(self.sampler):  # rows of members that never joined
            self.sampler.remove(key)
        self.kv.reset()
        return members
