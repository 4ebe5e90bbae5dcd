"""Pure changes to a BackupSession's status: host entries, target and session phases, conditions.

Every function given a session mutates it and is safe to re-apply (the status writer re-runs it
after a 409 Conflict on a freshly read object), so concurrent hosts never lose each other's entries.
:func:`host_stats_from_summaries` builds a host's entry from restic's backup summaries (one per path),
:func:`updated_repository_status` a Repository's status from what a session learned of the repository.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from stashlet.agent.context import upsert_condition
from stashlet.agent.metrics.report import PushOutcome
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.forget_policy import KnownSnapshot
from stashlet.agent.sizes import format_size
from stashlet.api.backupsession import (
    BackupSession,
    BackupSessionPhase,
    BackupSessionStatus,
    BackupTargetStatus,
    FileStats,
    HostBackupPhase,
    HostBackupStats,
    SnapshotStats,
    TargetPhase,
)
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionType
from stashlet.api.durations import format_duration
from stashlet.api.repository import RepositoryStatus
from stashlet.api.timestamps import now_utc

FINAL_SESSION_PHASES = frozenset(
    {BackupSessionPhase.SUCCEEDED, BackupSessionPhase.FAILED, BackupSessionPhase.SKIPPED}
)
FINAL_HOST_PHASES = frozenset({HostBackupPhase.SUCCEEDED, HostBackupPhase.FAILED})


def is_final(session: BackupSession) -> bool:
    """True once the session is Succeeded, Failed or Skipped."""
    return bool(session.status and session.status.phase in FINAL_SESSION_PHASES)


def _status(session: BackupSession) -> BackupSessionStatus:
    if session.status is None:
        session.status = BackupSessionStatus()
    return session.status


def _same_ref(a: TargetRef | None, b: TargetRef) -> bool:
    return a is not None and (a.kind, a.name) == (b.kind, b.name)


def target_complete(session: BackupSession, ref: TargetRef) -> bool:
    """True when every host of ``ref`` has a final entry."""
    for target in (session.status.targets if session.status else None) or []:
        if _same_ref(target.ref, ref):
            return target.phase in (TargetPhase.SUCCEEDED, TargetPhase.FAILED)
    return False


def target_status(session: BackupSession, ref: TargetRef, total_hosts: int) -> BackupTargetStatus:
    """The status entry of ``ref``, created (Pending) if absent; totalHosts kept up to date."""
    status = _status(session)
    status.targets = status.targets or []
    for target in status.targets:
        if _same_ref(target.ref, ref):
            target.total_hosts = total_hosts
            return target
    target = BackupTargetStatus(ref=ref, total_hosts=total_hosts, phase=TargetPhase.PENDING, stats=[])
    status.targets.append(target)
    return target


def host_entry(session: BackupSession, ref: TargetRef, host: str) -> HostBackupStats | None:
    """This host's entry for ``ref``, if it has one."""
    for target in (session.status.targets if session.status else None) or []:
        if _same_ref(target.ref, ref):
            return next((s for s in target.stats or [] if s.hostname == host), None)
    return None


def target_hosts(session: BackupSession, ref: TargetRef) -> list[str]:
    """The host names recorded for ``ref`` in the session, in the order they were recorded."""
    for target in (session.status.targets if session.status else None) or []:
        if _same_ref(target.ref, ref):
            return list(dict.fromkeys(s.hostname for s in target.stats or [] if s.hostname))
    return []


def retention_hosts(session: BackupSession | None, ref: TargetRef, own_host: str) -> list[str]:
    """The hosts whose snapshots this target's retention may forget: those recorded for ``ref`` in the
    session, and ``own_host`` (the host applying it), never another configuration's."""
    recorded = target_hosts(session, ref) if session is not None else []
    return list(dict.fromkeys([*recorded, own_host]))


def host_is_done(session: BackupSession, ref: TargetRef, host: str) -> bool:
    """True when this host already has a final entry: its work for the session is over."""
    entry = host_entry(session, ref, host)
    return entry is not None and entry.phase in FINAL_HOST_PHASES


def put_host(
    session: BackupSession,
    ref: TargetRef,
    total_hosts: int,
    stats: HostBackupStats,
    now: dt.datetime,
    *,
    finalize: bool = True,
) -> None:
    """Write this host's entry (replacing its earlier one), then recompute the phases.

    With ``finalize`` False the session stays Running even when every host is done: the host that
    completed the target still has repository work to do and ends the session itself.
    """
    target = target_status(session, ref, total_hosts)
    target.stats = [s for s in target.stats or [] if s.hostname != stats.hostname] + [stats]
    if session.status and session.status.phase in (None, BackupSessionPhase.PENDING):
        session.status.phase = BackupSessionPhase.RUNNING
    if target.phase == TargetPhase.PENDING:
        target.phase = TargetPhase.RUNNING
    recompute(session, now, finalize=finalize)


def recompute(session: BackupSession, now: dt.datetime, *, finalize: bool = True) -> None:
    """Derive each target's phase from its hosts and, with ``finalize``, the session's from its targets."""
    status = _status(session)
    if status.phase in FINAL_SESSION_PHASES:
        return
    targets = status.targets or []
    for target in targets:
        finals = [s for s in target.stats or [] if s.phase in FINAL_HOST_PHASES]
        if target.total_hosts and len(finals) >= target.total_hosts:
            failed = any(s.phase == HostBackupPhase.FAILED for s in finals)
            target.phase = TargetPhase.FAILED if failed else TargetPhase.SUCCEEDED
    if finalize and targets and all(t.phase in (TargetPhase.SUCCEEDED, TargetPhase.FAILED) for t in targets):
        failed = any(t.phase == TargetPhase.FAILED for t in targets)
        finish(session, BackupSessionPhase.FAILED if failed else BackupSessionPhase.SUCCEEDED, now)


def finish(session: BackupSession, phase: BackupSessionPhase, now: dt.datetime) -> None:
    """End the session with ``phase`` and its duration since creation."""
    status = _status(session)
    status.phase = phase
    created = session.metadata.creation_timestamp
    if created is not None:
        status.session_duration = format_duration(max(0.0, (now - created).total_seconds()))


def fail_unfinished(
    session: BackupSession,
    ref: TargetRef,
    total_hosts: int,
    host: str,
    reason: str,
    message: str,
    now: dt.datetime,
) -> None:
    """Record this host Failed with ``reason`` unless it already has a final entry; the pod the entry
    names stays (it tells later sessions whose locks a lost pod may have left)."""
    if host_is_done(session, ref, host):
        return
    failed = HostBackupStats(hostname=host, phase=HostBackupPhase.FAILED, reason=reason, error=message)
    earlier = host_entry(session, ref, host)
    if earlier is not None and earlier.pod:
        failed.pod = earlier.pod
    put_host(session, ref, total_hosts, failed, now)


def set_condition(
    session: BackupSession, type_: str, ok: bool, reason: str, message: str, now: dt.datetime
) -> None:
    """Set a session-wide condition; lastTransitionTime changes only when the status does."""
    status = _status(session)
    status.conditions = upsert_condition(status.conditions, type_, ok, reason, message, now)


def set_target_condition(
    session: BackupSession,
    ref: TargetRef,
    total_hosts: int,
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    now: dt.datetime,
) -> None:
    """Set a condition of target ``ref`` (where Stash puts a hook's outcome)."""
    target = target_status(session, ref, total_hosts)
    target.conditions = upsert_condition(target.conditions, type_, ok, reason, message, now)


def apply_push_condition(session: BackupSession, outcome: PushOutcome | None) -> None:
    """Set MetricsPushed on the session from ``outcome`` (nothing when nothing was pushed)."""
    if outcome is None:
        return
    reason = "MetricsPushed" if outcome.ok else "MetricsPushFailed"
    set_condition(session, ConditionType.METRICS_PUSHED, outcome.ok, reason, outcome.message, now_utc())


def snapshot_stats(path: str, summary: rj.BackupSummary) -> SnapshotStats:
    """The entry of one snapshot (one path's ``restic backup``), as Stash's ``extractBackupInfo`` fills it."""
    return SnapshotStats(
        name=(summary.snapshot_id or "")[:8] or None,
        path=path,
        total_size=format_size(summary.total_bytes_processed),
        uploaded=format_size(summary.data_added),
        processing_time=format_duration(summary.total_duration),
        file_stats=FileStats(
            total_files=summary.total_files_processed,
            new_files=summary.files_new,
            modified_files=summary.files_changed,
            unmodified_files=summary.files_unmodified,
        ),
    )


def host_stats_from_summaries(
    host: str,
    done: Sequence[tuple[str, rj.BackupSummary]],
    seconds: float,
    *,
    phase: HostBackupPhase = HostBackupPhase.SUCCEEDED,
    error: str | None = None,
    reason: str | None = None,
) -> HostBackupStats:
    """The status entry for a host from restic's backup summary of each path it backed up (one snapshot
    each, in order; none when it failed before the first)."""
    stats = HostBackupStats(
        hostname=host,
        phase=phase,
        snapshots=[snapshot_stats(path, summary) for path, summary in done] or None,
        duration=format_duration(seconds),
    )
    if error:
        stats.error = error
    if reason:
        stats.reason = reason
    return stats


def updated_repository_status(
    current: RepositoryStatus,
    *,
    stats: rj.RepoStats | None,
    snapshot: KnownSnapshot | None,
    scope: Sequence[KnownSnapshot],
    integrity: bool | None,
    checked_at: dt.datetime | None,
    removed: int | None,
) -> RepositoryStatus:
    """A Repository's status after a session: ``current`` with what the session learned.

    - ``stats`` (``restic stats --mode raw-data``, None when it failed) gives the stored size and the
      number of snapshots (every configuration's);
    - ``snapshot`` (the one the session wrote) moves ``lastBackupTime`` forward and sets
      ``firstBackupTime`` when there is none yet;
    - ``scope`` (the snapshots the agent knows of its target): when they are every snapshot of the
      repository (their number is the repository's), the earliest of them is ``firstBackupTime`` (a
      retention that removed the first snapshot moves it); in a repository shared with others the field
      keeps its value until then;
    - ``integrity`` and ``checked_at`` (a check that reached its verdict) set ``integrity`` and
      ``lastCheckTime``; None (no check, or one that could not run) keeps the last real check's;
    - ``removed`` (what the retention removed, None when it failed) sets ``snapshotsRemovedOnLastCleanup``.
    """
    status = current.model_copy(deep=True)
    if stats is not None:
        status.total_size = format_size(stats.total_size)
        status.snapshot_count = stats.snapshots_count
    if snapshot is not None:
        taken = snapshot.time.replace(microsecond=0)
        if status.last_backup_time is None or taken > status.last_backup_time:
            status.last_backup_time = taken
        if status.first_backup_time is None:
            status.first_backup_time = taken
    if stats is not None and scope and len(scope) == stats.snapshots_count:
        status.first_backup_time = min(s.time for s in scope).replace(microsecond=0)
        status.last_backup_time = max(s.time for s in scope).replace(microsecond=0)
    if stats is not None and stats.snapshots_count == 0:
        status.first_backup_time = status.last_backup_time = None
    if integrity is not None:
        status.integrity = integrity
    if checked_at is not None:
        status.last_check_time = checked_at.replace(microsecond=0)
    if removed is not None:
        status.snapshots_removed_on_last_cleanup = removed
    return status
