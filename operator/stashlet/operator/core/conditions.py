"""Conditions and events as every reconciler writes them: updates applied to a status, events to record: pure.

A reconcile step says what it found as :class:`ConditionUpdate` values; :func:`apply_conditions` lays them
over an object's current conditions (a condition keeps its transition time while its status holds), and
each reconciler turns the transitions into :class:`EventSpec` values for its recorder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType


@dataclass(frozen=True)
class ConditionUpdate:
    """One condition to set (``status`` given) or to remove (``status`` None)."""

    type: ConditionType
    status: ConditionStatus | None
    reason: str = ""
    message: str = ""

    @classmethod
    def true(cls, type_: ConditionType, reason: ConditionReason, message: str) -> ConditionUpdate:
        """A condition that holds."""
        return cls(type_, ConditionStatus.TRUE, reason.value, message)

    @classmethod
    def false(cls, type_: ConditionType, reason: ConditionReason, message: str) -> ConditionUpdate:
        """A condition that does not hold."""
        return cls(type_, ConditionStatus.FALSE, reason.value, message)

    @classmethod
    def unknown(cls, type_: ConditionType, reason: ConditionReason, message: str) -> ConditionUpdate:
        """A condition that could not be checked."""
        return cls(type_, ConditionStatus.UNKNOWN, reason.value, message)

    @classmethod
    def remove(cls, type_: ConditionType) -> ConditionUpdate:
        """A condition that no longer applies."""
        return cls(type_, None)


@dataclass(frozen=True)
class EventSpec:
    """An event to record on the reconciled object (from the BackupConfiguration controller unless
    ``source`` says otherwise)."""

    type: str
    reason: str
    message: str
    source: str = names.COMPONENT_BACKUP_CONFIGURATION


def reported(status: Any, type_: ConditionType) -> bool:
    """True when ``status`` (an object's status, or None) holds condition ``type_`` as True: what it
    stands for was made at some point."""
    conditions: list[Condition] = list(getattr(status, "conditions", None) or [])
    return any(c.type == type_ and c.status == ConditionStatus.TRUE for c in conditions)


def apply_conditions(
    current: Sequence[Condition],
    updates: Iterable[ConditionUpdate],
    *,
    now: dt.datetime,
    generation: int | None,
) -> list[Condition]:
    """``current`` with ``updates`` applied; a condition keeps its transition time while its status holds."""
    by_type: dict[str, Condition] = {c.type: c for c in current}
    order = [c.type for c in current]
    for update in updates:
        old = by_type.get(update.type.value)
        if update.status is None:
            by_type.pop(update.type.value, None)
            continue
        changed = old is None or old.status != update.status
        by_type[update.type.value] = Condition(
            type=update.type.value,
            status=update.status,
            reason=update.reason,
            message=update.message,
            last_transition_time=now if changed or old is None else (old.last_transition_time or now),
            observed_generation=generation,
        )
        if update.type.value not in order:
            order.append(update.type.value)
    return [by_type[t] for t in order if t in by_type]
