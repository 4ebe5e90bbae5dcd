"""The auto-backup controller: watches, an ordered work queue of workloads, the reconciler.

Watches (list-then-watch, :func:`stashlet.kube.watch.watch`), each feeding the queue with the workloads
whose objects may need a change (:mod:`stashlet.operator.core.workqueue`: one worker per workload at a time,
in the order of events, coalesced):

- Deployments, StatefulSets, DaemonSets and PersistentVolumeClaims (metadata only), in every watched
  namespace: a workload or claim whose auto-backup annotations or uid changed; the rest of a workload (its
  pod template, where the sidecar goes) is not this controller's business;
- BackupBlueprints (cluster-scoped): every workload that names a blueprint that changed or went;
- Namespaces (metadata only): the annotated workloads of a namespace whose labels changed (a ``Selector``
  usage policy may now admit or refuse it);
- the BackupConfigurations and Repositories auto-backup created (by label): the workload one was made
  for, when it is deleted or its spec is changed by someone else, and at start, so that configurations
  whose workload lost its annotation while the operator was away are deleted.

Every annotated workload is also re-enqueued every ``resync_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.kube.watch import DELETED, WatchEvent
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.reconciler import SELECTOR, AutoBackupReconciler
from stashlet.operator.core.loop import ControlLoop, Follow

log = logging.getLogger(__name__)


class AutoBackupController(ControlLoop):
    """Runs the watches, the queue and the auto-backup reconciler until cancelled."""

    def setup(self) -> None:
        """The auto-backup reconciler, and what the handlers remember of workloads and blueprints."""
        self.reconciler = AutoBackupReconciler(self.api)
        self._annotated: dict[str, tuple[Any, ...]] = {}
        """Workload key -> (uid, the auto-backup annotations), for workloads that carry any of them."""
        self._by_blueprint: dict[str, set[str]] = {}
        self._namespace_labels: dict[str, Any] = {}
        self._generations: dict[tuple[str, str], tuple[Any, ...]] = {}

    def follows(self) -> list[Follow]:
        """Annotatable workloads and claims and what auto-backup made, per namespace; blueprints,
        namespaces."""
        follows: list[Follow] = []
        for ns in self.namespaces:
            for kind_name in resolution.AUTO_BACKUP_KINDS:
                kind = resolution.TARGET_KINDS[kind_name]
                stream = self.metadata_stream(kind.group, kind.version, kind.plural, ns)
                follows.append((f"{kind_name}/{ns or '*'}", stream, self._on_workload(kind_name)))
            configs = self.stash_stream(BackupConfiguration, ns, label_selector=SELECTOR)
            follows.append((f"BackupConfiguration/{ns or '*'}", configs, self._on_created("config")))
        repositories = self.stash_stream(Repository, None, label_selector=SELECTOR)
        return [
            *follows,
            ("BackupBlueprint", self.stash_stream(BackupBlueprint, None), self._on_blueprint),
            ("Namespace", self.metadata_stream("", "v1", "namespaces", None), self._on_namespace),
            ("Repository", repositories, self._on_created("repository")),
        ]

    def resync_items(self) -> list[str]:
        """Every annotated workload."""
        return list(self._annotated)

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

    async def handle(self, key: str) -> None:
        """Reconcile the annotated workload or claim ``key`` (``Kind/namespace/name``)."""
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
