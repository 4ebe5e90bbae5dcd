"""A VolumeSnapshotter BackupSession's status, as Stash writes it: pure.

One target (``spec.target.ref``) whose hosts are the claims: ``totalHosts`` is their number and each has
an entry ``hostname: <claim>``, ``Running`` while its VolumeSnapshot is not ready (stashlet), then
``Succeeded`` with its ``duration`` or ``Failed`` with the ``error``. The target and the session are
``Failed`` when any claim failed, else ``Succeeded``; ``sessionDuration`` runs from the session's
creation. Conditions: ``BackupExecutorEnsured`` on the target (Stash's reasons; the snapshots made, or
why none could be), ``RetentionPolicyApplied`` on the session, ``DeadlineExceeded`` when the session
ran out of time. A problem found before any snapshot is made (a missing claim or class) fails the
session at once, naming the field.

Every function mutates the session it is given and is safe to re-apply after a 409 Conflict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from stashlet.api import names
from stashlet.api.backupsession import (
    BackupSession,
    BackupSessionPhase,
    BackupSessionStatus,
    BackupTargetStatus,
    HostBackupPhase,
    HostBackupStats,
    TargetPhase,
)
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import format_duration
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions

FINAL = frozenset({BackupSessionPhase.SUCCEEDED, BackupSessionPhase.FAILED, BackupSessionPhase.SKIPPED})
REASON_HOST_SUCCEEDED = "Host Backup Succeeded"
REASON_HOST_FAILED = "Host Backup Failed"


@dataclass(frozen=True)
class HostResult:
    """One claim's outcome: ``phase`` Running, Succeeded or Failed."""

    claim: str
    phase: HostBackupPhase
    error: str = ""


def _status(session: BackupSession) -> BackupSessionStatus:
    if session.status is None:
        session.status = BackupSessionStatus()
    return session.status


def is_final(session: BackupSession) -> bool:
    """True once the session has ended."""
    return bool(session.status and session.status.phase in FINAL)


def _target(session: BackupSession, ref: TargetRef, total: int) -> BackupTargetStatus:
    status = _status(session)
    if not status.targets:
        status.targets = [BackupTargetStatus(ref=ref, total_hosts=total, phase=TargetPhase.RUNNING, stats=[])]
    target = status.targets[0]
    target.ref, target.total_hosts = ref, total
    return target


def _elapsed(session: BackupSession, now: dt.datetime) -> str:
    created = session.metadata.creation_timestamp
    return format_duration(max(0.0, (now - created).total_seconds())) if created else "0s"


def _set(
    conditions_of: BackupSessionStatus | BackupTargetStatus, update: ConditionUpdate, now: dt.datetime
) -> None:
    conditions_of.conditions = apply_conditions(
        conditions_of.conditions or [], [update], now=now, generation=None
    )


def running_claims(session: BackupSession) -> list[str]:
    """The claims recorded as still Running."""
    targets = (session.status.targets if session.status else None) or []
    stats = (targets[0].stats or []) if targets else []
    return [s.hostname or "" for s in stats if s.phase == HostBackupPhase.RUNNING]


def recorded_claims(session: BackupSession) -> list[str]:
    """Every claim recorded for the session, in order."""
    targets = (session.status.targets if session.status else None) or []
    return [s.hostname or "" for s in ((targets[0].stats or []) if targets else [])]


def start(
    session: BackupSession,
    ref: TargetRef,
    claims: Sequence[str],
    deadline: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """The snapshots are made: Running, one Running entry per claim, BackupExecutorEnsured."""
    status = _status(session)
    if status.phase in FINAL:
        return
    status.phase = BackupSessionPhase.RUNNING
    status.session_deadline = deadline
    target = _target(session, ref, len(claims))
    known = {s.hostname for s in target.stats or []}
    target.stats = [
        *(target.stats or []),
        *(HostBackupStats(hostname=c, phase=HostBackupPhase.RUNNING) for c in claims if c not in known),
    ]
    made = ", ".join(claims)
    _set(
        target,
        ConditionUpdate.true(
            ConditionType.BACKUP_EXECUTOR_ENSURED,
            ConditionReason.SUCCESSFULLY_ENSURED_BACKUP_EXECUTOR,
            f"Successfully ensured backup executor: VolumeSnapshots of {made} created.",
        ),
        now,
    )


def record(
    session: BackupSession, ref: TargetRef, results: Sequence[HostResult], now: dt.datetime
) -> list[str]:
    """Write the claims' outcomes, and the target's once none is Running (:func:`conclude` then ends the
    session, after retention). Returns the claims whose outcome is new (for their events)."""
    status = _status(session)
    if status.phase in FINAL:
        return []
    target = _target(session, ref, max(len(results), len(recorded_claims(session))))
    entries = {s.hostname: s for s in target.stats or []}
    changed: list[str] = []
    for result in results:
        old = entries.get(result.claim)
        if old is not None and old.phase == result.phase:
            continue
        changed.append(result.claim)
        entries[result.claim] = HostBackupStats(
            hostname=result.claim,
            phase=result.phase,
            duration=_elapsed(session, now) if result.phase == HostBackupPhase.SUCCEEDED else None,
            error=result.error or None,
        )
    target.stats = list(entries.values())
    if all(s.phase != HostBackupPhase.RUNNING for s in target.stats):
        failed = any(s.phase == HostBackupPhase.FAILED for s in target.stats)
        target.phase = TargetPhase.FAILED if failed else TargetPhase.SUCCEEDED
    return changed


def target_done(session: BackupSession) -> bool:
    """True once every claim of the session has its outcome (the session ends after retention)."""
    targets = (session.status.targets if session.status else None) or []
    return bool(targets) and targets[0].phase in (TargetPhase.SUCCEEDED, TargetPhase.FAILED)


def conclude(session: BackupSession, now: dt.datetime) -> None:
    """End the session as its target ended (called once retention has been applied)."""
    if is_final(session) or not target_done(session):
        return
    targets = _status(session).targets or []
    failed = targets[0].phase == TargetPhase.FAILED
    _finish(session, BackupSessionPhase.FAILED if failed else BackupSessionPhase.SUCCEEDED, now)


def fail(session: BackupSession, ref: TargetRef | None, message: str, now: dt.datetime) -> None:
    """End the session Failed before any snapshot was made: BackupExecutorEnsured False with ``message``."""
    status = _status(session)
    if status.phase in FINAL:
        return
    if ref is not None:
        target = _target(session, ref, 0)
        target.phase = TargetPhase.FAILED
        _set(
            target,
            ConditionUpdate.false(
                ConditionType.BACKUP_EXECUTOR_ENSURED,
                ConditionReason.FAILED_TO_ENSURE_BACKUP_EXECUTOR,
                f"Failed to ensure backup executor. Reason: {message}",
            ),
            now,
        )
    _finish(session, BackupSessionPhase.FAILED, now)


def deadline_exceeded(session: BackupSession, ref: TargetRef, time_out: str, now: dt.datetime) -> list[str]:
    """Fail the claims still Running and the session: ``DeadlineExceeded``. Returns those claims."""
    late = running_claims(session)
    _set(
        _status(session),
        ConditionUpdate.true(
            ConditionType.DEADLINE_EXCEEDED,
            ConditionReason.FAILED_TO_COMPLETE_WITHIN_DEADLINE,
            f"Failed to complete backup within {time_out}.",
        ),
        now,
    )
    message = f"the VolumeSnapshot was not readyToUse within {time_out}"
    record(session, ref, [HostResult(c, HostBackupPhase.FAILED, message) for c in late], now)
    return late


def retention_applied(session: BackupSession, ok: bool, message: str, now: dt.datetime) -> None:
    """``RetentionPolicyApplied`` with Stash's reasons."""
    reason = (
        ConditionReason.SUCCESSFULLY_APPLIED_RETENTION_POLICY
        if ok
        else ConditionReason.FAILED_TO_APPLY_RETENTION_POLICY
    )
    update = (ConditionUpdate.true if ok else ConditionUpdate.false)(
        ConditionType.RETENTION_POLICY_APPLIED, reason, message
    )
    _set(_status(session), update, now)


def _finish(session: BackupSession, phase: BackupSessionPhase, now: dt.datetime) -> None:
    status = _status(session)
    status.phase = phase
    status.session_duration = _elapsed(session, now)


def host_events(session: BackupSession, claims: Sequence[str]) -> list[EventSpec]:
    """The events "Host Backup Succeeded" / "Host Backup Failed" for ``claims`` (from the BackupSession
    Controller)."""
    targets = (session.status.targets if session.status else None) or []
    stats = {s.hostname: s for s in ((targets[0].stats or []) if targets else [])}
    events: list[EventSpec] = []
    for claim in claims:
        entry = stats.get(claim)
        if entry is None or entry.phase == HostBackupPhase.RUNNING:
            continue
        if entry.phase == HostBackupPhase.SUCCEEDED:
            events.append(
                EventSpec(
                    "Normal",
                    REASON_HOST_SUCCEEDED,
                    f"Successfully took VolumeSnapshot of {claim}",
                    names.COMPONENT_BACKUP_SESSION,
                )
            )
        else:
            events.append(
                EventSpec(
                    "Warning",
                    REASON_HOST_FAILED,
                    f"Failed to take VolumeSnapshot of {claim}: {entry.error}",
                    names.COMPONENT_BACKUP_SESSION,
                )
            )
    return events


def failure_event(message: str) -> EventSpec:
    """The Warning event of a session that failed before any snapshot was made."""
    return EventSpec(
        "Warning",
        ConditionReason.FAILED_TO_ENSURE_BACKUP_EXECUTOR.value,
        message,
        names.COMPONENT_BACKUP_SESSION,
    )
