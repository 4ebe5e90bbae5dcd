"""One VolumeSnapshotter BackupSession carried out, a step at a time: async.

:meth:`SnapshotBackups.step` is called for a session until it returns None (the controller calls it
again after the seconds it returns). The first step checks the configuration (the field table and
:mod:`.validation`), finds the target's claims (:func:`.snapshots.target_claims`), checks that each claim
and the VolumeSnapshotClass exist (``spec.target.snapshotClassName``; without it, that the cluster has a
default class), then creates one VolumeSnapshot per claim and marks the session Running. Any problem
found there fails the session at once, naming the field and the object. Later steps read the
snapshots: ``readyToUse`` is a Succeeded claim, ``status.error`` a Failed one (the snapshot controller's
message); once none is pending the retention policy is applied to each succeeded claim's snapshots of this
configuration (:mod:`.retention`), and then the session ends. A session still running at its
deadline (creation + ``spec.timeOut``, :data:`DEFAULT_TIME_OUT` without one) fails with
``DeadlineExceeded``. Each step writes the status with a conflict-safe update; a restarted operator
picks a running session up where it stands (the snapshots' names are fixed by the session's).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any, Final

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupPhase
from stashlet.api.common import Snapshotter, TargetRef
from stashlet.api.durations import parse_duration
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, NotFound
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.errors import RefuseInput
from stashlet.operator.volumesnapshot import backup_status as bs
from stashlet.operator.volumesnapshot import retention, snapshots, validation
from stashlet.operator.volumesnapshot.cluster import SnapshotCluster

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 2.0
"""How soon a running session is looked at again."""
DEFAULT_TIME_OUT: Final = "30m"
"""The deadline of a session whose configuration sets no ``spec.timeOut``."""


class StepFailed(RefuseInput):
    """The session cannot go on (the input names what does not exist); the message names the field and
    the object. Caught by the step, which fails the session with it."""


class SnapshotBackups:
    """Carries out VolumeSnapshotter BackupSessions (module docstring)."""

    def __init__(
        self,
        api: ApiClient,
        events: Events,
    ) -> None:
        """Act with ``api`` (the operator's identity)."""
        self.stash = StashClient(api)
        self.cluster = SnapshotCluster(api)
        self.events = events

    async def step(self, namespace: str, name: str) -> float | None:
        """Take the session one step further; the seconds until the next step, or None when done."""
        try:
            session = await self.stash.get(BackupSession, namespace, name)
        except NotFound:
            return None
        if bs.is_final(session):
            return None
        try:
            bc = await self.stash.get(BackupConfiguration, namespace, session.spec.invoker.name)
        except NotFound:
            await self._fail(
                session,
                None,
                f"spec.invoker: BackupConfiguration {namespace}/{session.spec.invoker.name} does not exist",
            )
            return None
        if bc.spec.driver != Snapshotter.VOLUME_SNAPSHOTTER:
            return None
        ref = _ref(bc)
        if session.status is None or session.status.phase != BackupSessionPhase.RUNNING:
            try:
                await self._start(session, bc, ref)
            except StepFailed as exc:
                await self._fail(session, ref, str(exc))
                return None
        return await self._follow(session, bc, ref)

    # ------------------------------------------------------------ first step

    async def _start(self, session: BackupSession, bc: BackupConfiguration, ref: TargetRef) -> None:
        problems = validation.backup_problems(bc)
        if problems:
            raise StepFailed("; ".join(problems))
        namespace = bc.metadata.namespace or ""
        claims = await self._claims(bc, ref)
        snapshot_class = await self._snapshot_class(bc)
        session_name = session.metadata.name or ""
        for claim in claims:
            await self._ensure_snapshot(bc, session_name, claim, snapshot_class)
        time_out = bc.spec.time_out
        created = session.metadata.creation_timestamp or now_utc()
        deadline = created + dt.timedelta(seconds=parse_duration(time_out)) if time_out else None
        now = now_utc()
        await self.stash.update_status(
            BackupSession, namespace, session_name, lambda s: bs.start(s, ref, claims, deadline, now)
        )
        log.info(
            "volume snapshots created", extra={"object": f"{namespace}/{session_name}", "claims": claims}
        )

    async def _claims(self, bc: BackupConfiguration, ref: TargetRef) -> list[str]:
        namespace, kind, name = bc.metadata.namespace or "", ref.kind or "", ref.name or ""
        what = f"{kind} {namespace}/{name}"
        if kind == names.KIND_PERSISTENT_VOLUME_CLAIM:
            target: dict[str, Any] = {"metadata": {"name": name}}
        else:
            try:
                target = await self.cluster.workload(kind, namespace, name)
            except NotFound:
                raise StepFailed(f"spec.target.ref: {what} does not exist") from None
        replicas = bc.spec.target.replicas if bc.spec.target else None
        claims = snapshots.target_claims(kind, target, replicas)
        if not claims:
            raise StepFailed(f"spec.target.ref: {what} has no PersistentVolumeClaim to snapshot")
        for claim in claims:
            try:
                await self.cluster.claim(namespace, claim.name)
            except NotFound:
                of = "" if kind == names.KIND_PERSISTENT_VOLUME_CLAIM else f" ({claim.why} of {what})"
                raise StepFailed(
                    f"spec.target.ref: PersistentVolumeClaim {namespace}/{claim.name}{of} does not exist"
                ) from None
        return [c.name for c in claims]

    async def _snapshot_class(self, bc: BackupConfiguration) -> str | None:
        name = bc.spec.target.snapshot_class_name if bc.spec.target else None
        if name:
            try:
                await self.cluster.snapshot_class(name)
            except NotFound:
                raise StepFailed(
                    f"spec.target.snapshotClassName: VolumeSnapshotClass {name} does not exist"
                ) from None
            return name
        if not snapshots.default_classes(await self.cluster.snapshot_classes()):
            raise StepFailed(
                "spec.target.snapshotClassName: not set, and no VolumeSnapshotClass is the cluster's default "
                f'(annotation {snapshots.DEFAULT_CLASS_ANNOTATION}: "true")'
            )
        return None

    async def _ensure_snapshot(
        self, bc: BackupConfiguration, session: str, claim: str, klass: str | None
    ) -> None:
        desired = snapshots.build_snapshot(bc, session, claim, klass)
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        try:
            await self.cluster.create_snapshot(desired)
        except Conflict:
            existing = await self.cluster.snapshot(namespace, name)
        else:
            return
        if not snapshots.made_for(existing, bc, session):
            raise StepFailed(
                f"spec.target.ref: VolumeSnapshot {namespace}/{name} (of claim {claim}) already exists "
                "and was not made for this BackupSession"
            )

    # ------------------------------------------------------------ later steps

    async def _follow(self, session: BackupSession, bc: BackupConfiguration, ref: TargetRef) -> float | None:
        namespace, name = bc.metadata.namespace or "", session.metadata.name or ""
        session = await self.stash.get(BackupSession, namespace, name)
        results: list[bs.HostResult] = []
        for claim in bs.running_claims(session):
            snap = snapshots.snapshot_name(claim, name)
            try:
                state, error = snapshots.snapshot_state(await self.cluster.snapshot(namespace, snap))
            except NotFound:
                state, error = snapshots.State.FAILED, f"VolumeSnapshot {namespace}/{snap} was deleted"
            if state == snapshots.State.READY:
                results.append(bs.HostResult(claim, HostBackupPhase.SUCCEEDED))
            elif state == snapshots.State.FAILED:
                results.append(
                    bs.HostResult(
                        claim, HostBackupPhase.FAILED, f"VolumeSnapshot {namespace}/{snap}: {error}"
                    )
                )
        now = now_utc()
        changed: list[str] = []

        def mutate(s: BackupSession) -> None:
            changed[:] = bs.record(s, ref, results, now)

        if results:
            session = await self.stash.update_status(BackupSession, namespace, name, mutate)
            await self._emit(session, bs.host_events(session, changed))
        deadline = _deadline(session, bc)
        if not bs.target_done(session) and now >= deadline:
            time_out = bc.spec.time_out or DEFAULT_TIME_OUT
            late: list[str] = []

            def expire(s: BackupSession) -> None:
                late[:] = bs.deadline_exceeded(s, ref, time_out, now)

            session = await self.stash.update_status(BackupSession, namespace, name, expire)
            await self._emit(session, bs.host_events(session, late))
        if bs.target_done(session):  # retention first: a session that ended has done all its work
            await self._retain(session, bc)
            await self.stash.update_status(
                BackupSession, namespace, name, lambda s: bs.conclude(s, now_utc())
            )
            return None
        return min(POLL_SECONDS, max(0.1, (deadline - now).total_seconds()))

    async def _retain(self, session: BackupSession, bc: BackupConfiguration) -> None:
        """Apply the retention policy to each succeeded claim's snapshots of ``bc``."""
        namespace, name = bc.metadata.namespace or "", session.metadata.name or ""
        targets = (session.status.targets if session.status else None) or []
        claims = [
            s.hostname or ""
            for s in (targets[0].stats or [] if targets else [])
            if s.phase == HostBackupPhase.SUCCEEDED
        ]
        policy = bc.spec.retention_policy
        removed_all: list[str] = []
        kept_count = 0
        try:
            mine = await self.cluster.snapshots(namespace, snapshots.config_selector(bc))
            for claim in claims:
                ready = [
                    retention.Snap(str(s["metadata"]["name"]), _created(s))
                    for s in mine
                    if (s["metadata"].get("labels") or {}).get(snapshots.LABEL_SOURCE_CLAIM) == claim
                    and (s.get("spec", {}).get("source") or {}).get("persistentVolumeClaimName") == claim
                    and not s["metadata"].get("deletionTimestamp")
                    and snapshots.snapshot_state(s)[0] == snapshots.State.READY
                ]
                kept, removed = retention.to_remove(policy, ready)
                kept_count += len(kept)
                if retention.removes(policy):
                    for snap in removed:
                        with contextlib.suppress(NotFound):
                            await self.cluster.delete_snapshot(namespace, snap)
                removed_all += removed
        except Exception as exc:  # reported in the status, never lost
            message = f"Failed to apply retention policy {policy.name}. Reason: {exc}"
            now = now_utc()
            await self.stash.update_status(
                BackupSession, namespace, name, lambda s: bs.retention_applied(s, False, message, now)
            )
            await self._emit(
                session,
                [
                    EventSpec(
                        "Warning", "FailedToApplyRetentionPolicy", message, names.COMPONENT_BACKUP_SESSION
                    )
                ],
            )
            return
        verb = "would remove (dryRun)" if not retention.removes(policy) and removed_all else "removed"
        message = (
            f"Successfully applied retention policy {policy.name}: kept {kept_count} VolumeSnapshots, "
            f"{verb} {len(removed_all)}{': ' + ', '.join(removed_all) if removed_all else ''}."
        )
        now = now_utc()
        await self.stash.update_status(
            BackupSession, namespace, name, lambda s: bs.retention_applied(s, True, message, now)
        )
        log.info("retention applied", extra={"object": f"{namespace}/{name}", "removed": removed_all})

    async def _fail(self, session: BackupSession, ref: TargetRef | None, message: str) -> None:
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        now = now_utc()
        updated = await self.stash.update_status(
            BackupSession, namespace, name, lambda s: bs.fail(s, ref, message, now)
        )
        await self._emit(updated, [bs.failure_event(message)])
        log.info("volume snapshot session failed", extra={"object": f"{namespace}/{name}", "reason": message})

    async def _emit(self, session: BackupSession, events: list[EventSpec]) -> None:
        for event in events:
            await self.events.emit(session, event)


def _ref(bc: BackupConfiguration) -> TargetRef:
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is None:
        return TargetRef()
    default = "v1" if ref.kind == names.KIND_PERSISTENT_VOLUME_CLAIM else "apps/v1"
    return TargetRef(
        api_version=ref.api_version or default, kind=ref.kind, name=ref.name, namespace=ref.namespace
    )


def _deadline(session: BackupSession, bc: BackupConfiguration) -> dt.datetime:
    if session.status is not None and session.status.session_deadline is not None:
        return session.status.session_deadline
    created = session.metadata.creation_timestamp or now_utc()
    return created + dt.timedelta(seconds=parse_duration(bc.spec.time_out or DEFAULT_TIME_OUT))


def _created(snapshot: dict[str, Any]) -> dt.datetime:
    text = str(snapshot["metadata"].get("creationTimestamp") or "1970-01-01T00:00:00Z")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
