"""restic's retention policy evaluated in Python, pure: which snapshots ``restic forget`` would remove.

The agent uses it only to decide whether to run ``restic forget`` at all
(:mod:`stashlet.agent.backup.snapshot_book`): restic still decides what it removes. The evaluation
follows restic 0.18's ``ApplyPolicy`` (``internal/restic/snapshot_policy.go``) for the rules a Stash
policy has (``keepLast``, ``keepHourly``, ``keepDaily``, ``keepWeekly``, ``keepMonthly``, ``keepYearly``,
``keepTags``):

- per group (snapshots of one host and one set of paths, restic's ``--group-by host,paths``), newest
  first (a stable sort on time);
- a snapshot is kept when it carries every tag of any ``keepTags`` entry (``a,b`` needs both);
- each counting rule with a count left (or -1, unlimited) keeps a snapshot whose bucket (its hour, day,
  ISO week, month or year in the snapshot's own recorded UTC offset, as Go reads the time; for
  ``keepLast`` every snapshot is its own bucket) differs from the previous kept one's, and also the
  oldest snapshot of the group while the rule still has a count left;
- everything else is removed.

The policy is read through :class:`~stashlet.agent.restic.retention.RetentionPolicyLike`, the same
protocol :func:`~stashlet.agent.restic.retention.forget_args` reads, so both see one policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from stashlet.agent.restic.retention import RetentionPolicyLike


@dataclass(frozen=True, slots=True)
class KnownSnapshot:
    """What the evaluation needs of a snapshot: its ID, time, host, paths and tags."""

    id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...] = ()

    @property
    def group(self) -> tuple[str, tuple[str, ...]]:
        """restic's ``host,paths`` group key (restic stores a snapshot's paths sorted)."""
        return self.hostname, tuple(sorted(self.paths))


def _ymdh(t: datetime, _: int) -> int:
    return t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour


def _ymd(t: datetime, _: int) -> int:
    return t.year * 10_000 + t.month * 100 + t.day


def _yw(t: datetime, _: int) -> int:
    year, week, _day = t.isocalendar()
    return year * 100 + week


def _ym(t: datetime, _: int) -> int:
    return t.year * 100 + t.month


def _y(t: datetime, _: int) -> int:
    return t.year


def _always(_: datetime, nr: int) -> int:
    return nr


_BUCKETS: tuple[tuple[str, Callable[[datetime, int], int]], ...] = (
    ("keep_last", _always),
    ("keep_hourly", _ymdh),
    ("keep_daily", _ymd),
    ("keep_weekly", _yw),
    ("keep_monthly", _ym),
    ("keep_yearly", _y),
)


def tag_lists(policy: RetentionPolicyLike) -> list[frozenset[str]]:
    """``keepTags`` as restic parses ``--keep-tag`` values: each entry split on commas, blanks dropped."""
    lists = []
    for entry in policy.keep_tags or ():
        lists.append(frozenset(t.strip() for t in entry.split(",") if t.strip()))
    return lists


def apply_policy(
    policy: RetentionPolicyLike, group: Sequence[KnownSnapshot]
) -> tuple[list[KnownSnapshot], list[KnownSnapshot]]:
    """(kept, removed) among one group's snapshots, newest first, as restic's ``ApplyPolicy`` decides."""
    ordered = sorted(group, key=lambda s: s.time, reverse=True)  # sorted() is stable, as sort.Stable
    counts = [(getattr(policy, attr) or 0, bucker) for attr, bucker in _BUCKETS]
    left = [count for count, _ in counts]
    last = [-1] * len(counts)
    tags = tag_lists(policy)
    kept: list[KnownSnapshot] = []
    removed: list[KnownSnapshot] = []
    for nr, snap in enumerate(ordered):
        keep = any(wanted <= set(snap.tags) for wanted in tags)
        for i, (_, bucker) in enumerate(counts):
            if left[i] > 0 or left[i] == -1:
                value = bucker(snap.time, nr)
                if value != last[i] or nr == len(ordered) - 1:
                    keep = True
                    last[i] = value
                    if left[i] > 0:
                        left[i] -= 1
        (kept if keep else removed).append(snap)
    return kept, removed


def would_remove(policy: RetentionPolicyLike, snapshots: Iterable[KnownSnapshot]) -> list[KnownSnapshot]:
    """The snapshots ``restic forget`` with ``policy``, grouped by ``host,paths``, would remove."""
    groups: dict[tuple[str, tuple[str, ...]], list[KnownSnapshot]] = {}
    for snap in snapshots:
        groups.setdefault(snap.group, []).append(snap)
    removed: list[KnownSnapshot] = []
    for group in groups.values():
        removed += apply_policy(policy, group)[1]
    return removed
