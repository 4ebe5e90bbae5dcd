"""No silent BackupSession: the operator ends a session nobody runs, saying why: async.

:meth:`SilentSessions.check` looks at one session no agent has taken up yet (:func:`.pickup.taken_up`)
and says when to look again (the controller's work queue holds the timer, so a pending session costs
nothing until its deadline):

- its invoker is of a kind stashlet does not run, or names a BackupConfiguration that does not exist
  (after :data:`INVOKER_GRACE_SECONDS`, for a session applied just before its configuration): ``Failed``
  at once, reason ``InvokerKindNotSupported`` or ``InvokerNotFound``;
- a VolumeSnapshotter configuration's session is the operator's own work, with its own deadline: nothing;
- before the pickup deadline (:func:`.pickup.deadline_seconds`): look again at the deadline; at it, while
  an earlier session of the configuration runs (:func:`.pickup.running_before`), once more a deadline later;
- at the deadline, a paused configuration's session ends ``Skipped`` with the Warning event the agent
  would record (``BackupSessionSkipped``); any other ends ``Failed`` with the reason
  :func:`.pickup.sidecar_verdict` or :func:`.pickup.job_verdict` finds from the workload, its pods, the
  Job and its pods.

:meth:`SilentSessions.job_ended` fails the session of a backup Job that ended (failed, or completed)
while its session had not, with the Job's reason.

Ending a session writes phase ``Failed``, ``sessionDuration`` and condition ``BackupExecutorEnsured=False``
with the reason and a message naming the objects, records a Warning event with that reason on the
session and on its configuration, and pushes ``stash_backup_session_success 0``
(:mod:`stashlet.operator.metrics`).
The write happens only while no agent has taken the session up (conflict-safe), so an agent that answers
at the last moment wins.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Final

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupInvokerPhase
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, BackupSessionStatus
from stashlet.api.common import Condition, ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionType
from stashlet.api.durations import format_duration
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import NotFound
from stashlet.operator import metrics
from stashlet.operator.backup import pickup
from stashlet.operator.backup.history import FINISHED
from stashlet.operator.core.apiclient import call_json
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.core.job_outcome import Verdict, ended_job_verdict
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job

log = logging.getLogger(__name__)

INVOKER_GRACE_SECONDS: Final = 10.0
"""How long a session may name a BackupConfiguration that does not exist before it is failed."""
REASON_INVOKER_UNSUPPORTED: Final = "InvokerKindNotSupported"
REASON_SKIPPED: Final = "BackupSessionSkipped"
PAUSED_MESSAGE: Final = "Backup Configuration is paused"
JOB_NAME_LABEL: Final = "job-name"


def _wants_backup_while_paused(session: BackupSession) -> bool:
    annotations = session.metadata.annotations or {}
    return annotations.get(names.ANNOTATION_BACKUP_WHILE_PAUSED, "").lower() == "true"


def _age(session: BackupSession, now: dt.datetime) -> float:
    created = session.metadata.creation_timestamp
    return 0.0 if created is None else (now - created).total_seconds()


class SilentSessions:
    """Ends the BackupSessions nobody runs (module docstring)."""

    def __init__(
        self, stash: StashClient, resources: Resources, events: Events, settings: OperatorSettings
    ) -> None:
        """Read and write through ``stash`` and ``resources``; record through ``events``."""
        self.stash = stash
        self.resources = resources
        self.events = events
        self.settings = settings

    async def check(self, namespace: str, name: str) -> float | None:
        """Look at session ``namespace/name``; the seconds until it is to be looked at again, or None when
        it needs nothing more from here (taken up, ended, gone, or ended now)."""
        try:
            session = await self.stash.get(BackupSession, namespace, name)
        except NotFound:
            return None
        if pickup.taken_up(session.to_dict()):
            return None
        now = now_utc()
        invoker = session.spec.invoker
        if invoker.kind != names.KIND_BACKUP_CONFIGURATION:
            message = (
                f"spec.invoker.kind: stashlet runs the sessions of a BackupConfiguration, not of a "
                f"{invoker.kind} ({invoker.name}): nothing will run this session"
            )
            await self.end(session, None, Verdict(REASON_INVOKER_UNSUPPORTED, message))
            return None
        try:
            bc = await self.stash.get(BackupConfiguration, namespace, invoker.name)
        except NotFound:
            wait = INVOKER_GRACE_SECONDS - _age(session, now)
            if wait > 0:
                return wait
            message = (
                f"spec.invoker.name: BackupConfiguration {namespace}/{invoker.name} does not exist: "
                "nothing will run this session"
            )
            await self.end(session, None, Verdict(pickup.REASON_INVOKER_NOT_FOUND, message))
            return None
        if bc.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
            return None
        wait = self.deadline(bc) - _age(session, now)
        if wait > 0:
            return wait
        others = [s.to_dict() for s in await self.stash.list(BackupSession, namespace)]
        if (busy := pickup.running_before(session.to_dict(), others)) is not None:
            log.info(
                "backup session waits for an earlier one",
                extra={"object": f"{namespace}/{name}", "running": busy},
            )
            return self.deadline(bc)
        if bc.spec.paused and not _wants_backup_while_paused(session):
            await self.skip(session)
            return None
        verdict = await self.why(bc, session)
        await self.end(session, bc, verdict)
        return None

    def deadline(self, bc: BackupConfiguration) -> float:
        """Seconds a session of ``bc`` may wait for an agent; a bad annotation is logged and ignored."""
        default = self.settings.pickup_deadline_seconds
        try:
            return pickup.deadline_seconds(bc.metadata.annotations, default)
        except ValueError as exc:
            log.warning(
                "pickup deadline annotation ignored",
                extra={"object": f"{bc.metadata.namespace}/{bc.metadata.name}", "error": str(exc)},
            )
            return default

    async def why(self, bc: BackupConfiguration, session: BackupSession) -> Verdict:
        """Why no agent took ``session`` of ``bc`` up, from the workload or Job and their pods."""
        namespace = bc.metadata.namespace or ""
        pods: list[dict[str, Any]] = []
        if backup_job.runs_as_job(bc):
            job_name = backup_job.job_name(session.metadata.name or "")
            job = await self._read_job(namespace, job_name)
            pods = (
                []
                if job is None
                else await self.resources.list_pods(namespace, f"{JOB_NAME_LABEL}={job_name}")
            )
            verdict = pickup.job_verdict(namespace, job_name, job, pods)
        else:
            ref = bc.spec.target.ref if bc.spec.target else None
            kind, name = (ref.kind or "", ref.name or "") if ref else ("", "")
            workload_kind = WORKLOAD_KINDS.get(kind)
            workload: dict[str, Any] | None = None
            if workload_kind is not None:
                try:
                    workload = await self.resources.get_workload(workload_kind, namespace, name)
                except NotFound:
                    workload = None
                if workload is not None:
                    pods = await self.resources.list_pods(namespace, pickup.selector_of(workload))
            verdict = pickup.sidecar_verdict(kind, namespace, name, workload, pods)
        status = bc.status
        if status is not None and status.phase is not None and status.phase != BackupInvokerPhase.READY:
            verdict = Verdict(
                verdict.reason,
                f"{verdict.message} (BackupConfiguration {namespace}/{bc.metadata.name} is {status.phase})",
            )
        return verdict

    async def job_ended(self, namespace: str, job_name: str) -> None:
        """Fail the session of backup Job ``namespace/job_name`` if the Job ended and the session did not."""
        job = await self._read_job(namespace, job_name)
        if job is None:
            return
        verdict = ended_job_verdict(namespace, job)
        session_name = _session_of(job)
        if verdict is None or session_name is None:
            return
        try:
            session = await self.stash.get(BackupSession, namespace, session_name)
        except NotFound:
            return
        if session.status is not None and session.status.phase in FINISHED:
            return
        try:
            bc: BackupConfiguration | None = await self.stash.get(
                BackupConfiguration, namespace, session.spec.invoker.name
            )
        except NotFound:
            bc = None
        await self.end(session, bc, verdict, only_if_silent=False)

    async def _read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await call_json(self.resources.batch.read_namespaced_job, name, namespace)
        except NotFound:
            return None

    async def end(
        self,
        session: BackupSession,
        bc: BackupConfiguration | None,
        verdict: Verdict,
        *,
        only_if_silent: bool = True,
    ) -> None:
        """End ``session`` Failed with ``verdict`` (module docstring); nothing when an agent has taken it
        up meanwhile (with ``only_if_silent``) or it has ended."""
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        ended: list[bool] = []

        def mutate(current: BackupSession) -> bool:
            if current.status is not None and current.status.phase in FINISHED:
                return False
            if only_if_silent and pickup.taken_up(current.to_dict()):
                return False
            fail(current, verdict, now_utc())
            ended.append(True)
            return True

        updated = await self.stash.update_status(BackupSession, namespace, name, mutate)
        if not ended:
            return
        log.warning(
            "backup session failed: nobody ran it",
            extra={"object": f"{namespace}/{name}", "reason": verdict.reason, "error": verdict.message},
        )
        await self.events.emit(
            updated, EventSpec("Warning", verdict.reason, verdict.message, names.COMPONENT_BACKUP_SESSION)
        )
        if bc is not None:
            message = f"BackupSession {name} failed: {verdict.message}"
            await self.events.emit(bc, EventSpec("Warning", verdict.reason, message))
        repo = bc.spec.repository if bc is not None else None
        labels = metrics.SessionLabels(
            invoker_kind=session.spec.invoker.kind,
            invoker_name=session.spec.invoker.name,
            namespace=namespace,
            repository=repo.name if repo else "",
            driver=str(bc.spec.driver or Snapshotter.RESTIC) if bc is not None else Snapshotter.RESTIC.value,
        )
        await metrics.push_failure(self.settings.pushgateway_url, labels, metrics.BACKUP_SESSION_SUCCESS)

    async def skip(self, session: BackupSession) -> None:
        """End a paused configuration's session ``Skipped``, as its agent would have."""
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        ended: list[bool] = []

        def mutate(current: BackupSession) -> bool:
            if pickup.taken_up(current.to_dict()):
                return False
            finish(current, BackupSessionPhase.SKIPPED, now_utc())
            ended.append(True)
            return True

        updated = await self.stash.update_status(BackupSession, namespace, name, mutate)
        if ended:
            spec = EventSpec("Warning", REASON_SKIPPED, PAUSED_MESSAGE, names.COMPONENT_BACKUP_SESSION)
            await self.events.emit(updated, spec)
            log.info("backup session skipped: configuration paused", extra={"object": f"{namespace}/{name}"})


def _session_of(job: dict[str, Any]) -> str | None:
    """The BackupSession a backup Job runs: its owner of that kind."""
    for owner in (job.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == names.KIND_BACKUP_SESSION:
            return str(owner.get("name"))
    return None


def finish(session: BackupSession, phase: BackupSessionPhase, now: dt.datetime) -> None:
    """Set ``phase`` and the duration since the session was made."""
    status = session.status or BackupSessionStatus()
    status.phase = phase
    created = session.metadata.creation_timestamp
    if created is not None:
        status.session_duration = format_duration(max(0.0, (now - created).total_seconds()))
    session.status = status


def fail(session: BackupSession, verdict: Verdict, now: dt.datetime) -> None:
    """End ``session`` Failed with ``BackupExecutorEnsured=False`` saying ``verdict``."""
    finish(session, BackupSessionPhase.FAILED, now)
    status = session.status or BackupSessionStatus()
    kept = [c for c in status.conditions or [] if c.type != ConditionType.BACKUP_EXECUTOR_ENSURED]
    kept.append(
        Condition(
            type=ConditionType.BACKUP_EXECUTOR_ENSURED.value,
            status=ConditionStatus.FALSE,
            reason=verdict.reason,
            message=verdict.message,
            last_transition_time=now,
        )
    )
    status.conditions = kept
