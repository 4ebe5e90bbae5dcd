"""The work queue: one run per key at a time, coalesced re-adds, retries with backoff."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from tests.polling import eventually

from stashlet.kube.errors import Conflict
from stashlet.operator.core.workqueue import WorkQueue
from stashlet.operator.errors import OperatorError, RefuseInput, RetryLater


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
        await eventually(lambda: active == {"a", "b"}, what="a and b both running", interval=0.01)
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
        await eventually(
            lambda: len(attempts) == 3 and queue.pending() == 0,
            what="the third attempt, and nothing left",
            timeout=2,
            interval=0.02,
        )
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


async def test_retry_later_comes_back_after_its_delay_without_counting_a_failure() -> None:
    """RetryLater: the key comes back after the delay it names (not the backoff's), and a later real
    failure still starts the backoff at base_delay."""
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def handle(key: str) -> None:
        attempts.append(loop.time())
        if len(attempts) == 1:
            raise RetryLater("the configuration is not Ready yet", delay=0.2)

    queue = WorkQueue(handle, workers=1, base_delay=5.0)
    async with running(queue):
        queue.add("k")
        await eventually(lambda: len(attempts) == 2, what="the second attempt", interval=0.01)
    assert 0.19 <= attempts[1] - attempts[0] < 5.0
    assert queue._failures == {}


async def test_refused_input_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    """RefuseInput: logged with its message, never retried (the watches bring the change that cures it)."""
    runs: list[str] = []

    async def handle(key: str) -> None:
        runs.append(key)
        raise RefuseInput("annotation stash.appscode.com/backup-blueprint names no BackupBlueprint")

    queue = WorkQueue(handle, workers=1, base_delay=0.01)
    async with running(queue):
        queue.add("Deployment/demo/web")
        await asyncio.wait_for(queue.wait_idle(), 5)
        assert queue.pending() == 0
    assert runs == ["Deployment/demo/web"]
    assert any("names no BackupBlueprint" in str(getattr(r, "error", "")) for r in caplog.records)


def test_every_operator_exception_has_one_root() -> None:
    """Every exception class the operator defines derives from exactly one of RetryLater, RefuseInput."""
    import importlib
    import inspect
    import pkgutil

    import stashlet.operator

    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(stashlet.operator.__path__, "stashlet.operator."):
        module = importlib.import_module(info.name)
        found += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == info.name
        ]
    roots = (RetryLater, RefuseInput)
    assert found  # AutoBackupError at least
    for cls in found:
        if cls in (*roots, OperatorError):
            continue
        assert sum(issubclass(cls, root) for root in roots) == 1, cls


async def test_a_forgotten_timer_never_fires_and_is_not_pending() -> None:
    """``forget`` drops a key's timer (its session ended before its deadline): the key is not pending, and
    it is not handled when the timer would have fired."""
    runs: list[str] = []

    async def handle(key: str) -> None:
        runs.append(key)

    queue = WorkQueue(handle)
    async with running(queue):
        queue.add("deadline", 0.2)
        queue.add("other", 0.2)
        assert queue.pending() == 2
        queue.forget("deadline")
        queue.forget("never-added")
        assert queue.pending() == 1
        await eventually(lambda: runs == ["other"], what="the other timer to fire", interval=0.05)
        await asyncio.sleep(0.3)
    assert runs == ["other"]
