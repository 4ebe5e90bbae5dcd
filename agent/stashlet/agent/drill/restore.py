"""The restic side of a restore drill: list each configuration's latest snapshots, restore them into
scratch space, compare what came back with the listing.

Every host's and path's latest snapshot (``restic snapshots --latest 1``: one per host and set of paths, as
stashlet and Stash take them) is listed (``restic ls --json``, streamed into the host's
:class:`~stashlet.agent.drill.manifest.Listing`, a file beside its folder) and restored with
``restic restore --verify`` (restic reads every restored file back against the snapshot's blobs) into
``<scratch>/<host>``, where a host's snapshots of several paths lie side by side under their backed-up
paths. A file restic could not restore (a damaged or missing blob, a read-back that did not match) is
named from restic's own error; then the host's folder is walked and every entry missing, extra, or of
another type, size or mode is named (:meth:`~stashlet.agent.drill.manifest.Listing.compare`). Every
problem is logged as it is found; the host's result keeps the first
:data:`~stashlet.agent.drill.verdict.PROBLEMS_KEPT` and counts them all, so neither the listing nor the
problems of a large snapshot are held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stashlet.agent.drill.manifest import NOT_RESTORED, Listing, Mismatch
from stashlet.agent.drill.verdict import PROBLEMS_KEPT, DrilledSnapshot
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.errors import error_for_exit
from stashlet.agent.restic.runner import Restic, RunResult

log = logging.getLogger(__name__)

PROGRESS_EVERY = 10.0
"""Seconds between two progress lines of one restore in the log."""


@dataclass
class HostResult:
    """What one host's snapshots gave: the snapshots, the files and bytes they hold, the first
    mismatches (those restic named, then the comparison's in path order) and how many there were."""

    host: str
    snapshots: list[DrilledSnapshot] = field(default_factory=list)
    files: int = 0
    size: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    mismatch_count: int = 0

    def add(self, mismatch: Mismatch) -> None:
        """Count ``mismatch``; keep it when it is among the first :data:`PROBLEMS_KEPT`."""
        self.mismatch_count += 1
        if len(self.mismatches) < PROBLEMS_KEPT:
            self.mismatches.append(mismatch)


def drilled(snapshot: rj.Snapshot) -> DrilledSnapshot:
    """The verdict's record of ``snapshot``."""
    return DrilledSnapshot(
        id=snapshot.id,
        short_id=snapshot.short_id or snapshot.id[:8],
        host=snapshot.hostname,
        paths=tuple(snapshot.paths),
        time=snapshot.time.isoformat() if snapshot.time else None,
    )


def by_host(snapshots: Sequence[rj.Snapshot]) -> dict[str, list[rj.Snapshot]]:
    """``snapshots`` grouped by host, each group oldest first, hosts in name order."""
    groups: dict[str, list[rj.Snapshot]] = defaultdict(list)
    for snapshot in snapshots:
        groups[snapshot.hostname].append(snapshot)
    return {host: sorted(groups[host], key=_when) for host in sorted(groups)}


def _when(snapshot: rj.Snapshot) -> float:
    return snapshot.time.timestamp() if snapshot.time is not None else 0.0


def host_folder(scratch: Path, host: str) -> Path:
    """Where ``host``'s snapshots are restored: ``<scratch>/<host>`` (a host name has no slash; one that did
    would not leave the scratch folder)."""
    return scratch / (host.replace("/", "_").lstrip(".") or "_")


class DrillRestore:
    """Restores and checks snapshots with ``restic`` (bound to the Repository ``repository``)."""

    def __init__(self, restic: Restic, repository: str, who: str) -> None:
        """``who`` (``namespace/configuration``) names the drill in the log."""
        self.restic = restic
        self.repository = repository
        self.who = who

    async def host(self, host: str, snapshots: Sequence[rj.Snapshot], scratch: Path) -> HostResult:
        """Restore ``host``'s ``snapshots`` into its folder under ``scratch`` and compare."""
        target = host_folder(scratch, host)
        await asyncio.to_thread(shutil.rmtree, target, True)
        target.mkdir(parents=True)
        result = HostResult(host)
        # Beside the host's folder: a host folder's name never starts with a dot.
        with Listing(scratch / f".{target.name}.listing") as listing:
            for snapshot in snapshots:  # the later snapshot's word on a folder both hold (restored last)
                await self.listing(snapshot, listing)
                result.snapshots.append(drilled(snapshot))
                for mismatch in await self.restore(snapshot, target):
                    self._found(result, mismatch)
            _, result.files, result.size = listing.counts()

            def compare() -> None:
                for mismatch in listing.compare(target):
                    self._found(result, mismatch)

            await asyncio.to_thread(compare)
        return result

    def _found(self, result: HostResult, mismatch: Mismatch) -> None:
        log.warning(
            "restore drill mismatch",
            extra={
                "invoker": self.who,
                "host": result.host,
                "path": mismatch.path,
                "kind": mismatch.kind,
                "detail": mismatch.detail,
            },
        )
        result.add(mismatch)

    async def listing(self, snapshot: rj.Snapshot, listing: Listing) -> None:
        """``restic ls --json <snapshot>``, streamed into ``listing``."""
        started = time.monotonic()
        before, files_before, _ = listing.counts()
        ran = await self.restic.run(["ls", "--", snapshot.id], on_line=listing.feed)
        self._raise_for(ran)
        after, files_after, _ = listing.counts()
        log.info(
            "snapshot listed",
            extra={
                "invoker": self.who,
                "repository": self.repository,
                "snapshot": snapshot.short_id,
                "host": snapshot.hostname,
                "new_entries": after - before,
                "new_files": files_after - files_before,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    async def restore(self, snapshot: rj.Snapshot, target: Path) -> list[Mismatch]:
        """``restic restore --verify <snapshot> --target <target>``; the files restic could not restore or
        verify, from its own errors (a run that failed as a whole raises from the taxonomy)."""
        started = time.monotonic()
        summaries: list[rj.RestoreSummary] = []
        progress = _Progress(self.who, snapshot.short_id)

        def on_line(line: str) -> None:
            message = rj.parse_restore_message(line)
            if isinstance(message, rj.RestoreSummary):
                summaries.append(message)
            elif isinstance(message, rj.RestoreStatus):
                progress.offer(message)

        args = ["restore", f"--target={target}", "--verify", "--", snapshot.id]
        ran = await self.restic.run(args, on_line=on_line)
        scrub = self.restic.scrub
        not_restored = [
            Mismatch(error.item, NOT_RESTORED, f"restic could not restore it: {scrub(error.message)}")
            for error in ran.item_errors
            if error.item
        ]
        if not not_restored:
            self._raise_for(ran)
        summary = summaries[-1] if summaries else None
        log.info(
            "snapshot restored",
            extra={
                "invoker": self.who,
                "repository": self.repository,
                "snapshot": snapshot.short_id,
                "host": snapshot.hostname,
                "target": str(target),
                "files_restored": summary.files_restored if summary else None,
                "bytes_restored": summary.bytes_restored if summary else None,
                "restic_errors": ran.error_count,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        return not_restored

    def _raise_for(self, ran: RunResult) -> None:
        json_error = self.restic.scrub(ran.exit_error.message) if ran.exit_error else None
        location = self.restic.repository.display_url if self.restic.repository is not None else None
        error = error_for_exit(ran.exit_code, ran.stderr_tail, json_error, location=location)
        if error is not None:
            raise error


class _Progress:
    """Logs a restore's progress at most every :data:`PROGRESS_EVERY` seconds."""

    def __init__(self, who: str, snapshot: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.who = who
        self.snapshot = snapshot
        self.clock = clock
        self.last = clock()

    def offer(self, status: rj.RestoreStatus) -> None:
        now = self.clock()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        log.info(
            "restore drill progress",
            extra={
                "invoker": self.who,
                "snapshot": self.snapshot,
                "percent": round(status.percent_done * 100, 1),
                "files_restored": status.files_restored,
                "total_files": status.total_files,
                "bytes_restored": status.bytes_restored,
                "total_bytes": status.total_bytes,
            },
        )
