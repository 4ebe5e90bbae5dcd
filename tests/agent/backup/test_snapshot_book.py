"""When the agent may skip ``restic forget``: the policy evaluated over the snapshots it knows removes
nothing, and what it knows can be trusted (pure; the evaluation itself is compared with restic in
tests/agent/restic/test_forget_policy_restic.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from stashlet.agent.backup.snapshot_book import SnapshotBook, describes_snapshot, scope_key
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.forget_policy import KnownSnapshot, apply_policy, would_remove
from stashlet.agent.restic.retention import Retention

T0 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
KEY = scope_key("/repo", ["host-0"], ["/data"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(n: int, minutes: int, host: str = "host-0", tags: tuple[str, ...] = ()) -> KnownSnapshot:
    return KnownSnapshot(f"{n:064x}", T0 + dt.timedelta(minutes=minutes), host, ("/data",), tags)


def as_restic(s: KnownSnapshot) -> rj.Snapshot:
    return rj.Snapshot(
        id=s.id, short_id=s.id[:8], time=s.time, hostname=s.hostname, paths=s.paths, tags=s.tags,
        tree="", parent=None, username="", uid=0, gid=0, excludes=(), program_version="", summary=None,
    )  # fmt: skip


def forgot(kept: Sequence[KnownSnapshot], removed: Sequence[KnownSnapshot] = ()) -> rj.ForgetResult:
    group = rj.ForgetGroup(
        host="host-0",
        paths=("/data",),
        tags=(),
        keep=tuple(as_restic(s) for s in kept),
        remove=tuple(as_restic(s) for s in removed),
        reasons=(),
    )
    return rj.ForgetResult(groups=(group,))


def test_an_unknown_scope_runs_forget() -> None:
    """A process starts knowing nothing: its first session runs forget."""
    book = SnapshotBook()
    assert book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=None) is not None


def test_a_known_scope_under_its_count_skips_forget_until_the_policy_removes_one() -> None:
    """keepLast 3: after forget listed two, one more backup is still nothing to remove; the fourth is."""
    clock = Clock()
    book = SnapshotBook(clock)
    policy = Retention(keep_last=3)
    book.learn_forget(KEY, forgot([snap(1, 0), snap(2, 1)]), dry_run=False)
    book.learn_backup(KEY, snap(3, 2))
    assert book.why_forget(KEY, policy, max_age=3600, repository_last_backup=snap(3, 2).time) is None
    book.learn_backup(KEY, snap(4, 3))
    why = book.why_forget(KEY, policy, max_age=3600, repository_last_backup=snap(4, 3).time)
    assert why == "the policy removes 1 snapshot(s)"


def test_a_forget_leaves_what_it_kept() -> None:
    """After forget, the book holds what restic kept (not what it removed), so the next session skips."""
    book = SnapshotBook(Clock())
    book.learn_forget(KEY, forgot([snap(2, 1), snap(3, 2)], removed=[snap(1, 0)]), dry_run=False)
    assert {s.id for s in book.snapshots(KEY)} == {snap(2, 1).id, snap(3, 2).id}
    assert book.why_forget(KEY, Retention(keep_last=2), max_age=3600, repository_last_backup=None) is None


def test_a_dry_run_keeps_the_snapshots_it_would_remove() -> None:
    """A dry run removes nothing: the book keeps them all, and each session runs its dry run again."""
    book = SnapshotBook(Clock())
    book.learn_forget(KEY, forgot([snap(2, 1)], removed=[snap(1, 0)]), dry_run=True)
    assert len(book.snapshots(KEY)) == 2
    policy = Retention(keep_last=1, dry_run=True)
    assert book.why_forget(KEY, policy, max_age=3600, repository_last_backup=None) is not None


def test_a_repository_just_created_needs_no_forget_for_its_first_snapshot() -> None:
    """The session that created the repository knows the scope: its own snapshot and nothing else."""
    book = SnapshotBook(Clock())
    book.learn_empty(KEY)
    book.learn_backup(KEY, snap(1, 0))
    assert book.why_forget(KEY, Retention(keep_last=1), max_age=3600, repository_last_backup=None) is None
    assert [s.id for s in book.snapshots(KEY)] == [snap(1, 0).id]


def test_knowledge_older_than_its_bound_runs_forget() -> None:
    clock = Clock()
    book = SnapshotBook(clock)
    book.learn_forget(KEY, forgot([snap(1, 0)]), dry_run=False)
    assert book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=None) is None
    clock.now += 3600
    why = book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=None)
    assert why == "the scope's snapshots were listed too long ago"


def test_a_backup_by_another_agent_runs_forget() -> None:
    """The Repository's lastBackupTime newer than any snapshot known: another agent wrote one."""
    book = SnapshotBook(Clock())
    book.learn_forget(KEY, forgot([snap(1, 0)]), dry_run=False)
    later = snap(1, 0).time + dt.timedelta(minutes=5)
    why = book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=later)
    assert why == "the repository has a backup this agent did not make"
    # the status' times are whole seconds: the agent's own latest snapshot is the same backup
    same = snap(1, 0).time.replace(second=0) + dt.timedelta(milliseconds=900)
    assert book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=same) is None


def test_a_snapshot_it_cannot_describe_forgets_the_scope() -> None:
    """A backup whose snapshot the book cannot describe (extra tags, another time) drops what it knew."""
    book = SnapshotBook(Clock())
    book.learn_forget(KEY, forgot([snap(1, 0)]), dry_run=False)
    book.learn_backup(KEY, None)
    assert book.snapshots(KEY) == []
    assert book.why_forget(KEY, Retention(keep_last=5), max_age=3600, repository_last_backup=None) is not None
    assert not describes_snapshot(["--tag=x"])
    assert not describes_snapshot(["--time", "2020-01-01 00:00:00"])
    assert not describes_snapshot(["--host=other"])
    assert describes_snapshot(["--exclude-larger-than=1G", "--one-file-system"])


def test_several_hosts_always_run_forget() -> None:
    """Other hosts' snapshots come from other processes: with several hosts in the scope, always forget."""
    key = scope_key("/repo", ["host-0", "host-1"], ["/data"])
    book = SnapshotBook(Clock())
    book.learn_forget(key, forgot([snap(1, 0)]), dry_run=False)
    assert book.why_forget(key, Retention(keep_last=5), max_age=3600, repository_last_backup=None) == (
        "several hosts back up into the scope"
    )


def test_restic_rules_in_brief() -> None:
    """restic's buckets: keepHourly keeps the newest of each hour, and the oldest snapshot while counts are
    left; keepTags keeps a snapshot carrying all tags of an entry; groups are counted apart."""
    a, b, c = snap(1, 0), snap(2, 30), snap(3, 70)  # 10:00, 10:30, 11:10
    kept, removed = apply_policy(Retention(keep_hourly=5), [a, b, c])
    assert [s.id for s in kept] == [c.id, b.id, a.id]  # a: the oldest, counts left
    assert removed == []
    kept, removed = apply_policy(Retention(keep_hourly=2), [a, b, c])
    assert [s.id for s in removed] == [a.id]
    tagged = snap(4, 5, tags=("x", "y"))
    assert would_remove(Retention(keep_last=1, keep_tags=["x,y"]), [a, tagged, c]) == [a]
    assert would_remove(Retention(keep_last=1, keep_tags=["x,z"]), [a, tagged, c]) == [tagged, a]
    other = snap(5, 0, host="host-1")
    assert would_remove(Retention(keep_last=1), [a, other]) == []
    assert [s.id for s in would_remove(Retention(keep_last=-1), [a, b, c])] == []


def test_a_listing_teaches_the_scope_like_a_forget() -> None:
    """The sidecar's warm-up (``snapshots`` with forget's filter): the scope holds what was listed, dated
    now; one more backup under the count needs no forget, one beyond it does."""
    clock = Clock()
    book = SnapshotBook(clock)
    policy = Retention(keep_last=3)
    assert book.learn_listing(KEY, [as_restic(snap(1, 0)), as_restic(snap(2, 10))])
    book.learn_backup(KEY, snap(3, 20))
    assert book.why_forget(KEY, policy, max_age=3600, repository_last_backup=None) is None
    book.learn_backup(KEY, snap(4, 30))
    assert book.why_forget(KEY, policy, max_age=3600, repository_last_backup=None) == (
        "the policy removes 1 snapshot(s)"
    )
    clock.now += 3600
    assert book.why_forget(KEY, Retention(keep_last=9), max_age=3600, repository_last_backup=None) == (
        "the scope's snapshots were listed too long ago"
    )


def test_an_empty_listing_is_an_empty_scope_and_a_listing_without_times_none() -> None:
    """Nothing listed: the scope is known empty. A snapshot without a time: the scope is not known."""
    book = SnapshotBook()
    assert book.learn_listing(KEY, [])
    assert book.why_forget(KEY, Retention(keep_last=1), max_age=3600, repository_last_backup=None) is None
    timeless = dataclasses.replace(as_restic(snap(1, 0)), time=None)
    assert not book.learn_listing(KEY, [as_restic(snap(2, 0)), timeless])
    assert book.snapshots(KEY) == []
