"""The agent's liveness: the staleness rule on a frozen clock, the event-loop ticker, and the sidecar's
BackupSession watch stamping its heartbeat against a fake API server (no cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from tests.polling import eventually

from stashlet.agent.backup.daemon import LOOP_BOUND, Sidecar, watch_bound
from stashlet.agent.backup.run import BackupRunner
from stashlet.agent.context import AgentContext
from stashlet.agent.hosts import identify
from stashlet.agent.live import LiveState
from stashlet.agent.liveness import Heartbeat, is_stale, tick, wedged
from stashlet.agent.settings import AgentSettings
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Forbidden, from_response
from stashlet.kube.rest import KubeApi
from stashlet.kube.watch import Collection, WatchSettings

SOON = 5.0
"""How long the fakes may take (they answer at once); looked at every 10 ms."""


@dataclass
class FrozenClock:
    """A monotonic clock that moves only when a test moves it."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("last", "now", "bound", "stale"),
    [
        (100.0, 100.0, 30.0, False),
        (100.0, 130.0, 30.0, False),  # exactly the bound is still fresh
        (100.0, 130.5, 30.0, True),
        (100.0, 99.0, 30.0, False),  # a stamp "from the future" is fresh
    ],
)
def test_staleness_rule(last: float, now: float, bound: float, stale: bool) -> None:
    """A heartbeat is stale once more than its bound has passed since its last stamp."""
    assert is_stale(last, now, bound) is stale


def test_heartbeat_on_a_frozen_clock() -> None:
    """Fresh when made and within its bound; stale past it (saying for how long); fresh again after a
    stamp; stopped for good once its loop ended."""
    clock = FrozenClock()
    beat = Heartbeat("backupSessionWatch", bound=420.0, clock=clock)
    assert beat.problem() is None
    clock.now += 420.0
    assert beat.problem() is None
    clock.now += 12.0
    assert beat.problem() == "no progress for 432s (bound 420s)"
    beat.beat()
    assert beat.problem() is None
    beat.stop("cancelled")
    assert beat.problem() == "stopped: cancelled"
    beat.beat()
    assert beat.problem() == "stopped: cancelled"


def test_wedged_names_only_the_stale_and_the_stopped() -> None:
    """wedged() maps each stale or stopped heartbeat's name to why; empty while all are fresh."""
    clock = FrozenClock()
    watch = Heartbeat("backupSessionWatch", bound=420.0, clock=clock)
    loop = Heartbeat("eventLoop", bound=30.0, clock=clock)
    other = Heartbeat("other", bound=1000.0, clock=clock)
    assert wedged([watch, loop, other]) == {}
    clock.now += 60.0
    assert wedged([watch, loop, other]) == {"eventLoop": "no progress for 60s (bound 30s)"}
    watch.stop("ended")
    loop.beat()
    assert wedged([watch, loop, other]) == {"backupSessionWatch": "stopped: ended"}


async def test_tick_keeps_the_event_loop_heartbeat_fresh() -> None:
    """tick() stamps its heartbeat again and again: however far the clock jumps, it is fresh soon after."""
    clock = FrozenClock()
    beat = Heartbeat("eventLoop", bound=30.0, clock=clock)
    ticker = asyncio.create_task(tick(beat, every=0.01))
    try:
        for _ in range(3):
            clock.now += 100.0
            assert beat.problem() is not None
            await eventually(
                lambda: beat.problem() is None, what="a fresh heartbeat", timeout=SOON, interval=0.01
            )
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


# ---------------------------------------------------------------- the sidecar's watch


@dataclass
class FakeCollection:
    """An empty BackupSession collection behind a fake API client: its list answers no items; each watch
    reads the lines a test sends (b"" ends the connection, as the server's watch timeout does); ``forbid``
    makes watches 403."""

    lines: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    forbid: bool = False
    watches: int = 0

    async def send(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def stream(
        self, path: str, query: Any = None, *, accept: str | None = None
    ) -> AsyncIterator[bytes]:
        self.watches += 1
        if self.forbid:
            status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "watch is forbidden"}
            raise from_response(json.dumps(status).encode(), 403, "Forbidden")
        while line := await self.lines.get():
            yield line

    async def close(self) -> None:
        pass

    def bookmark(self, version: str) -> None:
        event = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": version}}}
        self.lines.put_nowait(json.dumps(event).encode() + b"\n")


@dataclass
class FakeStash:
    """The part of StashClient the sidecar's sweep and watch use."""

    collection: FakeCollection

    async def list(self, model: type, namespace: str | None = None) -> list[Any]:
        return []

    def list_fn(self, model: type, namespace: str | None = None) -> Collection:
        return Collection(cast(KubeApi, self.collection), "/apis/stash.appscode.com/v1beta1/backupsessions")


def sidecar_on(collection: FakeCollection, clock: FrozenClock) -> Sidecar:
    """A Deployment's sidecar whose API server is ``collection`` and whose heartbeats use ``clock``."""
    settings = AgentSettings(
        mode="sidecar",
        invoker_kind="BackupConfiguration",
        invoker_name="sample-backup",
        target_kind="Deployment",
        target_name="app",
        namespace="demo",
        pod_name="app-7d9f-abcde",
        node_name=None,
        status_port=0,
        listen_host="127.0.0.1",
        tmp_dir="/tmp",
        pushgateway_url=None,
        log_level="info",
        backup_session=None,
        api_token_file=None,
        restic_binary="restic",
    )
    host = identify(settings.target_kind, settings.pod_name, settings.node_name)
    live = LiveState(invoker={}, target={}, host=host.name, mode="sidecar")
    ctx = AgentContext(
        settings=settings,
        api=cast(Any, None),
        stash=cast(StashClient, FakeStash(collection)),
        events=cast(Any, None),
        host=host,
        live=live,
        restic=cast(Any, None),
    )
    return Sidecar(ctx, cast(BackupRunner, None), clock=clock)


@contextlib.asynccontextmanager
async def running(sidecar: Sidecar) -> AsyncIterator[asyncio.Task[None]]:
    """The sidecar's main loop as a task, cancelled at the end."""
    task = asyncio.create_task(sidecar.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Forbidden):
            await task


async def test_sidecar_watch_heartbeat_follows_bookmarks_and_reconnects() -> None:
    """A quiet namespace (bookmarks only) keeps the watch alive; a watch that stops going round is wedged
    past its bound; a reconnect (the server ended the watch) is progress too; once the loop is cancelled
    the watch is reported stopped. The event loop's ticker runs alongside."""
    clock = FrozenClock()
    collection = FakeCollection()
    sidecar = sidecar_on(collection, clock)
    bound = watch_bound(WatchSettings())
    assert sidecar.wedged() == {}
    async with running(sidecar) as task:
        await eventually(
            lambda: sidecar.ctx.live.watching and collection.watches == 1,
            what="the first watch",
            timeout=SOON,
            interval=0.01,
        )

        clock.now += bound - 20.0
        collection.bookmark("2")
        await eventually(
            lambda: sidecar.watch_heartbeat.last == clock.now,
            what="the bookmark as progress",
            timeout=SOON,
            interval=0.01,
        )
        await eventually(  # the ticker caught up with the clock
            lambda: "eventLoop" not in sidecar.wedged(), what="the ticker", timeout=SOON, interval=0.01
        )
        assert sidecar.wedged() == {}

        clock.now += bound - 20.0  # within the bound since the bookmark
        assert "backupSessionWatch" not in sidecar.wedged()
        clock.now += 30.0
        expected = f"no progress for {bound + 10:.0f}s (bound {bound:.0f}s)"
        assert sidecar.wedged()["backupSessionWatch"] == expected

        collection.lines.put_nowait(b"")  # the server ends the watch; the sidecar watches again
        await eventually(
            lambda: collection.watches == 2, what="the second watch", timeout=SOON, interval=0.01
        )
        assert "backupSessionWatch" not in sidecar.wedged()

        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sidecar.wedged()["backupSessionWatch"] == "stopped: cancelled"


async def test_sidecar_whose_watch_dies_is_wedged() -> None:
    """A watch that fails for good (403) ends the sidecar's loop, and /healthz's source names it."""
    clock = FrozenClock()
    sidecar = sidecar_on(FakeCollection(forbid=True), clock)
    async with running(sidecar) as task:
        with pytest.raises(Forbidden):
            await task
    assert sidecar.wedged() == {"backupSessionWatch": "stopped: failed (Forbidden; see the agent's log)"}


def test_the_bounds_leave_room_for_a_healthy_watch() -> None:
    """The watch's bound exceeds the longest quiet of a healthy watch (inactivity timeout plus the
    longest back-off); the event loop's bound is many of its one-second ticks."""
    settings = WatchSettings()
    assert watch_bound(settings) > settings.inactivity_timeout + settings.backoff_max
    assert watch_bound(settings) > settings.server_timeout
    assert LOOP_BOUND >= 10.0
