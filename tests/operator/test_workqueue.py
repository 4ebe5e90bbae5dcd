"""The work queue: one run per key at a time, coalesced re-adds, retries with backoff."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from stashlet.kube.errors import Conflict
from stashlet.operator.core.workqueue import WorkQueue


@contextlib.asynccontextmanager
async def running(queue: WorkQueue) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_key_is_never_handled_twice_at_once_and_readds_coalesce() -> None:
    """Adds while a key runs cause exactly one more run, never a concurrent one."""
    active: set[str] = set()
    runs: list[str] = []
    gate = asyncio.Event()

    async def handle(key: str) -> None:
        assert key not in active
        active.add(key)
        runs.append(key)
        await gate.wait()
        active.discard(key)

    queue = WorkQueue(handle, workers=4)
    async with running(queue):
        queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.05)
        for _ in range(5):
            queue.add("a")
        gate.set()
        await asyncio.wait_for(queue.wait_idle(), 5)
    assert sorted(runs) == ["a", "a", "b"]


async def test_failures_are_retried_with_backoff_until_success() -> None:
    """A failing key is retried (after base_delay, then doubled) until it succeeds."""
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def handle(key: str) -> None:
        attempts.append(loop.time())
        if len(attempts) < 3:
            raise Conflict("try again")

    queue = WorkQueue(handle, workers=1, base_delay=0.05, max_delay=1.0)
    async with running(queue):
        queue.add("k")
        for _ in range(100):
            if len(attempts) == 3 and queue.pending() == 0:
                break
            await asyncio.sleep(0.02)
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.045
    assert attempts[2] - attempts[1] >= 0.095


async def test_unexpected_errors_do_not_stop_the_workers(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in one key's handling is logged and retried; other keys keep flowing."""
    done: list[str] = []

    async def handle(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        done.append(key)

    queue = WorkQueue(handle, workers=1, base_delay=10.0)
    async with running(queue):
        queue.add("bad")
        queue.add("good")
        await asyncio.wait_for(queue.wait_idle(), 5)
    assert done == ["good"]
    assert any(
        "boom" in record.getMessage() or getattr(record, "error", "") == "boom" for record in caplog.records
    )
