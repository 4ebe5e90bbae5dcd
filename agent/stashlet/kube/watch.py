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
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from stashlet.kube.client import call_json, status_body
from stashlet.kube.errors import Gone, KubeError, from_status_object, is_transient, translate

log = logging.getLogger(__name__)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
SYNCED = "SYNCED"

ListFn = Callable[..., Awaitable[Any]]


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


def _version(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


async def _list(list_fn: ListFn, kwargs: dict[str, Any], page_size: int) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        extra: dict[str, Any] = {"limit": page_size, "_preload_content": False}
        if token:
            extra["_continue"] = token
        extra.pop("_preload_content")
        body = await call_json(list_fn, **kwargs, **extra)
        items.extend(body.get("items") or [])
        token = body.get("metadata", {}).get("continue")
        if not token:
            return items, str(body.get("metadata", {}).get("resourceVersion", ""))


async def _stream(
    list_fn: ListFn, kwargs: dict[str, Any], version: str, settings: WatchSettings
) -> AsyncIterator[dict[str, Any]]:
    """One watch connection: yields raw watch events until the server or the inactivity timeout ends it."""
    try:
        response = await list_fn(
            **kwargs,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=settings.server_timeout,
            _preload_content=False,
        )
    except ApiException as exc:
        raise translate(exc) from exc
    if not 200 <= response.status < 300:
        raw = await response.read()
        response.release()
        raise from_status_object(status_body(raw, response.status, response.reason))
    buffer = b""
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
                # arrives as a chunk does, and the watch would go on reading after being cancelled.
                async with asyncio.timeout(settings.inactivity_timeout):
                    chunk = await response.content.readany()
            except TimeoutError:
                log.info("watch inactive; reconnecting", extra={"resource_version": version})
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    finally:
        response.release()


async def watch(
    list_fn: ListFn,
    *,
    settings: WatchSettings | None = None,
    on_progress: Callable[[], None] | None = None,
    **kwargs: Any,
) -> AsyncIterator[WatchEvent]:
    """Yield every change of the collection ``list_fn`` lists (with ``kwargs`` such as namespace)."""
    settings = settings or WatchSettings()
    progress = on_progress or _nothing
    known: dict[str, dict[str, Any]] = {}
    version = ""
    backoff = settings.backoff_initial
    while True:
        progress()
        try:
            if not version:
                items, version = await _list(list_fn, kwargs, settings.page_size)
                progress()
                current = {object_key(item): item for item in items}
                for key, old in list(known.items()):
                    if key not in current:
                        del known[key]
                        yield WatchEvent(DELETED, old)
                for key, item in current.items():
                    previous = known.get(key)
                    known[key] = item
                    if previous is None:
                        yield WatchEvent(ADDED, item)
                    elif _version(previous) != _version(item):
                        yield WatchEvent(MODIFIED, item)
                yield WatchEvent(SYNCED, {})
            async for raw in _stream(list_fn, kwargs, version, settings):
                progress()
                kind, obj = raw.get("type"), raw.get("object") or {}
                if kind == "ERROR":
                    raise from_status_object(obj)
                version = _version(obj) or version
                if kind == "BOOKMARK":
                    continue
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
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            if not is_transient(exc) and not isinstance(exc, (aiohttp.ClientError, ValueError)):
                raise
            log.warning("watch interrupted; resuming", extra={"error": str(exc), "backoff": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, settings.backoff_max)
