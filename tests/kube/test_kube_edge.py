"""The shared Kubernetes edge against the real API server: watch, status updates, leases, events."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from tests.polling import eventually

from stashlet.api.backupsession import BackupSession, BackupSessionStatus
from stashlet.kube import errors, paths
from stashlet.kube.client import new_api_client
from stashlet.kube.custom import StashClient
from stashlet.kube.events import EventRecorder
from stashlet.kube.leases import LeaseLock, LeaseLost
from stashlet.kube.rest import KubeApi, Query
from stashlet.kube.watch import ADDED, DELETED, MODIFIED, SYNCED, Collection, WatchEvent, WatchSettings, watch
from stashlet.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def session(namespace: str, name: str) -> BackupSession:
    return BackupSession.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "bc"}
            },
        }
    )


async def collect(events: AsyncIterator[WatchEvent], queue: asyncio.Queue[WatchEvent]) -> None:
    async for event in events:
        await queue.put(event)


async def next_event(queue: asyncio.Queue[WatchEvent], skip_synced: bool = True) -> WatchEvent:
    while True:
        event = await asyncio.wait_for(queue.get(), 20)
        if not (skip_synced and event.type == SYNCED):
            return event


async def test_watch_lists_then_follows_changes(api: KubeApi, namespace: str) -> None:
    """Existing objects come as ADDED, then SYNCED, then creations, updates and deletions in order."""
    stash = StashClient(api)
    await stash.create(session(namespace, "before"))
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    task = asyncio.create_task(collect(watch(stash.list_fn(BackupSession, namespace)), queue))
    try:
        first = await next_event(queue, skip_synced=False)
        assert (first.type, first.key) == (ADDED, f"{namespace}/before")
        assert (await next_event(queue, skip_synced=False)).type == SYNCED
        await stash.create(session(namespace, "after"))
        assert (await next_event(queue)).key == f"{namespace}/after"
        await stash.patch(BackupSession, namespace, "after", {"metadata": {"labels": {"x": "y"}}})
        modified = await next_event(queue)
        assert modified.type == MODIFIED
        assert modified.object["metadata"]["labels"] == {"x": "y"}
        await stash.delete(BackupSession, namespace, "before")
        deleted = await next_event(queue)
        assert (deleted.type, deleted.key) == (DELETED, f"{namespace}/before")
    finally:
        task.cancel()


async def test_watch_relists_after_gone_and_reports_what_changed(api: KubeApi, namespace: str) -> None:
    """A 410 Gone makes the watch list again; objects deleted or changed meanwhile are reported once."""
    stash = StashClient(api)
    await stash.create(session(namespace, "kept"))
    await stash.create(session(namespace, "removed"))
    real = stash.list_fn(BackupSession, namespace)
    calls = {"watch": 0}

    class Flaky:
        """The real client, but its first watch meets changes made meanwhile and then a 410."""

        send = api.send
        close = api.close

        async def stream(
            self, path: str, query: Query | None = None, *, accept: str | None = None
        ) -> AsyncGenerator[bytes, None]:
            calls["watch"] += 1
            if calls["watch"] == 1:
                # While "disconnected": one object deleted, one changed; then the server says 410.
                await stash.delete(BackupSession, namespace, "removed")
                await stash.patch(BackupSession, namespace, "kept", {"metadata": {"labels": {"v": "2"}}})
                raise errors.Gone("too old resource version")
            async for line in api.stream(path, query, accept=accept):
                yield line

    flaky = Collection(Flaky(), real.path)
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    task = asyncio.create_task(collect(watch(flaky, settings=WatchSettings(backoff_initial=0.01)), queue))
    try:
        seen = [await next_event(queue) for _ in range(4)]
        kinds = [(e.type, e.key.split("/")[1]) for e in seen]
        assert kinds[:2] == [(ADDED, "kept"), (ADDED, "removed")]
        assert sorted(kinds[2:]) == [(DELETED, "removed"), (MODIFIED, "kept")]
        assert seen[3].type == MODIFIED or seen[2].object["metadata"]["labels"] == {"v": "2"}
        assert queue.qsize() <= 1  # at most the trailing SYNCED
    finally:
        task.cancel()


async def test_watch_holds_and_hands_out_only_what_keep_keeps(api: KubeApi, namespace: str) -> None:
    """With ``keep``, every object is trimmed before it is remembered and handed out: listed, watched, and
    one a re-list finds gone (handed out as it was remembered)."""
    stash = StashClient(api)
    await stash.create(session(namespace, "listed"))
    real = stash.list_fn(BackupSession, namespace)
    calls = {"watch": 0}

    class GoneOnce:
        """The real client, but its first watch meets a deletion and then a 410."""

        send = api.send
        close = api.close

        async def stream(
            self, path: str, query: Query | None = None, *, accept: str | None = None
        ) -> AsyncGenerator[bytes, None]:
            calls["watch"] += 1
            if calls["watch"] == 1:
                await stash.delete(BackupSession, namespace, "listed")
                raise errors.Gone("too old resource version")
            async for line in api.stream(path, query, accept=accept):
                yield line

    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion")}}

    events = watch(Collection(GoneOnce(), real.path), settings=WatchSettings(backoff_initial=0.01), keep=keep)
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    task = asyncio.create_task(collect(events, queue))
    try:
        listed = await next_event(queue)
        gone = await next_event(queue)
        await stash.create(session(namespace, "watched"))
        watched = await next_event(queue)
        seen = [(e.type, e.key.split("/")[1]) for e in (listed, gone, watched)]
        assert seen == [(ADDED, "listed"), (DELETED, "listed"), (ADDED, "watched")]
        for event in (listed, gone, watched):
            assert set(event.object) == {"metadata"}
            assert set(event.object["metadata"]) == {"name", "namespace", "resourceVersion"}
    finally:
        task.cancel()


async def test_update_status_keeps_every_concurrent_writer(api: KubeApi, namespace: str) -> None:
    """Eight writers adding their own host entry at once: all eight entries survive (409s are retried)."""
    stash = StashClient(api)
    await stash.create(session(namespace, "shared"))

    async def add_host(i: int) -> None:
        def mutate(obj: BackupSession) -> None:
            status = obj.to_dict().get("status", {})
            targets = status.setdefault(
                "targets", [{"ref": {"kind": "StatefulSet", "name": "db"}, "stats": []}]
            )
            targets[0]["stats"].append({"hostname": f"host-{i}", "phase": "Succeeded"})
            obj.status = BackupSessionStatus.from_dict(status)

        await stash.update_status(BackupSession, namespace, "shared", mutate)

    await asyncio.gather(*(add_host(i) for i in range(8)))
    final = (await stash.get(BackupSession, namespace, "shared")).to_dict()
    hosts = sorted(s["hostname"] for s in final["status"]["targets"][0]["stats"])
    assert hosts == [f"host-{i}" for i in range(8)]


async def test_lease_is_held_by_one_candidate_at_a_time(api: KubeApi, namespace: str) -> None:
    """Of two candidates only one holds the lease; when it releases, the other takes it over."""
    first = LeaseLock(api, namespace, "lock-deployment-app-backup", "pod-a", duration=4, renew_every=0.5)
    second = LeaseLock(api, namespace, "lock-deployment-app-backup", "pod-b", duration=4, renew_every=0.5)
    tasks = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(first.wait_held(), 10)
        tasks.append(asyncio.create_task(second.run()))
        lease_path = paths.object_path("coordination.k8s.io", "v1", "leases", namespace, first.name)
        renewals: set[str] = set()

        async def renewed_twice() -> bool:
            # The holder renews while the second candidate keeps trying (both every 0.5 s): two renewals
            # seen after the second started mean it had its chances and did not take over.
            lease = await api.send("GET", lease_path)
            assert lease["spec"]["holderIdentity"] == "pod-a"
            renewals.add(lease["spec"]["renewTime"])
            return len(renewals) > 2

        await eventually(renewed_twice, what="two renewals by the holder", timeout=10, interval=0.1)
        assert first.held
        assert not second.held
        with pytest.raises(LeaseLost):
            second.ensure_held()
        tasks[0].cancel()
        await first.release()
        await asyncio.wait_for(second.wait_held(), 10)
        assert second.held
        assert not first.held
        lease = await api.send("GET", lease_path)
        assert lease["spec"]["holderIdentity"] == "pod-b"
    finally:
        for task in tasks:
            task.cancel()


async def test_events_are_recorded_and_counted(api: KubeApi, namespace: str) -> None:
    """The same event twice is one Event with count 2, from the component the seeds name."""
    stash = StashClient(api)
    obj = (await stash.create(session(namespace, "evented"))).to_dict()
    recorder = EventRecorder(api, "BackupSession Controller")
    for _ in range(2):
        await recorder.record(obj, "Warning", "BackupSessionSkipped", "Backup Configuration is paused")
    events = await api.send("GET", paths.core("events", namespace))
    mine = [e for e in events["items"] if e["involvedObject"]["name"] == "evented"]
    assert len(mine) == 1
    assert (mine[0]["type"], mine[0]["reason"], mine[0]["message"], mine[0]["count"]) == (
        "Warning",
        "BackupSessionSkipped",
        "Backup Configuration is paused",
        2,
    )
    assert mine[0]["source"]["component"] == "BackupSession Controller"


async def test_errors_are_translated(api: KubeApi, namespace: str) -> None:
    """A missing object is NotFound and a duplicate Conflict, with the server's message kept."""
    stash = StashClient(api)
    with pytest.raises(errors.NotFound, match="not found"):
        await stash.get(BackupSession, namespace, "nope")
    await stash.create(session(namespace, "dup"))
    with pytest.raises(errors.Conflict, match="already exists"):
        await stash.create(session(namespace, "dup"))
    with pytest.raises(errors.NotFound, match="not found"):
        await api.send("GET", paths.core("secrets", namespace, "absent"))


async def test_watch_survives_an_api_server_restart(own_plane: ControlPlane) -> None:
    """kube-apiserver restarted mid-watch: objects created before and after arrive once each, none lost.

    The restart is done to a control plane of this test's own, so that no other test sees the outage.
    """
    api = await new_api_client(str(own_plane.kubeconfig))
    namespace = "restart"
    own_plane.kubectl("create", "namespace", namespace)
    stash = StashClient(api)
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    settings = WatchSettings(backoff_initial=0.2, backoff_max=1.0)
    task = asyncio.create_task(
        collect(watch(stash.list_fn(BackupSession, namespace), settings=settings), queue)
    )
    try:
        assert (await next_event(queue, skip_synced=False)).type == SYNCED
        await stash.create(session(namespace, "before-restart"))
        assert (await next_event(queue)).key == f"{namespace}/before-restart"
        await asyncio.to_thread(own_plane.restart_apiserver, 1.0)
        await stash.create(session(namespace, "after-restart"))
        await stash.create(session(namespace, "marker"))
        seen = [await next_event(queue)]
        while seen[-1].key != f"{namespace}/marker":
            seen.append(await next_event(queue))
        # Everything up to the marker, in order: "before-restart" is not delivered twice.
        assert [(e.type, e.key) for e in seen] == [
            (ADDED, f"{namespace}/after-restart"),
            (ADDED, f"{namespace}/marker"),
        ]
    finally:
        task.cancel()
        await api.close()
