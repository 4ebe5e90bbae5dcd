"""Server-side selection on the real API server, with both clients of the shared layer: a collection
narrowed by ``spec.invoker`` (the BackupSession CRD's ``selectableFields``) lists and watches only its
invoker's sessions, labelled or not, across a 410 relist; a selector the server refuses (400) falls back
to the wider collection with a warning, for a watch and a one-off list alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from stashlet.api.backupsession import BackupSession
from stashlet.kube import errors
from stashlet.kube.custom import StashClient
from stashlet.kube.rest import KubeApi, Query
from stashlet.kube.watch import (
    ADDED,
    DELETED,
    SYNCED,
    Collection,
    WatchEvent,
    WatchSettings,
    list_objects,
    watch,
)

pytestmark = pytest.mark.cluster

MINE = {"spec.invoker.kind": "BackupConfiguration", "spec.invoker.name": "mine"}


def session(namespace: str, name: str, invoker: str, *, labelled: bool = False) -> BackupSession:
    labels = {"stash.appscode.com/invoker-name": invoker} if labelled else {}
    return BackupSession.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": invoker}
            },
        }
    )


async def collect(events: AsyncIterator[WatchEvent], queue: asyncio.Queue[WatchEvent]) -> None:
    async for event in events:
        await queue.put(event)


async def until_synced(queue: asyncio.Queue[WatchEvent]) -> list[WatchEvent]:
    """The events up to the next SYNCED (that one left out)."""
    seen = []
    while (event := await asyncio.wait_for(queue.get(), 20)).type != SYNCED:
        seen.append(event)
    return seen


class Recording:
    """The real client, recording the query of every list and watch; its first watch meets changes made
    meanwhile and then a 410 (so the watch lists again)."""

    def __init__(self, api: KubeApi, meanwhile: Any) -> None:
        self.api = api
        self.meanwhile = meanwhile
        self.lists: list[dict[str, Any]] = []
        self.watches: list[dict[str, Any]] = []

    async def send(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET":
            self.lists.append(dict(kwargs.get("query") or {}))
        return await self.api.send(method, path, **kwargs)

    async def close(self) -> None:
        await self.api.close()

    async def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.watches.append(dict(query or {}))
        if len(self.watches) == 1:
            await self.meanwhile()
            raise errors.Gone("too old resource version")
        async for line in self.api.stream(path, query, accept=accept):
            yield line


async def test_a_selected_watch_receives_only_its_invokers_sessions(api: KubeApi, namespace: str) -> None:
    """Listed, relisted after a 410 and watched: only ``mine``'s sessions, those without labels too;
    every list and watch carried the field selector."""
    stash = StashClient(api)
    await stash.create(session(namespace, "mine-labelled", "mine", labelled=True))
    await stash.create(session(namespace, "mine-by-hand", "mine"))
    await stash.create(session(namespace, "other-1", "other", labelled=True))

    async def meanwhile() -> None:
        await stash.create(session(namespace, "other-2", "other"))
        await stash.create(session(namespace, "mine-meanwhile", "mine"))
        await stash.delete(BackupSession, namespace, "mine-labelled")

    recording = Recording(api, meanwhile)
    collection = Collection(recording, stash.list_fn(BackupSession, namespace).path).selecting(**MINE)
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    task = asyncio.create_task(
        collect(watch(collection, settings=WatchSettings(backoff_initial=0.01)), queue)
    )
    try:
        listed = await until_synced(queue)
        assert sorted((e.type, e.key) for e in listed) == [
            (ADDED, f"{namespace}/mine-by-hand"),
            (ADDED, f"{namespace}/mine-labelled"),
        ]
        relisted = await until_synced(queue)  # after the 410: what changed among mine alone
        assert sorted((e.type, e.key) for e in relisted) == [
            (ADDED, f"{namespace}/mine-meanwhile"),
            (DELETED, f"{namespace}/mine-labelled"),
        ]
        for i in range(5):
            await stash.create(session(namespace, f"other-late-{i}", "other"))
        await stash.create(session(namespace, "mine-late", "mine"))
        late = await asyncio.wait_for(queue.get(), 20)
        assert (late.type, late.key) == (ADDED, f"{namespace}/mine-late")
        assert queue.empty()
    finally:
        task.cancel()
    selector = "spec.invoker.kind=BackupConfiguration,spec.invoker.name=mine"
    assert [q.get("fieldSelector") for q in recording.lists] == [selector, selector]
    assert [q.get("fieldSelector") for q in recording.watches] == [selector, selector]


async def test_a_refused_selector_falls_back_to_the_wider_collection(
    api: KubeApi, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A field the CRD does not declare selectable (as ``spec.invoker.name`` is on a cluster or CRD
    without ``selectableFields``): the server answers 400, and the watch and the list go on with the
    namespace's sessions, saying so once each in a warning; without a wider collection the 400 is raised."""
    stash = StashClient(api)
    await stash.create(session(namespace, "a", "mine"))
    await stash.create(session(namespace, "b", "other"))
    namespace_wide = stash.list_fn(BackupSession, namespace)
    refused = namespace_wide.selecting(**{"spec.retryLeft": "1"})
    with pytest.raises(errors.BadRequest, match="field label not supported"):
        await list_objects(namespace_wide.where(fieldSelector="spec.retryLeft=1"))

    caplog.set_level(logging.WARNING, logger="stashlet.kube.watch")
    listed = await list_objects(refused)
    assert sorted(obj["metadata"]["name"] for obj in listed) == ["a", "b"]
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
    task = asyncio.create_task(collect(watch(refused), queue))
    try:
        assert sorted(e.key for e in await until_synced(queue)) == [f"{namespace}/a", f"{namespace}/b"]
        await stash.create(session(namespace, "c", "other"))
        assert (await asyncio.wait_for(queue.get(), 20)).key == f"{namespace}/c"
    finally:
        task.cancel()
    warnings = [r for r in caplog.records if r.getMessage().startswith("the API server cannot select")]
    assert len(warnings) == 2
    assert all(getattr(r, "fieldSelector", None) == "spec.retryLeft=1" for r in warnings)
    assert all("field label not supported" in getattr(r, "error", "") for r in warnings)
