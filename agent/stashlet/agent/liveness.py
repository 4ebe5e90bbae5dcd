"""Liveness from heartbeats: a loop that stops making progress makes ``/healthz`` fail.

A :class:`Heartbeat` is stamped by the loop it watches each time that loop goes round, on the monotonic
clock. It is *stale* once its last stamp is older than its bound, and *stopped* once its loop has ended
(the loop records why). :func:`wedged` names every heartbeat in either state; an empty answer means
alive. The kubelet restarts a container whose liveness probe keeps failing, which is the one remedy for
a loop that is stuck (a connection that never answers, a task that died).

The HTTP handler answering the probe runs on the same event loop, so a loop blocked outright answers
nothing and fails the probe by itself; :func:`tick` covers what remains: a loop that still answers now
and then but lags far behind (its heartbeat, stamped every second, falls behind its bound).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Clock = Callable[[], float]


def is_stale(last: float, now: float, bound: float) -> bool:
    """The staleness rule: a heartbeat last stamped at ``last`` is stale at ``now`` when more than
    ``bound`` seconds have passed (exactly ``bound`` is still fresh)."""
    return now - last > bound


@dataclass
class Heartbeat:
    """The last sign of progress of one named loop."""

    name: str
    """Named in ``/healthz``'s answer, e.g. ``backupSessionWatch``."""
    bound: float
    """Seconds without a stamp after which the loop counts as wedged."""
    clock: Clock = time.monotonic
    last: float = field(init=False)
    stopped: str | None = field(default=None, init=False)
    """Why the loop ended, once it has (it will not stamp again)."""

    def __post_init__(self) -> None:
        self.last = self.clock()

    def beat(self) -> None:
        """The loop made progress now."""
        self.last = self.clock()

    def stop(self, reason: str) -> None:
        """The loop ended; ``reason`` says how (no secrets: it is served over HTTP)."""
        self.stopped = reason

    def problem(self) -> str | None:
        """Why this loop counts as wedged, or None while it makes progress."""
        if self.stopped is not None:
            return f"stopped: {self.stopped}"
        now = self.clock()
        if is_stale(self.last, now, self.bound):
            return f"no progress for {now - self.last:.0f}s (bound {self.bound:.0f}s)"
        return None


def wedged(heartbeats: Iterable[Heartbeat]) -> dict[str, str]:
    """The heartbeats that are stale or stopped, by name, with why; empty while all are alive."""
    return {beat.name: problem for beat in heartbeats if (problem := beat.problem()) is not None}


async def tick(heartbeat: Heartbeat, every: float = 1.0) -> None:
    """Stamp ``heartbeat`` every ``every`` seconds until cancelled: the event loop's own heartbeat."""
    while True:
        heartbeat.beat()
        await asyncio.sleep(every)
