"""Several list-then-watch streams followed into their handlers, with readiness once all have listed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from stashlet.kube.watch import SYNCED, WatchEvent

log = logging.getLogger(__name__)


class WatchSet:
    """Follow each watch into its handler; :attr:`all_synced` is set once every one of them has listed."""

    def __init__(self) -> None:
        """An empty set; :meth:`expect` says how many watches will follow."""
        self.synced: dict[str, asyncio.Event] = {}
        self.all_synced = asyncio.Event()
        """Set once every watch has listed its collection (readiness)."""
        self._expected = 0

    def expect(self, count: int) -> None:
        """``count`` watches will be followed (readiness waits for all of them)."""
        self._expected = count

    async def follow(
        self, what: str, events: AsyncIterator[WatchEvent], on_event: Callable[[WatchEvent], None]
    ) -> None:
        """Hand every event of ``events`` (named ``what``) to ``on_event``; a handler that fails is
        logged and the watch goes on (a malformed object must not end it)."""
        synced = self.synced.setdefault(what, asyncio.Event())
        async for event in events:
            if event.type == SYNCED:
                synced.set()
                if sum(e.is_set() for e in self.synced.values()) == self._expected:
                    self.all_synced.set()
                continue
            try:
                on_event(event)
            except Exception:
                log.exception("event handling failed", extra={"kind": what, "object": event.key})
