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


def _pauses(timeout: float, interval: float) -> Iterator[float]:
    """Before each next try, how long to sleep: ``interval``, cut short at the deadline; ends once the
    deadline has passed (so the last try comes at the deadline, not an interval before it)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        yield min(interval, left)


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
    pauses = _pauses(timeout, interval)
    while True:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        pause = next(pauses, None)
        if pause is None:
            _fail(what, timeout, last, log)
        await asyncio.sleep(pause)


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.2,
    log: Callable[[], str] | None = None,
) -> T:
    """``probe()``'s first truthy value, for sync tests (see the module docstring)."""
    pauses = _pauses(timeout, interval)
    while True:
        last = probe()
        if last:
            return last
        pause = next(pauses, None)
        if pause is None:
            _fail(what, timeout, last, log)
        time.sleep(pause)


def in_thread(probe: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``probe`` as an async probe run in a worker thread (for a blocking call such as kubectl)."""
    return lambda: asyncio.to_thread(probe)
