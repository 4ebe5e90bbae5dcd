"""The restic side of one host's restore: find the snapshot, check the targets, restore, verify.

For each snapshot the rule names (``latest`` of the source host, per path when the rule has paths; or an
ID), ``restic ls`` resolves it and counts what lies below each backed-up path. The restore of a path
starts as soon as the listing has shown that path's own node, while the listing goes on beside it (both
take shared locks), so the count costs about one repository opening, not a second pass. Every path is
restored from its own subtree into its own place and restic's summary is checked against the count (see
:mod:`.plan` and :mod:`.listing`). Nothing is retried in place except once after removing
locks whose holder is provably gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stashlet.agent.context import AgentContext
from stashlet.agent.errors import ReportFailure
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.errors import RepositoryLocked, SnapshotNotFound, error_for_exit
from stashlet.agent.restic.runner import Restic
from stashlet.agent.restore.listing import RestoreItem, SnapshotListing, mount_for, plan_item, verify
from stashlet.agent.restore.plan import HostRule, PlanError
from stashlet.agent.stale_locks import remove_stale_locks
from stashlet.api.restore_rules import LATEST

log = logging.getLogger(__name__)

ITEM_ERRORS_SHOWN = 5
"""How many of restic's per-file errors a failure message names."""


class RestoreIncomplete(ReportFailure):
    """restic finished without error but did not put everything back; ``reason`` is condition-style."""


@dataclass
class HostRestore:
    """What one host restored: the runs and restic's summaries."""

    items: list[RestoreItem] = field(default_factory=list)
    summaries: list[rj.RestoreSummary] = field(default_factory=list)

    def describe(self) -> str:
        """``/data from snapshot 1a2b3c4d (120 items, 5242880 bytes)``."""
        snapshots = ", ".join(dict.fromkeys(item.snapshot_id[:8] for item in self.items)) or "none"
        files = sum(s.files_restored + s.files_skipped for s in self.summaries)
        written = sum(s.bytes_restored + s.bytes_skipped for s in self.summaries)
        paths = ", ".join(item.path for item in self.items) or "nothing"
        return f"{paths} from snapshot {snapshots} ({files} items, {written} bytes)"


@dataclass(frozen=True)
class Listing:
    """One ``restic ls`` to run: its arguments, the paths of interest, and what to say if it finds nothing."""

    args: tuple[str, ...]
    paths: tuple[str, ...]
    missing: str


class ResticRestore:
    """Restores one host's data with restic for :class:`~stashlet.agent.restore.run.RestoreRunner`."""

    def __init__(
        self,
        ctx: AgentContext,
        restic: Restic,
        repository: str,
        on_progress: Callable[[RestoreItem, rj.RestoreStatus], None] | None = None,
    ) -> None:
        """Use ``restic`` (bound to the Repository named ``repository``, for messages)."""
        self.ctx = ctx
        self.restic = restic
        self.repository = repository
        self.on_progress = on_progress

    def listings(self, rule: HostRule) -> list[Listing]:
        """The ``restic ls`` runs that resolve what ``rule`` names, in order."""
        found: list[Listing] = []
        host = rule.source_host
        for spec in rule.snapshots:
            if spec == LATEST and rule.paths:
                for path in rule.paths:
                    args = (f"--host={host}", f"--path={path}", "--recursive", "--", LATEST, path)
                    found.append(
                        Listing(args, (path,), f"no snapshot of host {host} with path {path} in {self._repo}")
                    )
            elif spec == LATEST:
                found.append(
                    Listing(
                        (f"--host={host}", "--", LATEST), (), f"no snapshot of host {host} in {self._repo}"
                    )
                )
            else:
                found.append(Listing(("--", spec), (), f"snapshot {spec} not found in {self._repo}"))
        return found

    @property
    def _repo(self) -> str:
        return f"Repository {self.repository}"

    async def run(
        self,
        rule: HostRule,
        mounts: Sequence[str],
        extra_args: Sequence[str],
        before_each: Callable[[], None] | None = None,
    ) -> HostRestore:
        """Restore everything ``rule`` names; raises on the first failure or incomplete restore."""
        done = HostRestore()
        for wanted in self.listings(rule):
            mark = len(done.items)
            try:
                await self._restore_listed(rule, wanted, mounts, extra_args, before_each, done)
            except RepositoryLocked:
                if not await remove_stale_locks(self.ctx, self.restic):
                    raise
                del done.items[mark:], done.summaries[mark:]
                await self._restore_listed(rule, wanted, mounts, extra_args, before_each, done)
        return done

    async def _restore_listed(
        self,
        rule: HostRule,
        wanted: Listing,
        mounts: Sequence[str],
        extra_args: Sequence[str],
        before_each: Callable[[], None] | None,
        done: HostRestore,
    ) -> None:
        changed = asyncio.Event()
        listing = SnapshotListing(paths=wanted.paths, on_change=changed.set)
        lister = asyncio.create_task(self._list(wanted, listing), name="restic-ls")
        try:
            await _until(lambda: listing.snapshot is not None, lister, changed)
            snapshot = listing.snapshot
            if snapshot is None:
                raise PlanError(wanted.missing, reason="SnapshotNotFound")
            self._announce(rule, snapshot, listing.paths)
            if mounts:
                for path in listing.paths:
                    self.check_target(path, path, mounts)  # every volume before the first write
            for path in listing.paths:
                await _until(functools.partial(_has_root, listing, path), lister, changed)
                root = listing.root(path)
                if root is None:
                    raise PlanError(
                        f"path {path} is not in snapshot {snapshot.short_id} of host {snapshot.hostname}",
                        reason="PathNotInSnapshot",
                    )
                item = plan_item(rule, snapshot.id, path, root)
                if item is None:
                    log.info("the rule's patterns leave nothing of this path", extra={"path": path})
                    continue
                self.check_target(item.target, path, mounts)
                if before_each is not None:
                    before_each()
                started = time.monotonic()
                summary = await self._restore_one(item, extra_args)
                await lister  # the count is complete once the listing is
                problem = verify(item, summary, listing.by_path[path])
                if problem is not None:
                    raise RestoreIncomplete(problem)
                if item.root is not None:
                    apply_root_metadata(item)
                done.items.append(item)
                done.summaries.append(summary)
                self._restored(item, summary, time.monotonic() - started)
            await lister
        finally:
            if not lister.done():
                lister.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lister

    def _announce(self, rule: HostRule, snapshot: rj.Snapshot, paths: Sequence[str]) -> None:
        if snapshot.hostname != rule.source_host:
            log.info(
                "restoring a snapshot of another host, as the rule names it by ID",
                extra={"snapshot": snapshot.short_id, "snapshot_host": snapshot.hostname},
            )
        log.info(
            "restore planned",
            extra={
                "invoker": self.ctx.object_ref(),
                "host": self.ctx.host.name,
                "source_host": rule.source_host,
                "rule": rule.index,
                "snapshot": snapshot.short_id,
                "snapshot_host": snapshot.hostname,
                "paths": list(paths),
            },
        )

    def _restored(self, item: RestoreItem, summary: rj.RestoreSummary, seconds: float) -> None:
        log.info(
            "path restored",
            extra={
                "invoker": self.ctx.object_ref(),
                "host": self.ctx.host.name,
                "path": item.path,
                "snapshot": item.snapshot_id[:8],
                "files_restored": summary.files_restored,
                "files_skipped": summary.files_skipped,
                "bytes_restored": summary.bytes_restored,
                "verified": item.counted,
                "seconds": round(seconds, 2),
            },
        )

    async def _list(self, wanted: Listing, listing: SnapshotListing) -> None:
        result = await self.restic.run(["ls", *wanted.args], on_line=listing.feed)
        json_error = self.restic.scrub(result.exit_error.message) if result.exit_error else None
        error = error_for_exit(result.exit_code, result.stderr_tail, json_error)
        if isinstance(error, SnapshotNotFound):
            raise PlanError(wanted.missing, reason="SnapshotNotFound")
        if error is not None:
            raise error

    # --- targets -----------------------------------------------------------------------------------

    def check_target(self, target: str, path: str, mounts: Sequence[str]) -> None:
        """``target`` must be (inside) a mounted, writable volume of this container.

        Without that, restic would write into the init-container's own file system: the application
        would start without its data, and the restore would still look complete.
        """
        pod = self.ctx.settings.pod_name
        if target == "/":
            raise PlanError(f"{path}: refusing to restore into /", reason="InvalidRestorePath")
        holder = mount_for(target, mounts) if mounts else target
        if holder is None:
            raise PlanError(
                f"{path} is not under any of spec.target.volumeMounts ({', '.join(mounts)}); "
                "restored there it would land in the init-container's own file system",
                reason="TargetPathNotMounted",
            )
        what = holder if holder == path else f"{holder} (for {path})"
        if not os.path.isdir(holder):
            raise PlanError(
                f"{what} is not a directory in pod {pod}; is the volume mounted?", reason="TargetPathNotFound"
            )
        if not os.access(holder, os.W_OK):
            raise PlanError(f"{what} is not writable in pod {pod}", reason="TargetNotWritable")

    # --- restore -----------------------------------------------------------------------------------

    async def _restore_one(self, item: RestoreItem, extra_args: Sequence[str]) -> rj.RestoreSummary:
        """``restic restore`` of one item; a failure names the first paths restic could not write."""
        args = ["restore", f"--target={item.target}"]
        args += [f"--include={pattern}" for pattern in item.include]
        args += [f"--exclude={pattern}" for pattern in item.exclude]
        summaries: list[rj.RestoreSummary] = []
        report = self.on_progress

        def on_line(line: str) -> None:
            message = rj.parse_restore_message(line)
            if isinstance(message, rj.RestoreSummary):
                summaries.append(message)
            elif isinstance(message, rj.RestoreStatus) and report is not None:
                try:
                    report(item, message)
                except Exception:  # a broken progress consumer must not break a restore
                    log.exception("restore progress callback failed")

        result = await self.restic.run([*args, *extra_args, "--", item.snapshot_arg], on_line=on_line)
        json_error = self.restic.scrub(result.exit_error.message) if result.exit_error else None
        error = error_for_exit(result.exit_code, result.stderr_tail, json_error)
        details = describe_errors(result.item_errors, result.error_count, self.restic.scrub)
        if error is not None:
            if details:
                error = type(error)(f"{error.message}: {details}", exit_code=error.exit_code)
            raise error
        if result.error_count:
            raise RestoreIncomplete(
                f"restic reported {result.error_count} errors: {details}", reason="ResticErrors"
            )
        if not summaries:
            raise RestoreIncomplete("restic restore exited 0 but printed no summary")
        return summaries[-1]


def _has_root(listing: SnapshotListing, path: str) -> bool:
    return listing.root(path) is not None


async def _until(condition: Callable[[], bool], lister: asyncio.Task[None], changed: asyncio.Event) -> None:
    """Wait until ``condition`` holds or the listing has ended (re-raising its error)."""
    while not condition():
        if lister.done():
            lister.result()
            return
        changed.clear()
        waiter = asyncio.create_task(changed.wait())
        try:
            await asyncio.wait({waiter, lister}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()


def describe_errors(errors: Sequence[rj.ItemError], count: int, scrub: Callable[[str], str]) -> str:
    """The first few of restic's per-file errors, one per item (a file that could not be created also
    fails its chown), and how many more there were."""
    first: dict[str, str] = {}
    for error in errors:
        first.setdefault(error.item or error.message, scrub(error.message))
    shown = list(first.items())[:ITEM_ERRORS_SHOWN]
    text = "; ".join(f"{item}: {message}" if item != message else message for item, message in shown)
    if count > len(shown):
        text += f" (and {count - len(shown)} more errors)"
    return text


def apply_root_metadata(item: RestoreItem) -> None:
    """Give the volume root the owner, mode and times its directory had in the snapshot.

    restic restores a subtree's contents, not the subtree root's own metadata. Ownership is set only
    when running as root (as restic does, a non-root restore keeps the current owner).
    """
    root = item.root
    if root is None:
        return
    target = item.target
    try:
        if os.geteuid() == 0:
            os.chown(target, root.uid, root.gid)
        os.chmod(target, root.mode)  # after chown, which clears setuid/setgid
        if root.mtime_ns is not None:
            os.utime(target, ns=(root.atime_ns or root.mtime_ns, root.mtime_ns))
    except OSError as exc:
        raise RestoreIncomplete(
            f"cannot set owner, mode or times of {target}: {exc.strerror or exc}", reason="TargetNotWritable"
        ) from exc
