"""The control loop every controller is: list-then-watch streams -> one per-object queue -> a handler: async.

A :class:`ControlLoop` follows the streams its subclass names (:meth:`~ControlLoop.follows`) into their
event handlers, which decide what to enqueue; the :class:`~stashlet.operator.core.workqueue.WorkQueue`
hands each item to :meth:`~ControlLoop.handle` (never the same item twice at once, failures retried with
backoff), and every ``resync_seconds`` :meth:`~ControlLoop.resync_items` go in again, which catches what
no watch can see. :attr:`~ControlLoop.all_synced` is set once every stream has listed (readiness).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from stashlet.kube.custom import StashClient
from stashlet.kube.paths import collection_path
from stashlet.kube.watch import Collection, WatchEvent, WatchSettings, watch
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.watchset import WatchSet
from stashlet.operator.core.workqueue import WorkQueue
from stashlet.operator.settings import OperatorSettings

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def lean(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the watches keep it: without what no handler reads and would be held for every object
    watched, its ``metadata.managedFields`` and kubectl's last-applied copy of the whole object."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    return obj


Follow = tuple[str, AsyncIterator[WatchEvent], Callable[[WatchEvent], None]]
"""A stream to follow: its name (``Kind/namespace``, ``*`` for all), its events, their handler."""


class ControlLoop(ABC):
    """Runs the watches, the queue and the resync until cancelled."""

    def __init__(
        self,
        api: ApiClient,
        settings: OperatorSettings,
        *,
        resync_seconds: float = 600.0,
        watch_settings: WatchSettings | None = None,
    ) -> None:
        """Act with ``api`` (the operator's identity) as ``settings`` say."""
        self.api = api
        self.settings = settings
        self.resync_seconds = resync_seconds
        self.watch_settings = watch_settings or WatchSettings(server_timeout=settings.watch_timeout_seconds)
        self.stash = StashClient(api)
        self.queue = WorkQueue(
            self.handle,
            workers=settings.workers,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        )
        self.watches = WatchSet()
        self.all_synced = self.watches.all_synced
        """Set once every watch has listed its collection (readiness)."""
        self.setup()

    @abstractmethod
    def setup(self) -> None:
        """Make the reconcilers and the state the event handlers keep (called once, by the constructor)."""

    @property
    def namespaces(self) -> list[str | None]:
        """The watched namespaces; ``[None]`` for the whole cluster."""
        return list(self.settings.namespaces) or [None]

    async def run(self) -> None:
        """Run everything until cancelled."""
        follows = self.follows()
        self.watches.expect(len(follows))
        async with asyncio.TaskGroup() as group:
            group.create_task(self.queue.run())
            group.create_task(self._resync())
            for what, stream, on_event in follows:
                group.create_task(self.watches.follow(what, stream, on_event))

    def stash_stream(self, model: type[Any], ns: str | None, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        """Events of a stash kind in ``ns`` (None: every namespace)."""
        return watch(self.stash.list_fn(model, ns), settings=self.watch_settings, keep=lean, **kwargs)

    def metadata_stream(
        self, group: str, version: str, plural: str, ns: str | None
    ) -> AsyncIterator[WatchEvent]:
        """Metadata-only events of a built-in collection in ``ns`` (None: all namespaces, or cluster-wide):
        the operator watches Secrets, workloads and namespaces only to learn *that* something a
        configuration depends on changed, and metadata keeps Secret values and every ReplicaSet's pod
        template out of its memory."""
        collection = Collection(self.api, collection_path(group, version, plural, ns), metadata_only=True)
        return watch(collection, settings=self.watch_settings, keep=lean)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for item in list(self.resync_items()):
                self.queue.add(item)

    @abstractmethod
    def follows(self) -> list[Follow]:
        """The streams to follow and their handlers."""

    @abstractmethod
    async def handle(self, item: str) -> None:
        """Reconcile one queue item (raise to have it retried with backoff)."""

    @abstractmethod
    def resync_items(self) -> Iterable[str]:
        """The items to enqueue again on every resync."""
