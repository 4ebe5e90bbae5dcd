"""A Repository's status after a session, from what the session learned (pure)."""

from __future__ import annotations

import datetime as dt

from stashlet.agent.backup.status import updated_repository_status
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.forget_policy import KnownSnapshot
from stashlet.api.repository import RepositoryStatus

T0 = dt.datetime(2026, 3, 1, 10, 0, 0, 500_000, tzinfo=dt.UTC)


def stats(size: int, count: int) -> rj.RepoStats:
    return rj.RepoStats(size, 0, 0, count, 0, 0.0, 0.0, 0.0)


def snap(n: int, minutes: int) -> KnownSnapshot:
    return KnownSnapshot(f"{n:064x}", T0 + dt.timedelta(minutes=minutes), "host-0", ("/data",))


def test_the_first_session_sets_everything() -> None:
    status = updated_repository_status(
        RepositoryStatus(),
        stats=stats(4096, 1),
        snapshot=snap(1, 0),
        scope=[snap(1, 0)],
        integrity=True,
        checked_at=T0 + dt.timedelta(minutes=1),
        removed=0,
    )
    assert status.to_dict() == {
        "totalSize": "4.000 KiB",
        "snapshotCount": 1,
        "firstBackupTime": "2026-03-01T10:00:00Z",
        "lastBackupTime": "2026-03-01T10:00:00Z",
        "integrity": True,
        "lastCheckTime": "2026-03-01T10:01:00Z",
        "snapshotsRemovedOnLastCleanup": 0,
    }


def test_no_check_keeps_the_last_real_checks_verdict_and_time() -> None:
    """A session without a check (not due, or not run) leaves integrity and lastCheckTime alone."""
    before = RepositoryStatus(integrity=False, last_check_time=T0.replace(microsecond=0))
    status = updated_repository_status(
        before,
        stats=stats(1, 2),
        snapshot=snap(2, 5),
        scope=[],
        integrity=None,
        checked_at=None,
        removed=None,
    )
    assert (status.integrity, status.last_check_time) == (False, T0.replace(microsecond=0))
    assert status.snapshots_removed_on_last_cleanup is None
    assert status.last_backup_time == (T0 + dt.timedelta(minutes=5)).replace(microsecond=0)


def test_a_retention_that_removed_the_first_snapshot_moves_the_first_time_when_the_scope_is_all() -> None:
    """The agent's scope holds every snapshot of the repository (same count): its earliest is the first."""
    before = RepositoryStatus(first_backup_time=T0.replace(microsecond=0))
    scope = [snap(2, 10), snap(3, 20)]
    status = updated_repository_status(
        before,
        stats=stats(1, 2),
        snapshot=snap(3, 20),
        scope=scope,
        integrity=None,
        checked_at=None,
        removed=1,
    )
    assert status.first_backup_time == (T0 + dt.timedelta(minutes=10)).replace(microsecond=0)
    # shared with other configurations (more snapshots than the scope): the first time stays as it was
    status = updated_repository_status(
        before,
        stats=stats(1, 5),
        snapshot=snap(3, 20),
        scope=scope,
        integrity=None,
        checked_at=None,
        removed=1,
    )
    assert status.first_backup_time == T0.replace(microsecond=0)


def test_stats_that_failed_keep_size_and_count() -> None:
    before = RepositoryStatus(total_size="1 KiB", snapshot_count=3)
    status = updated_repository_status(
        before, stats=None, snapshot=snap(4, 30), scope=[], integrity=None, checked_at=None, removed=0
    )
    assert (status.total_size, status.snapshot_count) == ("1 KiB", 3)
