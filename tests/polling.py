"""The one way tests wait for something to become true: poll a probe until it returns a truthy value.

:func:`eventually` (async tests) and :func:`wait_until` (sync tests) share one loop: call the probe
(awaiting it when it returns an awaitable), return its first truthy value, sleep ``interval`` between
tries, and at ``timeout`` fail the test naming ``what``, with the last value and, when given, the tail
of ``log()``. Tests never sleep a fixed time to let something happen: they wait for the state that
proves it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")

Probe = Callable[[], Any]


def _deadline_loop(timeout: float, interval: float) -> Iterator[float]:
    """Yield the sleep before each next try until ``timeout`` has passed (the first try is immediate)."""
    deadline = time.monotonic() + timeout
    while True:
        yield interval
        if time.monotonic() >= deadline:
            return


def _fail(what: str, timeout: float, last: Any, log: Callable[[], str] | None) -> NoReturn:
    tail = f"\n{log()[-6000:]}" if log is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}: last {last!r}{tail}")


async def eventually(
    probe: Probe,
    *,
    what: str,
    timeout: float = 30.0,  # noqa: ASYNC109 - a polling deadline, not an I/O timeout
    interval: float = 0.2,
    log: Callable[[], str] | None = None,
) -> Any:
    """Await ``probe()``'s first truthy value (see the module docstring)."""
    last: Any = None
    for pause in _deadline_loop(timeout, interval):
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(pause)
    _fail(what, timeout, last, log)


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.2,
    log: Callable[[], str] | None = None,
) -> T:
    """``probe()``'s first truthy value, for sync tests (see the module docstring)."""
    last: Any = None
    for pause in _deadline_loop(timeout, interval):
        last = probe()
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(pause)
    _fail(what, timeout, last, log)


def in_thread(probe: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``probe`` as an async probe run in a worker thread (for a blocking call such as kubectl)."""
    return lambda: asyncio.to_thread(probe)
