"""Pure changes to a RestoreSession's status: host entries, the session's phase, conditions.

The phase follows Stash's RestoreSession controller: ``Pending`` until ``totalHosts`` is known,
``Running`` until every host has a final entry, then ``Failed`` if any host failed, ``Unknown`` if any
host's outcome is unknown, else ``Succeeded``; ``sessionDuration`` is set once all hosts are in. A host
restarted after a failure (the pod's restart is the retry) replaces its entry, so the phase is derived
again from the entries every time and a fixed host turns a Failed session Succeeded.

Every function mutates the model it is given and is safe to re-apply after a 409 Conflict.
"""

from __future__ import annotations

import datetime as dt

from stashlet.agent.context import upsert_condition
from stashlet.api.durations import format_duration
from stashlet.api.restoresession import (
    HostRestorePhase,
    HostRestoreStats,
    RestorePhase,
    RestoreSession,
    RestoreSessionStatus,
)

FINAL_HOST_PHASES = frozenset({HostRestorePhase.SUCCEEDED, HostRestorePhase.FAILED, HostRestorePhase.UNKNOWN})
FINAL_PHASES = frozenset({RestorePhase.SUCCEEDED, RestorePhase.FAILED, RestorePhase.UNKNOWN})


def _status(session: RestoreSession) -> RestoreSessionStatus:
    if session.status is None:
        session.status = RestoreSessionStatus()
    return session.status


def phase(session: RestoreSession) -> RestorePhase | None:
    """The session's phase, if it has one."""
    return session.status.phase if session.status else None


def host_entry(session: RestoreSession, host: str) -> HostRestoreStats | None:
    """This host's entry in ``status.stats``, if any."""
    for entry in (session.status.stats if session.status else None) or []:
        if entry.hostname == host:
            return entry
    return None


def nothing_to_do(session: RestoreSession, host: str) -> bool:
    """True when this host must not restore again: the session or this host already succeeded.

    A Failed (or Unknown) host or session is restored again: the init-container's restart is the retry,
    and letting the application start on data that did not come back is what must never happen.
    """
    if phase(session) == RestorePhase.SUCCEEDED:
        return True
    entry = host_entry(session, host)
    return entry is not None and entry.phase == HostRestorePhase.SUCCEEDED


def is_complete(session: RestoreSession) -> bool:
    """True when every host has a final entry (the session has a final phase)."""
    return phase(session) in FINAL_PHASES


def recompute(session: RestoreSession, now: dt.datetime) -> None:
    """Derive the session's phase (and, once all hosts are in, its duration) from the host entries."""
    status = _status(session)
    if status.phase == RestorePhase.INVALID:
        return
    if status.total_hosts is None:
        status.phase = RestorePhase.PENDING
        return
    finals = [s for s in status.stats or [] if s.phase in FINAL_HOST_PHASES]
    if len(finals) < status.total_hosts:
        status.phase = RestorePhase.RUNNING
        status.session_duration = None
        return
    if any(s.phase == HostRestorePhase.FAILED for s in finals):
        status.phase = RestorePhase.FAILED
    elif any(s.phase == HostRestorePhase.UNKNOWN for s in finals):
        status.phase = RestorePhase.UNKNOWN
    else:
        status.phase = RestorePhase.SUCCEEDED
    created = session.metadata.creation_timestamp
    if created is not None:
        status.session_duration = format_duration(max(0.0, (now - created).total_seconds()))


def put_host(session: RestoreSession, total_hosts: int, stats: HostRestoreStats, now: dt.datetime) -> None:
    """Write this host's entry (replacing an earlier one) and ``totalHosts``, then recompute the phase."""
    status = _status(session)
    status.total_hosts = total_hosts
    status.stats = [s for s in status.stats or [] if s.hostname != stats.hostname] + [stats]
    recompute(session, now)


def set_condition(
    session: RestoreSession, type_: str, ok: bool, reason: str, message: str, now: dt.datetime
) -> None:
    """Set a condition; lastTransitionTime changes only when its status does."""
    status = _status(session)
    status.conditions = upsert_condition(status.conditions, type_, ok, reason, message, now)


def summary(session: RestoreSession) -> str:
    """One line on where the hosts stand, e.g. ``2 of 3 hosts restored, host-1 failed``."""
    status = _status(session)
    stats = status.stats or []
    ok = sorted(s.hostname or "" for s in stats if s.phase == HostRestorePhase.SUCCEEDED)
    failed = sorted(s.hostname or "" for s in stats if s.phase == HostRestorePhase.FAILED)
    text = f"{len(ok)} of {status.total_hosts or '?'} hosts restored"
    if failed:
        text += f", failed: {', '.join(failed)}"
    return text
