"""Merging a stream's queued deltas into one message per sequence.

The scheduler produces one delta per sequence per decode step. When the event loop keeps up,
each relay finds one delta waiting and sends it. When it falls behind (many streams, a slow
network, a busy GIL), deltas pile up in the request's queue; sending them one message each
would make the loop's backlog grow with its own lag. Instead the relay takes everything queued
and sends one message per sequence — the protocol allows any number of tokens per message, and
concatenating messages still gives exactly the unary result.
"""

from __future__ import annotations

from ..engine.request import Event, SequenceDelta


def merged(a: SequenceDelta, b: SequenceDelta) -> SequenceDelta:
    """`a` followed by `b` (same sequence) as one delta; the final fields come from `b`."""
    return SequenceDelta(
        index=a.index,
        text=a.text + b.text,
        token_ids=a.token_ids + b.token_ids,
        logprobs=a.logprobs + b.logprobs,
        finish_reason=b.finish_reason,
        matched_stop=b.matched_stop or a.matched_stop,
        cumulative_logprob=b.cumulative_logprob if b.cumulative_logprob is not None else a.cumulative_logprob,
        score=b.score if b.score is not None else a.score,
    )


def coalesce(events: list[Event]) -> list[Event]:
    """Queued events → the same events with each sequence's consecutive deltas merged.
    A sequence's deltas merge into its first one in `events`; anything that is not a delta
    (the request's end) stays where it is and nothing merges across it."""
    out: list[Event] = []
    open_at: dict[int, int] = {}  # sequence index → where its merged delta sits in `out`
    for event in events:
        if not isinstance(event, SequenceDelta):
            out.append(event)
            open_at.clear()
            continue
        at = open_at.get(event.index)
        if at is None:
            open_at[event.index] = len(out)
            out.append(event)
        else:
            previous = out[at]
            assert isinstance(previous, SequenceDelta)
            out[at] = merged(previous, event)
    return out
