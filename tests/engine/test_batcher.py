"""The dynamic batcher gathers concurrent requests, respects its limits, isolates failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from tokenwire.engine.batcher import BatchLimits, DynamicBatcher
from tokenwire.errors import ResourceExhausted


def test_concurrent_requests_share_a_batch_and_keep_their_results() -> None:
    seen: list[list[int]] = []
    threads: set[str] = set()

    def run(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        threads.add(threading.current_thread().name)
        return [i * 10 for i in items]

    async def main() -> list[int]:
        batcher = DynamicBatcher("m", run, BatchLimits(max_batch_size=4, max_wait_ms=50))
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        batcher.close()
        return list(results)

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    assert [len(b) for b in seen] == [4, 4, 2]
    assert threads and all(t.startswith("batch-m") for t in threads)


def test_token_budget_closes_a_batch_early() -> None:
    seen: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return list(items)

    async def main() -> None:
        batcher = DynamicBatcher(
            "m", run, BatchLimits(max_batch_size=10, max_batch_tokens=10, max_wait_ms=50), cost=lambda i: i
        )
        await asyncio.gather(*(batcher.submit(i) for i in (4, 4, 4, 9, 1)))
        batcher.close()

    asyncio.run(main())
    assert seen == [[4, 4], [4], [9, 1]]


def test_failing_batch_fails_only_its_requests() -> None:
    def run(items: Sequence[int]) -> list[int]:
        if 3 in items:
            raise RuntimeError("boom")
        return list(items)

    async def main() -> tuple[list[object], int]:
        batcher = DynamicBatcher("m", run, BatchLimits(max_batch_size=2, max_wait_ms=20))
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3, 4, 5)), return_exceptions=True)
        after = await batcher.submit(7)
        batcher.close()
        return list(results), after

    results, after = asyncio.run(main())
    assert results[:2] == [1, 2] and results[4] == 5
    assert all(isinstance(r, RuntimeError) for r in results[2:4])
    assert after == 7


def test_full_queue_is_resource_exhausted() -> None:
    release = threading.Event()

    def run(items: Sequence[int]) -> list[int]:
        release.wait(5)
        return list(items)

    async def main() -> None:
        batcher = DynamicBatcher("m", run, BatchLimits(max_batch_size=1, max_wait_ms=0, max_queue=2))
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch is running
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted):
            await batcher.submit(3)
        release.set()
        await asyncio.gather(first, *queued)
        batcher.close()

    asyncio.run(main())
