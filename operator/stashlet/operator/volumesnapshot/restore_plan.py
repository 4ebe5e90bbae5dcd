"""A VolumeSnapshotter RestoreSession's claims, and its status, as Stash writes them: pure.

The claims: for each ordinal ``0 .. replicas-1`` (``spec.target.replicas``, 1 when unset) each
``volumeClaimTemplates`` entry with ``${POD_ORDINAL}`` replaced by the ordinal everywhere in it (its
name and its ``dataSource.name``), made in the session's namespace with the label
``stash.appscode.com/restore-session``, never owned: the claims are the user's and stay.

The status: a host per claim (``hostname: <claim>``), ``totalHosts`` their number; ``Succeeded`` when the
claim is Bound, ``Unknown`` when its StorageClass binds on first consumer (Stash's words: it cannot tell
whether the volume was initialised), ``Failed`` with the reason (a missing VolumeSnapshot or class, a
claim that already exists, the deadline). The phase: ``Running`` until every host is final, then
``Failed`` if any failed, ``Unknown`` if any is unknown, else ``Succeeded``; ``sessionDuration`` from
the session's creation; ``RestoreCompleted`` once final. A session refused by validation is ``Failed``
with ``ValidationPassed`` False (it names the field); no claim is made.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import format_duration
from stashlet.api.restoresession import (
    HostRestorePhase,
    HostRestoreStats,
    RestorePhase,
    RestoreSession,
    RestoreSessionStatus,
)
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions

FINAL_HOSTS = frozenset({HostRestorePhase.SUCCEEDED, HostRestorePhase.FAILED, HostRestorePhase.UNKNOWN})
FINAL = frozenset({RestorePhase.SUCCEEDED, RestorePhase.FAILED, RestorePhase.UNKNOWN, RestorePhase.INVALID})
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
UNKNOWN_MESSAGE = (
    "Stash is unable to verify whether the volume has been initialized from snapshot data or not."
    "Reason: volume binding mode is WaitForFirstConsumer."
)


@dataclass(frozen=True)
class PlannedClaim:
    """One claim to make: the template it comes from (its index) and the claim itself."""

    index: int
    claim: dict[str, Any]

    @property
    def name(self) -> str:
        """The claim's name."""
        return str(self.claim["metadata"]["name"])

    @property
    def snapshot(self) -> str:
        """The VolumeSnapshot it is restored from."""
        return str(self.claim["spec"]["dataSource"]["name"])

    @property
    def storage_class(self) -> str | None:
        """The claim's StorageClass, when it names one."""
        value = self.claim["spec"].get("storageClassName")
        return str(value) if value else None


def planned_claims(rs: RestoreSession) -> list[PlannedClaim]:
    """The claims ``rs`` makes (module docstring), ordinal by ordinal."""
    target = rs.spec.target
    templates = [dict(t) for t in (target.volume_claim_templates or [])] if target else []
    replicas = (target.replicas if target else None) or 1
    planned: list[PlannedClaim] = []
    for ordinal in range(replicas):
        for index, template in enumerate(templates):
            text = json.dumps(template).replace(names.POD_ORDINAL_VARIABLE, str(ordinal))
            resolved: dict[str, Any] = json.loads(text)
            meta = dict(resolved.get("metadata") or {})
            meta["namespace"] = rs.metadata.namespace
            meta["labels"] = {
                **(meta.get("labels") or {}),
                names.LABEL_RESTORE_SESSION: rs.metadata.name or "",
            }
            claim = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta,
                "spec": resolved.get("spec") or {},
            }
            planned.append(PlannedClaim(index, claim))
    return planned


def made_for(claim: dict[str, Any], rs: RestoreSession) -> bool:
    """True when an existing claim was made by this session (else it is someone else's)."""
    labels = claim.get("metadata", {}).get("labels") or {}
    return labels.get(names.LABEL_RESTORE_SESSION) == rs.metadata.name


def _status(rs: RestoreSession) -> RestoreSessionStatus:
    if rs.status is None:
        rs.status = RestoreSessionStatus()
    return rs.status


def is_final(rs: RestoreSession) -> bool:
    """True once the session has ended."""
    return bool(rs.status and rs.status.phase in FINAL)


def _set(rs: RestoreSession, update: ConditionUpdate, now: dt.datetime) -> None:
    status = _status(rs)
    status.conditions = apply_conditions(
        status.conditions or [], [update], now=now, generation=rs.metadata.generation
    )


def start(rs: RestoreSession, claims: Sequence[str], deadline: dt.datetime | None, now: dt.datetime) -> None:
    """Valid: Running, ``totalHosts``, ``ValidationPassed``."""
    status = _status(rs)
    if status.phase in FINAL:
        return
    status.phase = RestorePhase.RUNNING
    status.total_hosts = len(claims)
    status.session_deadline = deadline
    _set(
        rs,
        ConditionUpdate.true(
            ConditionType.VALIDATION_PASSED,
            ConditionReason.RESOURCE_VALIDATION_PASSED,
            "Successfully validated.",
        ),
        now,
    )


def refuse(rs: RestoreSession, problems: Sequence[str], now: dt.datetime) -> None:
    """Refused before any claim is made: ``ValidationPassed`` False naming the fields; Failed."""
    status = _status(rs)
    if status.phase in FINAL:
        return
    _set(
        rs,
        ConditionUpdate.false(
            ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_FAILED, "; ".join(problems)
        ),
        now,
    )
    status.phase = RestorePhase.FAILED
    status.session_duration = _elapsed(rs, now)


def record(
    rs: RestoreSession, results: Sequence[HostRestoreStats], total: int, now: dt.datetime
) -> list[str]:
    """Write the hosts' outcomes (a final one is never replaced); end the session once all are final.
    Returns the hosts whose entry is new."""
    status = _status(rs)
    if status.phase in FINAL:
        return []
    status.total_hosts = total
    entries = {s.hostname: s for s in status.stats or []}
    changed = []
    for result in results:
        old = entries.get(result.hostname)
        if old is not None and old.phase in FINAL_HOSTS:
            continue
        entry = result
        if result.phase == HostRestorePhase.SUCCEEDED:
            entry = result.model_copy(update={"duration": _elapsed(rs, now)})
        entries[entry.hostname] = entry
        changed.append(entry.hostname or "")
    status.stats = list(entries.values())
    finals = [s for s in status.stats if s.phase in FINAL_HOSTS]
    if len(finals) < total:
        return changed
    if any(s.phase == HostRestorePhase.FAILED for s in finals):
        status.phase = RestorePhase.FAILED
    elif any(s.phase == HostRestorePhase.UNKNOWN for s in finals):
        status.phase = RestorePhase.UNKNOWN
    else:
        status.phase = RestorePhase.SUCCEEDED
    status.session_duration = _elapsed(rs, now)
    restored = sum(1 for s in finals if s.phase == HostRestorePhase.SUCCEEDED)
    _set(
        rs,
        ConditionUpdate.true(
            ConditionType.RESTORE_COMPLETED,
            ConditionReason.POST_RESTORE_TASKS_EXECUTED,
            f"{restored} of {total} claims restored from their VolumeSnapshots",
        ),
        now,
    )
    return changed


def deadline_exceeded(
    rs: RestoreSession, pending: Sequence[str], time_out: str, total: int, now: dt.datetime
) -> None:
    """Fail the claims not yet Bound: the session ran out of time."""
    message = f"failed to restore the volume. Reason: the claim was not Bound within {time_out}"
    record(
        rs,
        [HostRestoreStats(hostname=c, phase=HostRestorePhase.FAILED, error=message) for c in pending],
        total,
        now,
    )


def _elapsed(rs: RestoreSession, now: dt.datetime) -> str:
    created = rs.metadata.creation_timestamp
    return format_duration(max(0.0, (now - created).total_seconds())) if created else "0s"


def events(rs: RestoreSession, hosts: Sequence[str], completed: bool) -> list[EventSpec]:
    """The events "Host Restore Succeeded" / "Host Restore Failed" per host, and the session's end."""
    stats = {s.hostname: s for s in (rs.status.stats if rs.status else None) or []}
    found: list[EventSpec] = []
    for host in hosts:
        entry = stats.get(host)
        if entry is None or entry.phase is None:
            continue
        if entry.phase == HostRestorePhase.SUCCEEDED:
            found.append(
                EventSpec(
                    "Normal",
                    "Host Restore Succeeded",
                    f"Restored claim {host} from its VolumeSnapshot",
                    names.COMPONENT_RESTORE_SESSION,
                )
            )
        elif entry.phase == HostRestorePhase.FAILED:
            found.append(
                EventSpec(
                    "Warning",
                    "Host Restore Failed",
                    f"Failed to restore claim {host}: {entry.error}",
                    names.COMPONENT_RESTORE_SESSION,
                )
            )
    if completed and rs.status is not None:
        ok = rs.status.phase == RestorePhase.SUCCEEDED
        found.append(
            EventSpec(
                "Normal" if ok else "Warning",
                "RestoreSessionSucceeded" if ok else "RestoreSessionFailed",
                f"RestoreSession {rs.status.phase}",
                names.COMPONENT_RESTORE_SESSION,
            )
        )
    return found
