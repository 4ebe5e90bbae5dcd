"""The watch loops and the work queue around the reconciler.

Watches (list-then-watch, :func:`stashlet.kube.watch.watch`), in every watched namespace or cluster-wide:

- BackupConfigurations: a new configuration, a spec change (``metadata.generation``), a deletion request or
  a lost finalizer enqueues it; status-only changes (the operator's own writes) do not.
- Repositories, Secrets, ServiceAccounts, the four workload kinds, PersistentVolumeClaims and Namespaces,
  metadata only: a change to an object some configuration depends on (as the reconciler reported)
  enqueues that configuration.
- BackupSessions: when a session finishes, its configuration's ``backupHistoryLimit`` is applied; a new
  session of a Task configuration (resource dump, stand-alone claim) gets its Job
  (:mod:`stashlet.operator.taskjobs.session_jobs`); a failed one with ``spec.retryLeft`` is retried
  (:mod:`stashlet.operator.backup.retry`); a session of a VolumeSnapshotter configuration is carried out
  step by step by :mod:`stashlet.operator.volumesnapshot.backup`.
- BackupSessions no agent has taken up yet: each gets a timer in the work queue, and at its pickup
  deadline (or at once for a missing invoker) :mod:`stashlet.operator.backup.silent` ends it saying why;
  on start every such session is looked at, so those past their deadline end at once.
- Jobs the operator made (label ``app.kubernetes.io/managed-by=stashlet``), in full: a backup Job that
  ended while its session had not fails the session (:meth:`~stashlet.operator.backup.silent.
  SilentSessions.job_ended`), a restore Job its host (:mod:`stashlet.operator.restore.job_failures`), a
  restore drill's Job that ended without its verdict fails the drill on its Repository
  (:mod:`stashlet.operator.drills.unreported`), and a wipe Job's end has its Repository looked at again.
  Where the operator may not list and watch Jobs (a chart older than the operator), it says so in an
  error log line naming the right, and a Job's end is seen only at its session's pickup deadline.
- Repositories: besides being a dependency, one with ``spec.wipeOut`` (or its finalizer) is handed to
  :class:`~stashlet.operator.repository.wipeout.WipeOut`.
- RestoreSessions: like configurations (new, spec change, deletion request, lost finalizer), reconciled by
  :class:`~stashlet.operator.restore.reconciler.RestoreReconciler`; their Repositories, Secrets,
  Namespaces and targets enqueue them as dependencies, as for configurations. A VolumeSnapshotter
  RestoreSession goes to :mod:`stashlet.operator.volumesnapshot.restore` instead.

Every configuration and RestoreSession is also re-enqueued every ``resync_seconds``, which catches what
no watch can see (a Repository in a namespace outside the configured list).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase
from stashlet.api.common import Snapshotter
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.errors import NotFound
from stashlet.kube.paths import collection_path
from stashlet.kube.watch import DELETED, Collection, WatchEvent, watch
from stashlet.operator.backup import history, pickup, retry
from stashlet.operator.backup.reconciler import Reconciler
from stashlet.operator.backup.silent import SilentSessions
from stashlet.operator.core import access
from stashlet.operator.core.events import Events
from stashlet.operator.core.job_outcome import ended_job_verdict
from stashlet.operator.core.labelled import LabelIndex
from stashlet.operator.core.loop import ControlLoop, Follow, lean
from stashlet.operator.core.observe import Dependency, ReconcileResult
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.drills.cronjob import LABEL_DRILL_OF
from stashlet.operator.drills.reconciler import CONDITION_SCHEDULED, DrillReconciler
from stashlet.operator.drills.spec import drill_annotations
from stashlet.operator.drills.unreported import UnreportedDrills
from stashlet.operator.repository.wipeout import WipeOut
from stashlet.operator.restore.job_failures import RestoreJobFailures
from stashlet.operator.restore.reconciler import RestoreReconciler
from stashlet.operator.volumesnapshot.backup import SnapshotBackups
from stashlet.operator.volumesnapshot.restore import SnapshotRestores

log = logging.getLogger(__name__)

CONFIG_PREFIX = "bc:"
HISTORY_PREFIX = "history:"
RESTORE_PREFIX = "rs:"
JOB_PREFIX = "job:"
RETRY_PREFIX = "retry:"
REPOSITORY_PREFIX = "repo:"
SNAPSHOT_PREFIX = "vs:"
"""A BackupSession of a VolumeSnapshotter configuration (:mod:`stashlet.operator.volumesnapshot`)."""
SNAPSHOT_RESTORE_PREFIX = "vsrs:"
"""A VolumeSnapshotter RestoreSession (never handed to the RestoreSession reconciler)."""
PICKUP_PREFIX = "pickup:"
"""A BackupSession no agent has taken up yet (:mod:`stashlet.operator.backup.silent`)."""
BACKUP_JOB_PREFIX = "bjob:"
"""A backup Job that ended (``namespace/job``)."""
RESTORE_JOB_PREFIX = "rjob:"
"""A restore Job that ended (``namespace/job``)."""
DRILL_PREFIX = "drill:"
"""A configuration whose restore drill annotations (or spec) changed (:mod:`stashlet.operator.drills`)."""
DRILL_JOB_PREFIX = "djob:"
"""A restore drill's Job that ended (``namespace/job``: :mod:`stashlet.operator.drills.unreported`)."""
JOB_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"

_DEPENDENCY_KINDS: dict[str, tuple[str, str, str, bool]] = {
    # kind: (group, version, plural, namespaced)
    "Secret": ("", "v1", "secrets", True),
    "ServiceAccount": ("", "v1", "serviceaccounts", True),
    "Namespace": ("", "v1", "namespaces", False),
    names.KIND_PERSISTENT_VOLUME_CLAIM: ("", "v1", "persistentvolumeclaims", True),
    **{k.kind: (k.group, k.version, k.plural, True) for k in WORKLOAD_KINDS.values()},
}


JOB_TASKS = names.KUBEDUMP_TASKS | names.PVC_BACKUP_TASKS
"""The task names whose sessions run as Jobs."""

_FINGERPRINTS: dict[str, tuple[str, ...]] = {
    names.KIND_BACKUP_CONFIGURATION: ("generation", "deletionTimestamp", "finalizers"),
    names.KIND_RESTORE_SESSION: ("generation", "deletionTimestamp", "finalizers"),
    "Secret": ("resourceVersion",),
    "Namespace": ("labels",),
}


def fingerprint(kind: str, metadata: dict[str, Any]) -> tuple[str, ...]:
    """What of an object's metadata matters to the operator: a change elsewhere needs no reconcile.

    Spec changes bump ``generation`` (status writes do not); a Secret has no generation, so any write
    counts; a namespace matters by its labels (usage policies select on them).
    """
    return tuple(str(metadata.get(f)) for f in _FINGERPRINTS.get(kind, ("generation",)))


class Controller(ControlLoop):
    """Runs the watches, the queue and the BackupConfiguration and RestoreSession reconcilers."""

    def setup(self) -> None:
        """The BackupConfiguration and RestoreSession reconcilers, and what the handlers remember."""
        self.labels = LabelIndex([names.LABEL_BACKUP_CONFIGURATION, names.LABEL_RESTORE_SESSION])
        """Which workloads carry a configuration's or a session's label (fed by the workload watches)."""
        self.labels.listed = self._workloads_listed
        self.reconciler = Reconciler(self.api, self.settings, self.labels)
        self.restores = RestoreReconciler(self.api, self.settings, self.labels)
        self._dependents: dict[Dependency, set[str]] = {}
        self._depends_on: dict[str, set[Dependency]] = {}
        self._fingerprints: dict[tuple[str, str], Any] = {}
        self._during: dict[str, dict[tuple[str, str], Any]] = {}
        """Changes seen while an item was being reconciled: item -> {(kind, key): fingerprint seen}."""
        self._configs: dict[str, int | None] = {}  # key -> backupHistoryLimit
        self._sessions: dict[str, dict[str, history.SessionInfo]] = {}
        self._restores: set[str] = set()
        self._task_jobs: set[str] = set()
        """Keys of the configurations whose sessions run as Jobs."""
        self._failed_at: dict[str, float] = {}
        """Sessions to retry (``namespace/name``) and when the operator saw them fail."""
        self.events = Events(self.api)
        self.wipeout = WipeOut(self.api, self.reconciler.resources, self.settings, self.namespaces)
        self.snapshots = SnapshotBackups(self.api, self.events)
        self.snapshot_restores = SnapshotRestores(self.api, self.events)
        self.silent = SilentSessions(self.stash, self.reconciler.resources, self.events, self.settings)
        self.restore_job_failures = RestoreJobFailures(self.api, self.events, self.settings)
        self.watch_jobs = True
        """False when the operator may not list and watch Jobs (:meth:`run` asks)."""
        self._snapshot_configs: set[str] = set()
        """Keys of the VolumeSnapshotter configurations, whose sessions the operator carries out."""
        self.drills = DrillReconciler(self.api, self.settings, self.events)
        self._targets: dict[str, tuple[str, str]] = {}
        """Each configuration's ``spec.target.ref`` (kind, name), as its watch last saw it."""
        self.unreported_drills = UnreportedDrills(self.api, self.events, self.settings)
        self._drills: dict[str, tuple[object, bool, dict[str, str]]] = {}
        """Configurations with a restore drill (or its condition): their generation, whether they are being
        deleted, and their drill annotations."""

    async def run(self) -> None:
        """Learn whether Jobs may be watched, then run everything until cancelled."""
        self.watch_jobs = await self.maywatch_jobs()
        await super().run()

    async def maywatch_jobs(self) -> bool:
        """True when the operator may list and watch Jobs in every watched namespace; else an error log
        line names the right that is missing."""
        for ns in self.namespaces:
            for verb in ("list", "watch"):
                if not await access.allowed(self.api, verb, "batch", "jobs", ns):
                    log.error(
                        "may not watch Jobs: a Job that ends without its agent's word is seen only at its "
                        "session's pickup deadline; grant list and watch on batch/jobs",
                        extra={"namespace": ns or "*", "verb": verb},
                    )
                    return False
        return True

    def follows(self) -> list[Follow]:
        """Configurations, sessions, restores and what they depend on, in every watched namespace."""
        follows: list[Follow] = []
        for ns in self.namespaces:
            where = ns or "*"
            follows += [
                (f"BackupConfiguration/{where}", self.stash_stream(BackupConfiguration, ns), self._on_config),
                (f"BackupSession/{where}", self.stash_stream(BackupSession, ns), self._on_session),
                (f"Repository/{where}", self.stash_stream(Repository, ns), self._on_repository),
                (f"RestoreSession/{where}", self.stash_stream(RestoreSession, ns), self._on_restore),
            ]
            if self.watch_jobs:
                follows.append((f"Job/{where}", self._job_stream(ns), self._on_job))
            for kind, (g, v, plural, namespaced) in _DEPENDENCY_KINDS.items():
                if namespaced:
                    stream = self.metadata_stream(g, v, plural, ns)
                    follows.append((f"{kind}/{where}", stream, self._on_dependency(kind)))
        # Namespaces are cluster-scoped: one watch whatever the namespace list.
        namespaces = self.metadata_stream("", "v1", "namespaces", None)
        follows.append(("Namespace/*", namespaces, self._on_dependency("Namespace")))
        return follows

    def _workloads_listed(self) -> bool:
        """True once the watches of every workload kind, in every watched namespace, have listed."""
        streams = [f"{kind}/{ns or '*'}" for kind in WORKLOAD_KINDS for ns in self.namespaces]
        return all(name in self.watches.synced and self.watches.synced[name].is_set() for name in streams)

    def _job_stream(self, ns: str | None) -> AsyncIterator[WatchEvent]:
        """The operator's own Jobs in ``ns`` (None: every namespace), in full (their status says how they
        ended)."""
        jobs = Collection(self.api, collection_path("batch", "v1", "jobs", ns))
        return watch(jobs, settings=self.watch_settings, label_selector=JOB_SELECTOR, keep=lean)

    def resync_items(self) -> list[str]:
        """Every configuration and RestoreSession, and every restore drill."""
        return (
            [CONFIG_PREFIX + key for key in self._configs]
            + [RESTORE_PREFIX + key for key in self._restores]
            + [DRILL_PREFIX + key for key, (_, _, wanted) in self._drills.items() if wanted]
        )

    # ------------------------------------------------------------ events

    def _changed(self, kind: str, event: WatchEvent) -> bool:
        """True unless the event leaves the object's fingerprint as last seen (by a watch or a reconcile)."""
        ident = (kind, event.key)
        if event.type == DELETED:
            self._fingerprints.pop(ident, None)
            return True
        seen = fingerprint(kind, event.object.get("metadata", {}))
        previous = self._fingerprints.get(ident)
        self._fingerprints[ident] = seen
        return previous is None or previous != seen

    def _enqueue(self, item: str, ident: tuple[str, str], because: str) -> None:
        """Have ``item`` reconciled because object ``ident`` (kind, key) changed; while ``item`` is being
        reconciled, the change is only noted: most such changes are that reconcile's own writes (the
        finalizer it added, the workload it injected), and :meth:`handle` compares them with what it left."""
        if self.queue.running(item):
            self._during.setdefault(item, {})[ident] = self._fingerprints.get(ident)
            return
        log.debug("enqueued", extra={"object": item, "because": because})
        self.queue.add(item)

    def _on_config(self, event: WatchEvent) -> None:
        key = event.key
        if event.type == DELETED:
            self._forget(key)
            self._drills.pop(key, None)
            self._targets.pop(key, None)
            return
        self._on_drill(key, event.object)
        spec = event.object.get("spec") or {}
        ref = (spec.get("target") or {}).get("ref") or {}
        self._targets[key] = (str(ref.get("kind") or ""), str(ref.get("name") or ""))
        self._configs[key] = spec.get("backupHistoryLimit")
        if ((spec.get("task") or {}).get("name") or "") in JOB_TASKS:
            if key not in self._task_jobs:  # sessions seen before the configuration get their Jobs now
                self._task_jobs.add(key)
                namespace = key.partition("/")[0]
                for info in self._sessions.get(key, {}).values():
                    if not info.finished:
                        self.queue.add(f"{JOB_PREFIX}{namespace}/{info.name}")
        else:
            self._task_jobs.discard(key)
        if spec.get("driver") == Snapshotter.VOLUME_SNAPSHOTTER:
            if key not in self._snapshot_configs:  # sessions seen before the configuration are taken now
                self._snapshot_configs.add(key)
                for info in self._sessions.get(key, {}).values():
                    if not info.finished:
                        self.queue.add(f"{SNAPSHOT_PREFIX}{key.partition('/')[0]}/{info.name}")
        else:
            self._snapshot_configs.discard(key)
        if self._changed(names.KIND_BACKUP_CONFIGURATION, event):
            ident = (names.KIND_BACKUP_CONFIGURATION, key)
            self._enqueue(CONFIG_PREFIX + key, ident, f"{event.type} BackupConfiguration")

    def _on_drill(self, key: str, obj: dict[str, Any]) -> None:
        """Enqueue a configuration's drill when its drill annotations or spec changed; one without a drill
        (and without the condition a drill leaves) costs nothing."""
        meta = obj.get("metadata") or {}
        wanted = drill_annotations(meta.get("annotations"))
        conditions = (obj.get("status") or {}).get("conditions") or []
        had = any(c.get("type") == CONDITION_SCHEDULED for c in conditions)
        seen = (meta.get("generation"), bool(meta.get("deletionTimestamp")), wanted)
        if not wanted and not had:
            self._drills.pop(key, None)
            return
        if self._drills.get(key) != seen:
            self._drills[key] = seen
            self.queue.add(DRILL_PREFIX + key)

    def _on_restore(self, event: WatchEvent) -> None:
        key = event.key
        if event.type == DELETED:
            self._forget_restore(key)
            return
        if (event.object.get("spec") or {}).get("driver") == Snapshotter.VOLUME_SNAPSHOTTER:
            self.queue.add(SNAPSHOT_RESTORE_PREFIX + key)
            return
        self._restores.add(key)
        if self._changed(names.KIND_RESTORE_SESSION, event):
            self._enqueue(
                RESTORE_PREFIX + key, (names.KIND_RESTORE_SESSION, key), f"{event.type} RestoreSession"
            )

    def _on_dependency(self, kind: str) -> Callable[[WatchEvent], None]:
        def handle(event: WatchEvent) -> None:
            meta = event.object.get("metadata", {})
            if kind in WORKLOAD_KINDS:
                self.labels.observe(kind, meta, gone=event.type == DELETED)
            dependency: Dependency = (kind, str(meta.get("namespace") or ""), str(meta.get("name")))
            dependents = self._dependents.get(dependency)
            if kind in WORKLOAD_KINDS and event.type != DELETED:
                self._strip_if_moved(kind, meta)
            if not dependents:  # nobody cares: do not even remember it
                self._fingerprints.pop((kind, event.key), None)
                return
            if self._changed(kind, event):
                for item in list(dependents):
                    self._enqueue(item, (kind, event.key), f"{event.type} {kind} {event.key}")

        return handle

    def _strip_if_moved(self, kind: str, meta: dict[str, Any]) -> None:
        """A workload labelled for a configuration that targets another one now (the watch brought its
        label after the configuration had moved on): the configuration is reconciled again, which takes its
        sidecar out of it."""
        owner = (meta.get("labels") or {}).get(names.LABEL_BACKUP_CONFIGURATION)
        key = f"{meta.get('namespace')}/{owner}"
        target = self._targets.get(key)
        if owner and target is not None and target != (kind, str(meta.get("name"))):
            because = f"{kind} {meta.get('name')} labelled for it"
            log.debug("enqueued", extra={"object": key, "because": because})
            self.queue.add(CONFIG_PREFIX + key)

    def _on_repository(self, event: WatchEvent) -> None:
        self._on_dependency("Repository")(event)
        obj = event.object
        wiped = (obj.get("spec") or {}).get("wipeOut") is True
        if event.type != DELETED and (
            wiped or names.FINALIZER_WIPE_OUT in obj["metadata"].get("finalizers", [])
        ):
            self.queue.add(REPOSITORY_PREFIX + event.key)

    def _on_job(self, event: WatchEvent) -> None:
        """A Job of ours that ended: its session, restore host or Repository is looked at."""
        job = event.object
        meta = job.get("metadata") or {}
        if event.type == DELETED or ended_job_verdict(str(meta.get("namespace")), job) is None:
            return
        labels = meta.get("labels") or {}
        key = event.key
        if any(o.get("kind") == names.KIND_BACKUP_SESSION for o in meta.get("ownerReferences") or []):
            self.queue.add(BACKUP_JOB_PREFIX + key)
        elif labels.get(names.LABEL_RESTORE_SESSION):
            self.queue.add(RESTORE_JOB_PREFIX + key)
        elif labels.get(LABEL_DRILL_OF):
            self.queue.add(DRILL_JOB_PREFIX + key)
        elif labels.get(names.LABEL_WIPE_OF):
            self.queue.add(f"{REPOSITORY_PREFIX}{meta.get('namespace')}/{labels[names.LABEL_WIPE_OF]}")

    def _on_session(self, event: WatchEvent) -> None:
        obj = event.object
        labels = obj.get("metadata", {}).get("labels") or {}
        invoker = (obj.get("spec") or {}).get("invoker") or {}
        bc_name = invoker.get("name") or labels.get(names.LABEL_INVOKER_NAME)
        waiting = (
            event.type != DELETED
            and not pickup.taken_up(obj)
            and (obj.get("status") or {}).get("phase") not in history.FINISHED
        )
        if waiting:
            self.queue.add(PICKUP_PREFIX + event.key)
        else:  # taken up, ended or gone: its pickup deadline means nothing any more
            self.queue.forget(PICKUP_PREFIX + event.key)
        if (
            invoker.get("kind", names.KIND_BACKUP_CONFIGURATION) != names.KIND_BACKUP_CONFIGURATION
            or not bc_name
        ):
            return
        bc_key = f"{obj['metadata']['namespace']}/{bc_name}"
        sessions = self._sessions.setdefault(bc_key, {})
        name = obj["metadata"]["name"]
        if event.type == DELETED:
            sessions.pop(name, None)
            self._failed_at.pop(f"{obj['metadata']['namespace']}/{name}", None)
            return
        info = history.SessionInfo(
            name, (obj.get("status") or {}).get("phase"), str(obj["metadata"].get("creationTimestamp", ""))
        )
        before = sessions.get(name)
        sessions[name] = info
        if info.finished and (before is None or not before.finished):
            self.queue.add(HISTORY_PREFIX + bc_key)
            if (
                info.phase == BackupSessionPhase.FAILED
                and ((obj.get("spec") or {}).get("retryLeft") or 0) > 0
            ):
                session_key = f"{obj['metadata']['namespace']}/{name}"
                self._failed_at.setdefault(session_key, time.time())
                self.queue.add(RETRY_PREFIX + session_key)
        if not info.finished and bc_key in self._snapshot_configs:
            self.queue.add(f"{SNAPSHOT_PREFIX}{obj['metadata']['namespace']}/{name}")
        if before is None and not info.finished and bc_key in self._task_jobs:
            self.queue.add(f"{JOB_PREFIX}{obj['metadata']['namespace']}/{name}")

    # ------------------------------------------------------------ handling

    async def handle(self, item: str) -> None:
        """Prune history, retry a failed session, ensure a Task's Job, or reconcile a configuration or
        RestoreSession."""
        if item.startswith(HISTORY_PREFIX):
            await self._prune(item.removeprefix(HISTORY_PREFIX))
            return
        if item.startswith(REPOSITORY_PREFIX):
            namespace, _, name = item.removeprefix(REPOSITORY_PREFIX).partition("/")
            await self.wipeout.reconcile(namespace, name)
            return
        if item.startswith(RETRY_PREFIX):
            session_key = item.removeprefix(RETRY_PREFIX)
            namespace, _, name = session_key.partition("/")
            failed_at = self._failed_at.get(session_key)
            if failed_at is not None:  # None: the session was deleted meanwhile
                await retry.make_retry(self.stash, self.events, namespace, name, failed_at)
                self._failed_at.pop(session_key, None)
            return
        if item.startswith((SNAPSHOT_PREFIX, SNAPSHOT_RESTORE_PREFIX)):
            restoring = item.startswith(SNAPSHOT_RESTORE_PREFIX)
            namespace, _, name = item.partition(":")[2].partition("/")
            step = self.snapshot_restores.step if restoring else self.snapshots.step
            again = await step(namespace, name)
            if again is not None:
                self.queue.add(item, again)
            return
        if item.startswith((PICKUP_PREFIX, BACKUP_JOB_PREFIX, RESTORE_JOB_PREFIX)):
            await self._silent(item)
            return
        if item.startswith(DRILL_PREFIX):
            namespace, _, name = item.removeprefix(DRILL_PREFIX).partition("/")
            await self.drills.reconcile(namespace, name)
            return
        if item.startswith(DRILL_JOB_PREFIX):
            namespace, _, name = item.removeprefix(DRILL_JOB_PREFIX).partition("/")
            await self.unreported_drills.job_ended(namespace, name)
            return
        if item.startswith(JOB_PREFIX):
            namespace, _, name = item.removeprefix(JOB_PREFIX).partition("/")
            await self.reconciler.jobs.ensure_job(namespace, name)
            return
        await self._reconcile(item)

    async def _reconcile(self, item: str) -> None:
        """Reconcile a configuration or RestoreSession; remember what it depends on and what it left; once
        more when something it read was changed by someone else while it ran."""
        restore = item.startswith(RESTORE_PREFIX)
        key = item.removeprefix(RESTORE_PREFIX if restore else CONFIG_PREFIX)
        namespace, _, name = key.partition("/")
        started = time.monotonic()
        result: ReconcileResult
        try:
            if restore:
                result = await self.restores.reconcile(namespace, name)
            else:
                result = await self.reconciler.reconcile(namespace, name)
        except BaseException:
            if self._during.pop(item, None):  # a refusal is not retried: what changed is looked at anew
                self.queue.add(item)
            raise
        during = self._during.pop(item, {})
        log.debug("reconciled", extra={"object": item, "seconds": round(time.monotonic() - started, 3)})
        if result.gone:
            if restore:
                self._forget_restore(key)
            else:
                self._forget(key)
            return
        self._index(key, result.dependencies, RESTORE_PREFIX if restore else CONFIG_PREFIX)
        left = {(kind, obj_key): fingerprint(kind, meta) for (kind, obj_key), meta in result.seen.items()}
        self._fingerprints.update(left)
        # A change seen meanwhile that is not what this reconcile left was someone else's.
        changed = [ident for ident, seen in during.items() if ident not in left or left[ident] != seen]
        if changed:  # the queue runs it once more after this run
            because = ", ".join(f"{kind} {obj_key}" for kind, obj_key in changed)
            log.debug("enqueued", extra={"object": item, "because": f"changed while reconciling: {because}"})
            self.queue.add(item)

    async def _silent(self, item: str) -> None:
        """A session nobody has taken up (looked at again at its deadline), or a Job that ended."""
        namespace, _, name = item.partition(":")[2].partition("/")
        if item.startswith(PICKUP_PREFIX):
            wait = await self.silent.check(namespace, name)
            if wait is not None:
                self.queue.add(item, wait)
        elif item.startswith(BACKUP_JOB_PREFIX):
            await self.silent.job_ended(namespace, name)
        else:
            await self.restore_job_failures.job_ended(namespace, name)

    async def _prune(self, bc_key: str) -> None:
        if bc_key not in self._configs:
            return
        namespace = bc_key.partition("/")[0]
        sessions = self._sessions.get(bc_key, {})
        for name in history.to_prune(sessions.values(), self._configs[bc_key]):
            with contextlib.suppress(NotFound):  # deleted meanwhile: just as good
                await self.stash.delete(BackupSession, namespace, name)
            sessions.pop(name, None)
            log.info("backup session pruned", extra={"object": bc_key, "session": name})

    def _index(self, key: str, dependencies: set[Dependency], prefix: str = CONFIG_PREFIX) -> None:
        """Record that the queue item ``prefix + key`` depends on ``dependencies`` (and nothing else)."""
        item = prefix + key
        for old in self._depends_on.get(item, set()) - dependencies:
            dependents = self._dependents.get(old, set())
            dependents.discard(item)
            if not dependents:
                self._dependents.pop(old, None)
                self._fingerprints.pop((old[0], f"{old[1]}/{old[2]}" if old[1] else old[2]), None)
        for dep in dependencies:
            self._dependents.setdefault(dep, set()).add(item)
        self._depends_on[item] = dependencies

    def _forget(self, key: str) -> None:
        self._index(key, set())
        self._depends_on.pop(CONFIG_PREFIX + key, None)
        self._configs.pop(key, None)
        self._sessions.pop(key, None)
        self._task_jobs.discard(key)
        self._snapshot_configs.discard(key)
        self._fingerprints.pop((names.KIND_BACKUP_CONFIGURATION, key), None)

    def _forget_restore(self, key: str) -> None:
        self._index(key, set(), RESTORE_PREFIX)
        self._depends_on.pop(RESTORE_PREFIX + key, None)
        self._restores.discard(key)
        self._fingerprints.pop((names.KIND_RESTORE_SESSION, key), None)
