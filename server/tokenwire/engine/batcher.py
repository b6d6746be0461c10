"""Dynamic batching for one-shot tasks (FillMask, NextSentence, QA, ClassifyImage, Embed).

Concurrent requests to one model are gathered into one padded forward: the first request of a
batch waits at most `max_wait_ms` for company, a batch closes early when `max_batch_size`
items or `max_batch_tokens` (sum of `cost(item)`) are reached, and the batch runs on the
model's own worker thread (one forward at a time per model; the event loop never blocks).
A batch that raises fails only its own requests; a request whose caller left before its
batch formed is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import ResourceExhausted

log = logging.getLogger(__name__)
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue: int = 256


class DynamicBatcher(Generic[I, O]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[I]], Sequence[O]],
        limits: BatchLimits,
        cost: Callable[[I], int] = lambda _: 1,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._limits = limits
        self._cost = cost
        self._queue: asyncio.Queue[tuple[I, asyncio.Future[O]]] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self.batches = 0
        self.items = 0

    async def submit(self, item: I) -> O:
        """Run `item` in the next batch and return its result (or raise its error)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._collector = asyncio.create_task(self._collect(), name=f"batcher-{self.name}")
        if self._queue.qsize() >= self._limits.max_queue:
            raise ResourceExhausted(
                f"model {self.name!r} has {self._queue.qsize()} requests waiting (max_queue); retry later"
            )
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _collect(self) -> None:
        assert self._queue is not None
        limits = self._limits
        carry: tuple[I, asyncio.Future[O]] | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch = [first]
            tokens = self._cost(first[0])
            deadline = time.monotonic() + limits.max_wait_ms / 1000
            while len(batch) < limits.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    entry = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                cost = self._cost(entry[0])
                if tokens + cost > limits.max_batch_tokens:
                    carry = entry  # starts the next batch
                    break
                batch.append(entry)
                tokens += cost
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if live:
                await self._run(live)

    async def _run(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} produced {len(results)} results")
        except Exception as exc:  # one failing batch fails only its own requests
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
