"""Conditions keep their transition times, the phase follows Stash's rule, transitions raise events once."""

import datetime as dt

from stashlet.api.backupconfiguration import BackupInvokerPhase
from stashlet.api.common import ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.operator.backup.status import compute_phase, transition_events
from stashlet.operator.core.conditions import ConditionUpdate, apply_conditions

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)

ALL_TRUE = [
    ConditionUpdate.true(ConditionType.REPOSITORY_FOUND, ConditionReason.REPOSITORY_AVAILABLE, "r"),
    ConditionUpdate.true(ConditionType.BACKEND_SECRET_FOUND, ConditionReason.BACKEND_SECRET_AVAILABLE, "s"),
    ConditionUpdate.true(ConditionType.BACKUP_TARGET_FOUND, ConditionReason.TARGET_AVAILABLE, "t"),
    ConditionUpdate.true(ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_PASSED, "v"),
    ConditionUpdate.true(ConditionType.CRON_JOB_CREATED, ConditionReason.CRON_JOB_CREATION_SUCCEEDED, "c"),
    ConditionUpdate.true(
        ConditionType.STASH_SIDECAR_INJECTED, ConditionReason.SIDECAR_INJECTION_SUCCEEDED, "i"
    ),
]


def test_transition_time_changes_only_with_the_status() -> None:
    """Re-setting a condition with the same status keeps its time; a new status gets a new time."""
    first = apply_conditions([], ALL_TRUE[:1], now=T0, generation=1)
    same = apply_conditions(first, ALL_TRUE[:1], now=T1, generation=2)
    assert same[0].last_transition_time == T0
    assert same[0].observed_generation == 2
    flipped = apply_conditions(
        same,
        [
            ConditionUpdate.false(
                ConditionType.REPOSITORY_FOUND, ConditionReason.REPOSITORY_NOT_AVAILABLE, "gone"
            )
        ],
        now=T1,
        generation=2,
    )
    assert flipped[0].last_transition_time == T1
    assert flipped[0].status == ConditionStatus.FALSE


def test_remove_drops_a_condition_and_order_is_kept() -> None:
    """A removal update drops the condition; others keep their order."""
    conditions = apply_conditions([], ALL_TRUE, now=T0, generation=1)
    left = apply_conditions(
        conditions, [ConditionUpdate.remove(ConditionType.BACKUP_TARGET_FOUND)], now=T1, generation=1
    )
    assert [c.type for c in left] == [
        u.type.value for u in ALL_TRUE if u.type != ConditionType.BACKUP_TARGET_FOUND
    ]


def test_phase_ready_needs_every_step_of_the_model() -> None:
    """Ready when all six hold (sidecar); without the sidecar steps only for the job model."""
    conditions = apply_conditions([], ALL_TRUE, now=T0, generation=1)
    assert compute_phase(conditions, sidecar=True) == BackupInvokerPhase.READY
    without_injection = apply_conditions(
        conditions, [ConditionUpdate.remove(ConditionType.STASH_SIDECAR_INJECTED)], now=T0, generation=1
    )
    assert compute_phase(without_injection, sidecar=True) == BackupInvokerPhase.NOT_READY
    assert compute_phase(without_injection, sidecar=False) == BackupInvokerPhase.READY


def test_missing_repository_wins_over_invalid() -> None:
    """As in Stash: a missing Repository or Secret makes NotReady even when validation failed too."""
    updates = [
        ConditionUpdate.false(ConditionType.REPOSITORY_FOUND, ConditionReason.REPOSITORY_NOT_AVAILABLE, "x"),
        ConditionUpdate.false(
            ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_FAILED, "y"
        ),
    ]
    conditions = apply_conditions([], updates, now=T0, generation=1)
    assert compute_phase(conditions, sidecar=True) == BackupInvokerPhase.NOT_READY
    conditions = apply_conditions([], updates[1:], now=T0, generation=1)
    assert compute_phase(conditions, sidecar=True) == BackupInvokerPhase.INVALID


def test_events_only_on_transitions_with_stash_reasons() -> None:
    """A failure raises one Warning with Stash's reason; repeating it raises none; injection is Normal."""
    failed = apply_conditions(
        [],
        [
            ConditionUpdate.false(
                ConditionType.CRON_JOB_CREATED, ConditionReason.CRON_JOB_CREATION_FAILED, "bad"
            ),
            ConditionUpdate.false(
                ConditionType.REPOSITORY_FOUND, ConditionReason.REPOSITORY_NOT_AVAILABLE, "no"
            ),
        ],
        now=T0,
        generation=1,
    )
    events = transition_events([], failed)
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "CronJob Creation Failed", "bad"),
        ("Warning", "RepositoryNotAvailable", "no"),
    ]
    assert transition_events(failed, failed) == []
    injected = apply_conditions([], ALL_TRUE[-1:], now=T0, generation=1)
    [event] = transition_events([], injected)
    assert (event.type, event.reason, event.source) == (
        "Normal",
        "Sidecar Injection Succeeded",
        "Workload Controller",
    )
