"""``snapshots``, ``unlock``, ``check``, ``delete snapshot`` and ``download``: restic work on one
Repository through an :class:`~stashlet.kubectl_stash.restic_access.Access` (in the cluster or ``--local``).

``download`` always runs the user's restic (it writes into a folder on this machine, as Stash's plugin
does with a local container); each snapshot goes into ``<destination>/<snapshot id>``, with progress."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from stashlet.api.repository import Repository
from stashlet.kubectl_stash.errors import PluginError
from stashlet.kubectl_stash.restic_access import Access, collect, request_for
from stashlet.kubectl_stash.tables import NONE, age, human_bytes

SNAPSHOT_HEADERS = ("ID", "HOST", "PATHS", "TIME", "AGE", "SIZE")


async def snapshot_rows(access: Access, repo: Repository, now: dt.datetime) -> list[tuple[str, ...]]:
    """One row per snapshot, oldest first: short ID, host, paths, time (UTC), age and size."""
    rows: list[tuple[str, ...]] = []
    for line in await collect(access, repo, "snapshots"):
        when = dt.datetime.fromisoformat(line["time"]) if line.get("time") else None
        rows.append(
            (
                str(line.get("short_id") or ""),
                str(line.get("hostname") or ""),
                ",".join(line.get("paths") or []),
                when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if when else NONE,
                age(when, now),
                human_bytes(int(line["size"])) if line.get("size") is not None else NONE,
            )
        )
    return rows


async def unlock(access: Access, repo: Repository, *, remove_all: bool) -> None:
    """Remove stale locks (all locks with ``remove_all``)."""
    await collect(access, repo, "unlock", remove_all=remove_all)


@dataclass(frozen=True)
class CheckOutcome:
    """What ``restic check`` found."""

    ok: bool
    errors: list[str]


async def check(access: Access, repo: Repository, *, read_data: bool, subset: str | None) -> CheckOutcome:
    """Check the repository (all data with ``read_data``, a part with ``subset``)."""
    lines = await collect(access, repo, "check", read_data=read_data, read_data_subset=subset)
    line = lines[-1]
    return CheckOutcome(bool(line.get("ok")), [str(e) for e in line.get("errors") or []])


def split_snapshot_name(name: str) -> tuple[str, str]:
    """``<repository>-<snapshot id>`` (the Snapshot's name, as Stash names it) -> (repository, id)."""
    repository, sep, snapshot = name.rpartition("-")
    if not sep or not repository or not snapshot or any(c not in "0123456789abcdef" for c in snapshot):
        raise PluginError(
            f"snapshot name {name!r} is not <repository>-<snapshot id> (e.g. gcs-repo-19eb4793, as "
            "'kubectl stash snapshots' lists them)"
        )
    return repository, snapshot


async def delete_snapshot(access: Access, repo: Repository, snapshot: str) -> None:
    """Forget one snapshot and prune the data only it held (``restic forget <id> --prune``)."""
    await collect(access, repo, "forget", ids=[snapshot], prune=True)


def _progress(out: TextIO, snapshot: str) -> Any:
    def show(line: dict[str, Any]) -> None:
        if line.get("stashlet-repo") == "progress":
            done, total = int(line.get("bytes") or 0), int(line.get("total_bytes") or 0)
            out.write(
                f"\rsnapshot {snapshot}: {float(line.get('percent') or 0) * 100:5.1f}% "
                f"({line.get('files')}/{line.get('total_files')} files, "
                f"{human_bytes(done)} / {human_bytes(total)})"
            )
            out.flush()
        elif line.get("stashlet-repo") == "restored":
            out.write(
                f"\rsnapshot {snapshot}: 100.0% ({line.get('files')} files, "
                f"{human_bytes(int(line.get('bytes') or 0))})\n"
            )

    return show


async def download(
    access: Access,
    repo: Repository,
    snapshots: list[str],
    destination: Path,
    paths: list[str],
    progress: TextIO,
) -> list[Path]:
    """Restore each snapshot (or ``paths`` of it) into ``destination/<snapshot>``; the folders written."""
    if not snapshots:
        raise PluginError(
            "--snapshots is required: the snapshot IDs to download (see 'kubectl stash snapshots')"
        )
    written = []
    for snapshot in snapshots:
        target = destination / snapshot
        request = request_for(repo, "restore", snapshot=snapshot, target=str(target), include=paths)
        await access.perform(repo, request, _progress(progress, snapshot))
        written.append(target)
    return written
