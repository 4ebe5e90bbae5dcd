"""What this agent process knows of a retention scope's snapshots, to skip a ``restic forget`` that would
remove nothing.

A scope is a target's retention for one of its paths: a repository, the hosts whose snapshots it may forget
and the path (exactly the filter that path's ``restic forget`` gets). The book is filled from each
``forget --json`` (what it kept, and with ``--dry-run`` what it would have removed), from a host's
``snapshots --json`` split as that filter selects (the sidecar's warm-up:
:mod:`stashlet.agent.backup.retention_step`) and from each backup's summary (the snapshot it wrote), and a
repository the agent has just created holds no snapshot; it starts empty, so the first session of a
process runs ``forget`` unless the warm-up listed the scope or that session created the repository.

:meth:`SnapshotBook.why_forget` says why ``forget`` must run, or None when the policy, evaluated over the
known snapshots (:mod:`stashlet.agent.restic.forget_policy`), would remove nothing and the knowledge can be
trusted. It cannot be when: the scope was never listed, its listing is older than ``max_age``, a backup
wrote a snapshot the book could not describe (no ID, or arguments that change its host, tags or time),
several hosts share the scope (the others' snapshots are written by other processes), or the
Repository's ``status.lastBackupTime`` is newer than any snapshot known (another agent backed up into the
repository since). restic still decides what ``forget`` removes: a wrong book can only delay a removal,
never cause one.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.forget_policy import KnownSnapshot, would_remove
from stashlet.agent.restic.retention import RetentionPolicyLike

ScopeKey = tuple[str, tuple[str, ...], tuple[str, ...]]
"""(repository URL, hosts, paths) of one retention scope."""

SNAPSHOT_ARGS = ("--tag", "--time", "--host", "-H", "--stdin-filename")
"""``restic backup`` options (in a target's ``args``) that make a snapshot the book cannot describe."""

CLOCK_SLACK = dt.timedelta(seconds=1)
"""The Repository's times are whole seconds; a known snapshot within this of them counts as the same."""


def scope_key(repository: str, hosts: Sequence[str], paths: Sequence[str]) -> ScopeKey:
    """The book's key for a retention scope."""
    return repository, tuple(sorted(set(hosts))), tuple(paths)


def known(snapshot: rj.Snapshot) -> KnownSnapshot | None:
    """A snapshot of ``forget --json`` as the book keeps it; None without a time."""
    if snapshot.time is None or not snapshot.id:
        return None
    return KnownSnapshot(snapshot.id, snapshot.time, snapshot.hostname, snapshot.paths, snapshot.tags)


def describes_snapshot(extra_args: Sequence[str]) -> bool:
    """False when a backup's extra arguments change what its snapshot records beyond host and paths."""
    return not any(arg == flag or arg.startswith(f"{flag}=") for arg in extra_args for flag in SNAPSHOT_ARGS)


@dataclass
class _Scope:
    snapshots: dict[str, KnownSnapshot] = field(default_factory=dict)
    listed_at: float = 0.0


class SnapshotBook:
    """Per process: each retention scope's snapshots as last learned (module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start empty; ``clock`` (monotonic seconds) dates each listing."""
        self._clock = clock
        self._scopes: dict[ScopeKey, _Scope] = {}

    def learn_forget(self, key: ScopeKey, result: rj.ForgetResult, *, dry_run: bool) -> None:
        """After ``forget``: the scope holds what it kept (and, on a dry run, what it would remove)."""
        self.learn_listing(key, [*result.kept, *(result.removed if dry_run else ())])

    def learn_listing(self, key: ScopeKey, listed: Sequence[rj.Snapshot]) -> bool:
        """The scope holds exactly ``listed`` (restic's own list of it, by ``forget`` or ``snapshots``
        with the same filter). A snapshot the book cannot describe (no ID or time) forgets the scope:
        False then."""
        entries = [k for s in listed if (k := known(s)) is not None]
        if len(entries) != len(listed):
            self._scopes.pop(key, None)
            return False
        self._scopes[key] = _Scope({s.id: s for s in entries}, self._clock())
        return True

    def learn_empty(self, key: ScopeKey) -> None:
        """The scope has no snapshot (its repository was just created)."""
        self._scopes[key] = _Scope({}, self._clock())

    def learn_backup(self, key: ScopeKey, snapshot: KnownSnapshot | None) -> None:
        """A backup wrote ``snapshot`` in the scope; None (it could not be described) forgets the scope."""
        scope = self._scopes.get(key)
        if scope is None:
            return
        if snapshot is None:
            del self._scopes[key]
            return
        scope.snapshots[snapshot.id] = snapshot

    def drop(self, key: ScopeKey) -> None:
        """Forget what is known of the scope (its next retention runs ``forget``)."""
        self._scopes.pop(key, None)

    def snapshots(self, key: ScopeKey) -> list[KnownSnapshot]:
        """The snapshots known in the scope (empty when unknown)."""
        scope = self._scopes.get(key)
        return list(scope.snapshots.values()) if scope is not None else []

    def why_forget(
        self,
        key: ScopeKey,
        policy: RetentionPolicyLike,
        *,
        max_age: float,
        repository_last_backup: dt.datetime | None,
    ) -> str | None:
        """Why ``forget`` must run for the scope, or None when it would remove nothing (module docstring)."""
        scope = self._scopes.get(key)
        if scope is None:
            return "the scope's snapshots are not known to this agent yet"
        if len(key[1]) != 1:
            return "several hosts back up into the scope"
        if self._clock() - scope.listed_at >= max_age:
            return "the scope's snapshots were listed too long ago"
        newest = max((s.time for s in scope.snapshots.values()), default=None)
        if repository_last_backup is not None and (
            newest is None or repository_last_backup > newest + CLOCK_SLACK
        ):
            return "the repository has a backup this agent did not make"
        going = would_remove(policy, scope.snapshots.values())
        if going:
            return f"the policy removes {len(going)} snapshot(s)"
        return None


def newest_time(snapshots: Iterable[KnownSnapshot]) -> dt.datetime | None:
    """The time of the newest of ``snapshots``, None when there are none."""
    return max((s.time for s in snapshots), default=None)
