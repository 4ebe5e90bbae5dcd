"""A robust list-then-watch of any Kubernetes collection, yielding plain dicts in order.

- It lists first (paged), then watches from the list's resourceVersion with bookmarks.
- 410 Gone (or an ERROR event carrying it) means the version is too old: it lists again and reports
  what changed meanwhile, including objects deleted while it was not watching.
- A connection that says nothing for ``inactivity_timeout`` seconds is dropped and resumed.
- Transient failures (connection lost, 5xx, 429) back off exponentially and resume from the last
  seen resourceVersion, so no event is missed and none is delivered twice.
- After every (re)list it yields a ``SYNCED`` event: the caller's view is complete from then on.
- ``on_progress``, when given, is called each time the watch goes round: every line the server sends
  (bookmarks too), every (re)list and every reconnect or retry. A caller uses it as a heartbeat; a quiet
  collection still calls it (bookmarks, the server's watch timeout, the inactivity timeout).
- A collection narrowed with :meth:`Collection.selecting` (a field selector the API server serves only
  where the CRD declares it ``selectableFields``) falls back to the collection it narrowed when the
  server refuses the selector (400, "field label not supported": an older cluster or CRD): a warning
  names the collection and the selector, and the caller's own filter does the selecting from then on.
- ``keep``, when given, trims every object to what the caller reads before it is remembered (to tell
  what changed or went on a re-list) and yielded: a watch of thousands of objects then holds only that
  (``managedFields`` alone is most of an object's metadata).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stashlet.kube.errors import BadRequest, Gone, KubeError, from_status_object, is_transient
from stashlet.kube.rest import KubeApi, Query

log = logging.getLogger(__name__)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
SYNCED = "SYNCED"

_METADATA = "application/json;as={kind};g=meta.k8s.io;v=v1,application/json"


@dataclass(frozen=True)
class Collection:
    """A collection to list and watch: the client, its path, and the query that narrows it."""

    api: KubeApi
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    metadata_only: bool = False
    """Ask for ``PartialObjectMetadata`` only (the operator's dependency watches: no Secret values, no
    pod templates in memory)."""
    wider: Collection | None = None
    """What to list and watch instead when the API server refuses this collection's selector (400); set
    by :meth:`selecting`."""

    def where(self, **query: str) -> Collection:
        """The same collection narrowed further (``labelSelector=...``); its wider one likewise."""
        wider = self.wider.where(**query) if self.wider is not None else None
        return replace(self, query={**self.query, **query}, wider=wider)

    def selecting(self, **fields: str) -> Collection:
        """The same collection narrowed by the server to objects whose ``fields`` (dotted paths, e.g.
        ``spec.invoker.name``) have these values; this collection when the server cannot select by them."""
        wanted = ",".join(f"{path}={value}" for path, value in sorted(fields.items()))
        field_selector = ",".join(filter(None, (self.query.get("fieldSelector"), wanted)))
        return replace(self, query={**self.query, "fieldSelector": field_selector}, wider=self)

    def widened(self, refusal: BadRequest) -> Collection:
        """The collection to use once the server refused this one with ``refusal``; raises it again when
        there is none wider."""
        if self.wider is None:
            raise refusal
        log.warning(
            "the API server cannot select by these fields; listing the wider collection and selecting here",
            extra={
                "path": self.path,
                "fieldSelector": self.query.get("fieldSelector"),
                "error": refusal.message,
            },
        )
        return self.wider

    def accept(self, *, watching: bool) -> str | None:
        """The Accept header: metadata only when asked, else JSON."""
        if not self.metadata_only:
            return None
        return _METADATA.format(kind="PartialObjectMetadata" if watching else "PartialObjectMetadataList")


@dataclass(frozen=True)
class WatchSettings:
    """Timeouts and backoff of a watch; the defaults suit a controller."""

    server_timeout: int = 300
    """Ask the server to end each watch after this many seconds (then it is resumed)."""
    inactivity_timeout: float = 330.0
    """Drop a connection that sent nothing (not even a bookmark) for this long."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    page_size: int = 500


@dataclass(frozen=True)
class WatchEvent:
    """One change: its type and the object as the server sent it."""

    type: str
    object: dict[str, Any]

    @property
    def key(self) -> str:
        """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
        return object_key(self.object)


def object_key(obj: dict[str, Any]) -> str:
    """``namespace/name`` of an object (``name`` when cluster-scoped)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _nothing() -> None:
    pass


def _whole(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _version(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


async def list_objects(collection: Collection, page_size: int = 500) -> list[dict[str, Any]]:
    """Every object of ``collection`` (paged), from its wider collection when the server refuses its
    selector (module docstring)."""
    while True:
        try:
            items, _ = await _list(collection, page_size)
        except BadRequest as refusal:
            collection = collection.widened(refusal)
            continue
        return items


async def _list(collection: Collection, page_size: int) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query: Query = {**collection.query, "limit": page_size, "continue": token}
        body = await collection.api.send(
            "GET", collection.path, query=query, accept=collection.accept(watching=False)
        )
        items.extend(body.get("items") or [])
        token = body.get("metadata", {}).get("continue")
        if not token:
            return items, str(body.get("metadata", {}).get("resourceVersion", ""))


async def _relist(
    collection: Collection,
    page_size: int,
    known: dict[str, dict[str, Any]],
    trim: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[deque[WatchEvent], str]:
    """List again: what went since ``known`` (DELETED), came (ADDED) or changed (MODIFIED), and the list's
    resourceVersion; ``known`` becomes the list, each object trimmed."""
    items, version = await _list(collection, page_size)
    current = {object_key(item): trim(item) for item in items}
    changes = deque(WatchEvent(DELETED, known.pop(key)) for key in list(known) if key not in current)
    for key, item in current.items():
        previous = known.get(key)
        known[key] = item
        if previous is None:
            changes.append(WatchEvent(ADDED, item))
        elif _version(previous) != _version(item):
            changes.append(WatchEvent(MODIFIED, item))
    return changes, version


async def _stream(
    collection: Collection, version: str, settings: WatchSettings
) -> AsyncIterator[dict[str, Any]]:
    """One watch connection: yields raw watch events until the server or the inactivity timeout ends it."""
    query: Query = {
        **collection.query,
        "watch": True,
        "resourceVersion": version,
        "allowWatchBookmarks": True,
        "timeoutSeconds": settings.server_timeout,
    }
    lines = collection.api.stream(collection.path, query, accept=collection.accept(watching=True))
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
                # arrives as a chunk does, and the watch would go on reading after being cancelled.
                async with asyncio.timeout(settings.inactivity_timeout):
                    line = await anext(lines)
            except TimeoutError:
                log.info("watch inactive; reconnecting", extra={"resource_version": version})
                return
            except StopAsyncIteration:
                return
            yield json.loads(line)
    finally:
        await lines.aclose()


async def watch(
    collection: Collection,
    *,
    settings: WatchSettings | None = None,
    on_progress: Callable[[], None] | None = None,
    label_selector: str | None = None,
    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> AsyncIterator[WatchEvent]:
    """Yield every change of ``collection`` (narrowed to ``label_selector`` when one is given)."""
    settings = settings or WatchSettings()
    if label_selector:
        collection = collection.where(labelSelector=label_selector)
    progress = on_progress or _nothing
    trim = keep or _whole
    known: dict[str, dict[str, Any]] = {}
    version = ""
    backoff = settings.backoff_initial
    while True:
        progress()
        try:
            if not version:
                changes, version = await _relist(collection, settings.page_size, known, trim)
                progress()
                while changes:  # handed out one by one: none is held after its turn
                    yield changes.popleft()
                yield WatchEvent(SYNCED, {})
            async for raw in _stream(collection, version, settings):
                progress()
                kind, obj = raw.get("type"), raw.get("object") or {}
                if kind == "ERROR":
                    raise from_status_object(obj)
                version = _version(obj) or version
                if kind == "BOOKMARK":
                    continue
                obj = trim(obj)
                key = object_key(obj)
                if kind == DELETED:
                    known.pop(key, None)
                else:
                    known[key] = obj
                yield WatchEvent(str(kind), obj)
                backoff = settings.backoff_initial
        except Gone:
            log.info("watch version expired; listing again")
            version = ""
        except BadRequest as refusal:
            collection = collection.widened(refusal)
            version = ""
        except (KubeError, OSError, TimeoutError, ValueError) as exc:
            if not is_transient(exc) and not isinstance(exc, ValueError):
                raise
            log.warning("watch interrupted; resuming", extra={"error": str(exc), "backoff": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, settings.backoff_max)
