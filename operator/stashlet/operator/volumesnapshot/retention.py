"""Which of a configuration's VolumeSnapshots of one claim its ``retentionPolicy`` removes: pure.

Stash's rule for VolumeSnapshots (restic's ``forget`` buckets): newest first by creation time, a
snapshot is kept when ``keepLast`` still has room, or when it is the first of its hour, day, ISO week,
month or year while ``keepHourly`` ... ``keepYearly`` still have room. A count of -1 never runs out
(restic's "unlimited"), 0 is no rule. A policy with no rule removes nothing; ``dryRun`` removes nothing
either (the decision is still reported). ``keepTags``
means nothing here (a VolumeSnapshot has no tags).

stashlet's guards on top of Stash's: only the configuration's own snapshots of that claim are passed in
(by label, never another configuration's), and only snapshots that are ``readyToUse`` count or can go:
a snapshot still pending or one that failed is neither kept in place of a good one nor removed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stashlet.api.repository import RetentionPolicy

UNLIMITED = -1
"""A ``keep*`` count that keeps every bucket (restic >= 0.17)."""


@dataclass(frozen=True)
class Snap:
    """A ready snapshot: its name and creation time."""

    name: str
    created: dt.datetime


def _always(_: dt.datetime, nr: int) -> int:
    return nr


def _hour(d: dt.datetime, _: int) -> int:
    return d.year * 1_000_000 + d.month * 10_000 + d.day * 100 + d.hour


def _day(d: dt.datetime, _: int) -> int:
    return d.year * 10_000 + d.month * 100 + d.day


def _week(d: dt.datetime, _: int) -> int:
    year, week, _weekday = d.isocalendar()
    return year * 100 + week


def _month(d: dt.datetime, _: int) -> int:
    return d.year * 100 + d.month


def _year(d: dt.datetime, _: int) -> int:
    return d.year


def to_remove(policy: RetentionPolicy | None, snaps: Sequence[Snap]) -> tuple[list[str], list[str]]:
    """``(kept, removed)`` names under ``policy`` (newest first); nothing removed without a keep rule or
    with ``dryRun`` (then ``removed`` still says what would go)."""
    ordered = sorted(snaps, key=lambda s: (s.created, s.name), reverse=True)
    if policy is None:
        return [s.name for s in ordered], []
    rules: list[tuple[int, Callable[[dt.datetime, int], int]]] = [
        (policy.keep_last or 0, _always),
        (policy.keep_hourly or 0, _hour),
        (policy.keep_daily or 0, _day),
        (policy.keep_weekly or 0, _week),
        (policy.keep_monthly or 0, _month),
        (policy.keep_yearly or 0, _year),
    ]
    if not any(count > 0 or count == UNLIMITED for count, _ in rules):
        return [s.name for s in ordered], []
    counts = [count for count, _ in rules]
    last: list[int | None] = [None] * len(rules)
    kept: list[str] = []
    removed: list[str] = []
    for nr, snap in enumerate(ordered):
        keep = False
        for i, (_, bucket) in enumerate(rules):
            if counts[i] == 0:
                continue
            value = bucket(snap.created, nr)
            if value != last[i]:
                keep = True
                last[i] = value
                if counts[i] > 0:
                    counts[i] -= 1
        (kept if keep else removed).append(snap.name)
    return kept, removed


def removes(policy: RetentionPolicy | None) -> bool:
    """Whether ``policy`` may delete anything at all (False under ``dryRun``)."""
    return policy is not None and not policy.dry_run
