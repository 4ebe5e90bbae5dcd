"""An ordered, coalescing work queue: each key is handled by one worker at a time, in the order of events.

Adding a key that is already waiting does nothing (one run will see the latest state); adding a key that
is being handled makes it run once more afterwards. A failed run is retried with exponential backoff
(``base_delay`` doubling up to ``max_delay``); the count resets after a success. The operator's own
errors say otherwise (:mod:`stashlet.operator.errors`): :class:`RetryLater` comes back after its delay,
uncounted, and :class:`RefuseInput` is logged and not retried. Different keys are
handled concurrently by up to ``workers`` workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from stashlet.kube.errors import KubeError, is_transient
from stashlet.operator.errors import RefuseInput, RetryLater

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None]]


class WorkQueue:
    """See the module docstring."""

    def __init__(
        self, handler: Handler, *, workers: int = 8, base_delay: float = 0.5, max_delay: float = 60.0
    ) -> None:
        """Handle keys with ``handler`` on ``workers`` workers."""
        self.handler = handler
        self.workers = workers
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: set[str] = set()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: str, delay: float = 0.0) -> None:
        """Have ``key`` handled (after ``delay`` seconds)."""
        if delay > 0:
            loop = asyncio.get_running_loop()
            timer = self._timers.get(key)
            due = loop.time() + delay
            if timer is not None and timer.when() <= due:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(due, self._fire, key)
            return
        self._idle.clear()
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def forget(self, key: str) -> None:
        """Drop ``key``'s timer, if it has one (what it was due for no longer needs doing)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def running(self, key: str) -> bool:
        """True while ``key`` is being handled."""
        return key in self._running

    def pending(self) -> int:
        """Keys waiting, running or due for a retry."""
        return len(self._waiting) + len(self._running) + len(self._timers)

    async def wait_idle(self) -> None:
        """Return once nothing waits or runs (retries may still be scheduled)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Run the workers until cancelled (pending retries are dropped then)."""
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.workers):
                    group.create_task(self._work())
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._running.add(key)
            try:
                await self.handler(key)
            except asyncio.CancelledError:
                raise
            except RetryLater as exc:
                log.debug(
                    "not yet; retrying", extra={"object": key, "why": exc.message, "retry_in": exc.delay}
                )
                self.add(key, exc.delay)
            except RefuseInput as exc:
                self._failures.pop(key, None)
                log.warning("refused", extra={"object": key, "error": exc.message})
            except Exception as exc:  # a failed key must never stop a worker
                self._retry(key, exc)
            else:
                self._failures.pop(key, None)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                elif not self._waiting and not self._running:
                    self._idle.set()

    def _retry(self, key: str, exc: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self.base_delay * 2 ** (failures - 1), self.max_delay)
        transient = is_transient(exc)
        message = exc.message if isinstance(exc, KubeError) else str(exc)
        log.log(
            logging.INFO if transient else logging.WARNING,
            "reconcile failed; retrying",
            extra={"object": key, "error": message, "error_type": type(exc).__name__, "retry_in": delay},
            exc_info=not transient and not isinstance(exc, KubeError),
        )
        self.add(key, delay)
