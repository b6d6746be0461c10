"""Admission: the waiting queue of one model and who joins the batch next.

A request needs as many KV rows (pool slots) as it decodes sequences (n, or num_beams), each
holding its prompt + max_new_tokens. It is refused at once (RESOURCE_EXHAUSTED, with the
numbers) when that can never fit the pool; otherwise it waits until enough rows are free — the
pool is never over-committed, so no request is admitted into an out-of-memory failure
mid-decode. Among those that fit, queue order, except that shorter prompts may pass a long one
waiting for the one chunked-prefill slot; one batched prefill holds at most max_batch_tokens
padded prompt tokens (the first request always goes), which bounds its activation memory (see
models/placement.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import ModelSpec
from ..errors import ResourceExhausted, Unavailable
from .request import GenerationRequest


@dataclass(frozen=True)
class Capacity:
    rows: int
    """KV rows (pool slots) the batch may hold."""
    row_tokens: int | None
    """Tokens one row holds; None: unbounded (the DynamicCache fallback grows as it goes)."""


@dataclass
class Admitted:
    batch: list[GenerationRequest] = field(default_factory=list)
    """Prefilled together this iteration."""
    chunked: GenerationRequest | None = None
    """A long prompt that starts its chunked prefill."""
    ended: list[GenerationRequest] = field(default_factory=list)
    """Cancelled or out of time while waiting: end them, unstarted."""


class Admission:
    def __init__(self, spec: ModelSpec, capacity: Capacity) -> None:
        self.spec = spec
        self.capacity = capacity
        self.chunk_tokens = spec.prefill_chunk_tokens
        self._waiting: deque[GenerationRequest] = deque()
        self._cond = threading.Condition()
        self.closed = False

    # --- the event loop's side --------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> None:
        self.check_fits(request)
        with self._cond:
            if self.closed:
                raise Unavailable(f"model {self.spec.name!r} is shutting down")
            if len(self._waiting) >= self.spec.max_queue:
                raise ResourceExhausted(
                    f"model {self.spec.name!r} has {len(self._waiting)} requests waiting (max_queue); retry later"
                )
            self._waiting.append(request)
            self._cond.notify()

    def check_fits(self, request: GenerationRequest) -> None:
        """RESOURCE_EXHAUSTED when the request could never fit the KV pool, however long it waits."""
        p, cap = request.params, self.capacity
        if p.rows > cap.rows:
            raise ResourceExhausted(
                f"the request needs {p.rows} KV rows (num_return_sequences / num_beams) "
                f"but model {self.spec.name!r}'s KV pool has {cap.rows}"
            )
        need = len(p.prompt_ids) + p.max_new_tokens
        if cap.row_tokens is not None and need > cap.row_tokens:
            raise ResourceExhausted(
                f"the request needs {need} tokens of KV cache per sequence "
                f"({len(p.prompt_ids)} prompt + {p.max_new_tokens} max_new_tokens) but "
                f"model {self.spec.name!r}'s KV pool holds {cap.row_tokens} per sequence "
                "(raise kv_cache_reserve, or ask for fewer tokens)"
            )

    def close(self) -> None:
        """Refuse new requests and wake the scheduler thread, which then `drain`s the queue."""
        with self._cond:
            self.closed = True
            self._cond.notify()

    def drain(self) -> list[GenerationRequest]:
        """Take every waiting request (at shutdown, to fail them)."""
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        return waiting

    # --- the scheduler thread's side --------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def wait(self, busy: Callable[[], bool]) -> bool:
        """Block until there is work (waiting requests, or `busy()`); False once closed."""
        with self._cond:
            while not self.closed and not self._waiting and not busy():
                self._cond.wait()
            return not self.closed

    def settle(self, gap_s: float, limit_s: float) -> None:
        """While requests keep arriving less than `gap_s` apart (a burst), wait for the rest of
        it, at most `limit_s` in all: an idle model then prefills the burst together instead of
        its first arrivals alone followed by a second prefill a decode step later. A lone
        request waits `gap_s` once."""
        deadline = time.monotonic() + limit_s
        with self._cond:
            while not self.closed:
                seen = len(self._waiting)
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(timeout=min(gap_s, left))
                if len(self._waiting) == seen:
                    return

    def take(self, now: float, free_rows: int, chunk_slot_free: bool) -> Admitted:
        out = Admitted()
        with self._cond:
            # Requests whose client left or whose time is up end now, wherever they wait (not
            # only once they reach the head of the queue).
            waiting: deque[GenerationRequest] = deque()
            for request in self._waiting:
                (out.ended if request.cancelled or request.expired(now) else waiting).append(request)
            self._waiting = waiting
            i = 0
            while i < len(self._waiting):
                request = self._waiting[i]
                p = request.params
                if p.rows > free_rows:
                    break
                if self._chunked(request):
                    if not chunk_slot_free or out.chunked is not None:
                        i += 1  # one long prompt at a time: this one is next, once that one has joined
                        continue
                    del self._waiting[i]
                    out.chunked = request
                    free_rows -= p.rows
                    continue
                width = max([len(p.prompt_ids)] + [len(r.params.prompt_ids) for r in out.batch])
                if out.batch and width * (len(out.batch) + 1) > self.spec.max_batch_tokens:
                    break
                free_rows -= p.rows
                del self._waiting[i]
                out.batch.append(request)
        return out

    def _chunked(self, request: GenerationRequest) -> bool:
        p = request.params
        return bool(self.chunk_tokens) and p.prefill_inputs is None and len(p.prompt_ids) > self.chunk_tokens
