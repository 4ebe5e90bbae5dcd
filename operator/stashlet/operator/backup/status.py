"""A BackupConfiguration's phase and the events its condition transitions call for: pure.

The phase follows Stash's rule (``CalculateBackupInvokerPhase``), extended with the sidecar's own steps:

- ``NotReady`` while the Repository or its backend Secret is missing or could not be checked;
- else ``Invalid`` when ``ValidationPassed`` is False;
- else ``Ready`` when every step is True: validation, the CronJob, the Repository and Secret, and for the
  sidecar model also the target and the injection;
- else ``NotReady``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupInvokerPhase
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionType
from stashlet.operator.core.conditions import EventSpec

# Event reasons as Stash writes them.
REASON_CRON_JOB_CREATION_FAILED = "CronJob Creation Failed"
REASON_SIDECAR_INJECTION_SUCCEEDED = "Sidecar Injection Succeeded"
REASON_SIDECAR_INJECTION_FAILED = "Sidecar Injection Failed"
REASON_SIDECAR_DELETION_SUCCEEDED = "Sidecar Deletion Succeeded"
REASON_BACKUP_SKIPPED = "Backup Skipped"


def _status(conditions: Mapping[str, Condition], type_: ConditionType) -> ConditionStatus | None:
    found = conditions.get(type_.value)
    return found.status if found else None


def compute_phase(
    conditions: Sequence[Condition], *, sidecar: bool, repository: bool = True
) -> BackupInvokerPhase:
    """The phase the conditions add up to (see the module docstring); without ``repository`` (the
    VolumeSnapshotter driver) no Repository is required, the target is."""
    by_type = {c.type: c for c in conditions}
    for type_ in (ConditionType.REPOSITORY_FOUND, ConditionType.BACKEND_SECRET_FOUND):
        if _status(by_type, type_) in (ConditionStatus.FALSE, ConditionStatus.UNKNOWN):
            return BackupInvokerPhase.NOT_READY
    if _status(by_type, ConditionType.VALIDATION_PASSED) == ConditionStatus.FALSE:
        return BackupInvokerPhase.INVALID
    required = [
        ConditionType.VALIDATION_PASSED,
        ConditionType.CRON_JOB_CREATED,
        ConditionType.REPOSITORY_FOUND,
        ConditionType.BACKEND_SECRET_FOUND,
    ]
    if sidecar:
        required += [ConditionType.BACKUP_TARGET_FOUND, ConditionType.STASH_SIDECAR_INJECTED]
    if not repository:
        required = [
            ConditionType.VALIDATION_PASSED,
            ConditionType.CRON_JOB_CREATED,
            ConditionType.BACKUP_TARGET_FOUND,
        ]
    if all(_status(by_type, t) == ConditionStatus.TRUE for t in required):
        return BackupInvokerPhase.READY
    return BackupInvokerPhase.NOT_READY


def _same(a: Condition | None, b: Condition | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.status, a.reason, a.message) == (b.status, b.reason, b.message)


def transition_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[EventSpec]:
    """The events due because a condition changed: each failure once, and a successful injection."""
    before = {c.type: c for c in old}
    events: list[EventSpec] = []
    for cond in new:
        if _same(before.get(cond.type), cond):
            continue
        message = cond.message or ""
        if cond.type == ConditionType.STASH_SIDECAR_INJECTED:
            if cond.status == ConditionStatus.TRUE:
                events.append(
                    EventSpec("Normal", REASON_SIDECAR_INJECTION_SUCCEEDED, message, names.COMPONENT_WORKLOAD)
                )
            else:
                events.append(
                    EventSpec("Warning", REASON_SIDECAR_INJECTION_FAILED, message, names.COMPONENT_WORKLOAD)
                )
        elif cond.type == ConditionType.CRON_JOB_CREATED and cond.status != ConditionStatus.TRUE:
            events.append(EventSpec("Warning", REASON_CRON_JOB_CREATION_FAILED, message))
        elif cond.status != ConditionStatus.TRUE:
            events.append(EventSpec("Warning", cond.reason or cond.type, message))
    return events
