"""The auto-backup controller: watches, an ordered work queue of workloads, the reconciler.

Watches (list-then-watch, :func:`stashlet.kube.watch.watch`), each feeding the queue with the workloads
whose objects may need a change (:mod:`stashlet.operator.core.workqueue`: one worker per workload at a time,
in the order of events, coalesced):

- Deployments, StatefulSets and DaemonSets (metadata only), in every watched namespace: a workload whose
  auto-backup annotations or uid changed; the rest of a workload (its pod template, where the sidecar
  goes) is not this controller's business;
- BackupBlueprints (cluster-scoped): every workload that names a blueprint that changed or went;
- Namespaces (metadata only): the annotated workloads of a namespace whose labels changed (a ``Selector``
  usage policy may now admit or refuse it);
- the BackupConfigurations and Repositories auto-backup created (by label): the workload one was made
  for, when it is deleted or its spec is changed by someone else, and at start, so that configurations
  whose workload lost its annotation while the operator was away are deleted.

Every annotated workload is also re-enqueued every ``resync_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.watch import DELETED, WatchEvent, WatchSettings, watch
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.reconciler import SELECTOR, AutoBackupReconciler
from stashlet.operator.core.metawatch import collection_path, metadata_list_fn
from stashlet.operator.core.watchset import WatchSet
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.core.workqueue import WorkQueue
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Follow = tuple[str, AsyncIterator[WatchEvent], Callable[[WatchEvent], None]]


class AutoBackupController:
    """Runs the watches, the queue and the auto-backup reconciler until cancelled."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: OperatorSettings,
        *,
        resync_seconds: float = 600.0,
        watch_settings: WatchSettings | None = None,
    ) -> None:
        """Reconcile with ``api`` (the operator's identity) in the namespaces ``settings`` name."""
        self.api = api
        self.settings = settings
        self.resync_seconds = resync_seconds
        self.watch_settings = watch_settings or WatchSettings(server_timeout=settings.watch_timeout_seconds)
        self.stash = StashClient(api)
        self.reconciler = AutoBackupReconciler(api)
        self.queue = WorkQueue(
            self._handle,
            workers=settings.workers,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        )
        self._annotated: dict[str, tuple[Any, ...]] = {}
        """Workload key -> (uid, the auto-backup annotations), for workloads that carry any of them."""
        self._by_blueprint: dict[str, set[str]] = {}
        self._namespace_labels: dict[str, Any] = {}
        self._generations: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.watches = WatchSet()
        self.all_synced = self.watches.all_synced
        """Set once every watch has listed its collection (readiness)."""

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        """Run everything until cancelled."""
        follows: list[Follow] = []
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        for ns in namespaces:
            for kind_name in resolution.AUTO_BACKUP_KINDS:
                kind = WORKLOAD_KINDS[kind_name]
                path = collection_path(kind.group, kind.version, kind.plural, ns)
                stream = watch(metadata_list_fn(self.api, path), settings=self.watch_settings)
                follows.append((f"{kind_name}/{ns or '*'}", stream, self._on_workload(kind_name)))
            configs = self._stash_stream(BackupConfiguration, ns, label_selector=SELECTOR)
            follows.append((f"BackupConfiguration/{ns or '*'}", configs, self._on_created("config")))
        follows += [
            ("BackupBlueprint", self._stash_stream(BackupBlueprint, None), self._on_blueprint),
            (
                "Namespace",
                watch(
                    metadata_list_fn(self.api, collection_path("", "v1", "namespaces", None)),
                    settings=self.watch_settings,
                ),
                self._on_namespace,
            ),
            (
                "Repository",
                self._stash_stream(Repository, None, label_selector=SELECTOR),
                self._on_created("repository"),
            ),
        ]
        self.watches.expect(len(follows))
        async with asyncio.TaskGroup() as group:
            group.create_task(self.queue.run())
            group.create_task(self._resync())
            for what, stream, on_event in follows:
                group.create_task(self.watches.follow(what, stream, on_event))

    def _stash_stream(self, model: type[Any], ns: str | None, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return watch(self.stash.list_fn(model, ns), settings=self.watch_settings, **kwargs)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for key in list(self._annotated):
                self.queue.add(key)

    # ------------------------------------------------------------ events

    def _on_workload(self, kind: str) -> Callable[[WatchEvent], None]:
        def handle(event: WatchEvent) -> None:
            meta = event.object.get("metadata") or {}
            key = f"{kind}/{meta.get('namespace')}/{meta.get('name')}"
            if event.type == DELETED:
                if self._untrack(key):
                    self._enqueue(key, f"{kind} deleted")
                return
            annotations = meta.get("annotations") or {}
            ours = tuple(annotations.get(a) for a in resolution.ANNOTATIONS)
            if all(value is None for value in ours):
                if self._untrack(key):
                    self._enqueue(key, "auto-backup annotations removed")
                return
            seen = (meta.get("uid"), *ours)
            if self._annotated.get(key) == seen:
                return
            self._untrack(key)
            self._annotated[key] = seen
            for blueprint in resolution.blueprint_names(annotations):
                self._by_blueprint.setdefault(blueprint, set()).add(key)
            self._enqueue(key, f"{event.type} {kind} annotations")

        return handle

    def _untrack(self, key: str) -> bool:
        """Forget a workload's annotations; True when it had any."""
        if self._annotated.pop(key, None) is None:
            return False
        for blueprint, keys in list(self._by_blueprint.items()):
            keys.discard(key)
            if not keys:
                del self._by_blueprint[blueprint]
        return True

    def _on_blueprint(self, event: WatchEvent) -> None:
        name = str(event.object.get("metadata", {}).get("name"))
        if not self._spec_changed("BackupBlueprint", event):
            return
        for key in sorted(self._by_blueprint.get(name, ())):
            self._enqueue(key, f"{event.type} BackupBlueprint {name}")

    def _on_namespace(self, event: WatchEvent) -> None:
        name = str(event.object.get("metadata", {}).get("name"))
        if event.type == DELETED:
            self._namespace_labels.pop(name, None)
            return
        labels = event.object.get("metadata", {}).get("labels") or {}
        first = name not in self._namespace_labels
        if not first and self._namespace_labels[name] == labels:
            return
        self._namespace_labels[name] = labels
        if first:
            return
        for key in [k for k in self._annotated if k.split("/")[1] == name]:
            self._enqueue(key, f"labels of namespace {name} changed")

    def _on_created(self, what: str) -> Callable[[WatchEvent], None]:
        def handle(event: WatchEvent) -> None:
            annotations = event.object.get("metadata", {}).get("annotations") or {}
            key = annotations.get(names.ANNOTATION_AUTO_BACKUP_TARGET)
            if key and self._spec_changed(what, event):
                self._enqueue(str(key), f"{event.type} {what} {event.key}")

        return handle

    def _spec_changed(self, kind: str, event: WatchEvent) -> bool:
        ident = (kind, event.key)
        if event.type == DELETED:
            self._generations.pop(ident, None)
            return True
        meta = event.object.get("metadata", {})
        seen = (meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp"))
        if self._generations.get(ident) == seen:
            return False
        self._generations[ident] = seen
        return True

    def _enqueue(self, key: str, because: str) -> None:
        log.debug("auto-backup enqueued", extra={"object": key, "because": because})
        self.queue.add(key)

    # ------------------------------------------------------------ handling

    async def _handle(self, key: str) -> None:
        target = resolution.parse_key(key)
        if target is None or not self.settings.watches(target.namespace):
            return
        started = time.monotonic()
        result = await self.reconciler.reconcile(target)
        log.debug(
            "auto-backup reconciled",
            extra={
                "object": key,
                "written": result.written,
                "deleted": result.deleted,
                "failures": len(result.failures),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
