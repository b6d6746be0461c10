"""A request as the scheduler sees it, and the events it sends back to the servicer.

The scheduler thread never touches asyncio objects directly: it collects a step's events in an
`Outbox` and hands them to their event loop in one `call_soon_threadsafe` per step. One wake-up per
step rather than one per token matters on a GPU: each wake-up makes the event loop thread take the
GIL in the middle of the next forward pass, and a forward pass releases the GIL at every one of
its hundreds of kernel launches, so the two threads would trade it hundreds of times per step.
The servicer sets `cancelled` (a plain flag, read at every step boundary) when the client goes
away.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from dataclasses import dataclass, field

from .params import GenerationParams

_ids = itertools.count()


class FinishReason(enum.Enum):
    LENGTH = "length"
    EOS_TOKEN = "eos_token"
    STOP_SEQUENCE = "stop_sequence"
    STOP_TOKEN = "stop_token"
    CANCELLED = "cancelled"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


@dataclass
class TokenInfo:
    """Log-probability of one generated token (raw distribution) and its alternatives."""

    token_id: int
    token: str
    logprob: float
    rank: int
    top: list[tuple[int, str, float]] = field(default_factory=list)
    """(token id, its text, logprob), most likely first."""


@dataclass
class SequenceDelta:
    """New output of one sequence; `finish_reason` is set on its last delta only."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenInfo] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    matched_stop: str = ""
    cumulative_logprob: float | None = None
    score: float | None = None


@dataclass
class Finished:
    """The request is over: every sequence has sent its last delta."""

    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    """The request failed as a whole; `error` is a tokenwire error or an unexpected one."""

    error: BaseException


Event = SequenceDelta | Finished | Failed


class GenerationRequest:
    def __init__(self, params: GenerationParams, loop: asyncio.AbstractEventLoop) -> None:
        self.id = next(_ids)
        self.params = params
        self.loop = loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = False
        self.deadline = params.deadline
        """time.monotonic() after which the request ends with TIME_LIMIT (None: no limit)."""
        self.deadline_is_client = False
        """The deadline is the client's gRPC deadline (unary calls then fail DEADLINE_EXCEEDED)."""
        self.seed: int | None = None
        self.arrival = time.monotonic()
        self.admitted_at: float | None = None
        self.first_token_at: float | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def __repr__(self) -> str:
        return f"GenerationRequest(id={self.id}, method={self.params.method.value}, rows={self.params.rows})"


class Outbox:
    """Events produced by the scheduler thread, delivered in one batch per event loop on `flush`."""

    def __init__(self) -> None:
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[GenerationRequest, Event]]] = {}

    def put(self, request: GenerationRequest, event: Event) -> None:
        self._pending.setdefault(request.loop, []).append((request, event))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for request, _ in items:
                    request.cancelled = True


def _deliver(items: list[tuple[GenerationRequest, Event]]) -> None:
    """Runs on the event loop: each event to its request's queue, in the order produced."""
    for request, event in items:
        request.events.put_nowait(event)
