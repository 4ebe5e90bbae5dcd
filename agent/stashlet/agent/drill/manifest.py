"""What a snapshot holds, as ``restic ls --json`` lists it, and the comparison of a restored tree with it.

:class:`Listing` reads the listings of a host's snapshots as streams and keeps, per backed-up path, the
node's type, size and permission bits, in an SQLite file (a drill's memory does not grow with the
snapshot). :meth:`Listing.compare` walks the folder a drill restored into and names every entry that
is missing, that the snapshot does not hold, or whose type, size or mode differs. Ownership and times
are not compared: a drill restores into scratch space, where they prove nothing about the data. Content
is restic's to check (``restore --verify`` reads every file back against the snapshot's blobs).
"""

from __future__ import annotations

import os
import posixpath
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stashlet.agent.restic import output as rj
from stashlet.agent.restore.listing import go_mode_to_unix

MISSING = "missing"
UNEXPECTED = "unexpected"
DIFFERS = "differs"
NOT_RESTORED = "not-restored"

BATCH = 10_000
"""Nodes written to the listing's file at once."""
_INSERT_LISTED = "INSERT OR REPLACE INTO listed VALUES (?, ?, ?, ?)"
_INSERT_FOUND = "INSERT OR REPLACE INTO found VALUES (?, ?, ?, ?)"

_TYPES = (
    (stat.S_ISDIR, "dir"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "chardev"),
    (stat.S_ISBLK, "dev"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
)


@dataclass(frozen=True)
class Entry:
    """One node of a snapshot: its type (restic's word), size (files) and Unix permission bits."""

    type: str
    size: int
    mode: int

    def describe(self) -> str:
        """``file, 120 bytes, mode 0640``."""
        size = f", {self.size} bytes" if self.type == "file" else ""
        mode = "" if self.type == "symlink" else f", mode {self.mode:04o}"
        return f"{self.type}{size}{mode}"


@dataclass(frozen=True)
class Mismatch:
    """One way the restored tree differs from the snapshot: ``path`` as backed up, ``kind`` one of
    :data:`MISSING`, :data:`UNEXPECTED`, :data:`DIFFERS` or :data:`NOT_RESTORED` (restic said so)."""

    path: str
    kind: str
    detail: str

    def describe(self) -> str:
        """``/data/a.txt: missing from the restored data``."""
        return f"{self.path}: {self.detail}"


class Listing:
    """The nodes of one host's snapshots as ``restic ls --json`` lists them (the snapshot line first, then
    one line per node), kept per backed-up path in an SQLite file rather than in memory: a drill of millions
    of files holds a batch of them at a time. A path listed again (a later snapshot of the same host holding
    the same folder) takes the later word. The file is removed on :meth:`close`."""

    def __init__(self, path: Path) -> None:
        """Start an empty listing in the file ``path`` (replaced if it exists)."""
        self.path = path
        path.unlink(missing_ok=True)
        # One drill uses it, one step at a time, on the event loop or in one worker thread.
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        columns = "(path TEXT PRIMARY KEY, type TEXT, size INTEGER, mode INTEGER) WITHOUT ROWID"
        with self._db:
            self._db.execute("CREATE TABLE listed " + columns)
            self._db.execute("CREATE TABLE found " + columns)
        self._pending: list[tuple[str, str, int, int]] = []
        self.snapshot: rj.Snapshot | None = None
        """The snapshot of the listing fed last."""

    def feed(self, line: str) -> None:
        """One line of a listing."""
        obj = rj.load_object(line)
        if obj is None:
            return
        kind = obj.get("message_type") or obj.get("struct_type")
        if kind == "snapshot":
            self.snapshot = rj.parse_snapshots(f"[{line}]")[0]
            return
        path = obj.get("path")
        if kind != "node" or not isinstance(path, str):
            return
        size = obj.get("size")
        mode = obj.get("mode")
        self._pending.append(
            (
                posixpath.normpath(path),
                str(obj.get("type") or ""),
                size if isinstance(size, int) else 0,
                go_mode_to_unix(mode) if isinstance(mode, int) else 0,
            )
        )
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the nodes fed since the last flush."""
        self._insert(_INSERT_LISTED, self._pending)
        self._pending = []

    def _insert(self, statement: str, rows: list[tuple[str, str, int, int]]) -> None:
        if rows:
            with self._db:
                self._db.executemany(statement, rows)

    def get(self, path: str) -> Entry | None:
        """The node listed at ``path``, if any."""
        self.flush()
        row = self._db.execute("SELECT type, size, mode FROM listed WHERE path = ?", (path,)).fetchone()
        return Entry(*row) if row else None

    def counts(self) -> tuple[int, int, int]:
        """How many nodes are listed, how many of them are regular files, and the files' bytes."""
        self.flush()
        nodes, files, size = self._db.execute(
            "SELECT count(*), count(*) FILTER (WHERE type = 'file'),"
            " coalesce(sum(size) FILTER (WHERE type = 'file'), 0) FROM listed"
        ).fetchone()
        return int(nodes), int(files), int(size)

    def compare(self, root: Path) -> Iterator[Mismatch]:
        """How the tree restored under ``root`` (``root`` + a backed-up path is where restic put it) differs
        from the listing, in path order: every entry missing, not listed, or of another type, size or mode."""
        self.flush()
        with self._db:
            self._db.execute("DELETE FROM found")
        if root.is_dir():
            batch: list[tuple[str, str, int, int]] = []
            for path in _walk(root):
                there = entry_of(path)
                batch.append(("/" + path.relative_to(root).as_posix(), there.type, there.size, there.mode))
                if len(batch) >= BATCH:
                    self._insert(_INSERT_FOUND, batch)
                    batch = []
            self._insert(_INSERT_FOUND, batch)
        rows = self._db.execute(
            "SELECT l.path, l.type, l.size, l.mode, f.type, f.size, f.mode"
            " FROM listed l LEFT JOIN found f ON f.path = l.path"
            " WHERE f.path IS NULL OR f.type != l.type OR (l.type = 'file' AND f.size != l.size)"
            " OR (l.type != 'symlink' AND f.mode != l.mode)"
            " UNION ALL SELECT f.path, NULL, NULL, NULL, f.type, f.size, f.mode FROM found f"
            " WHERE NOT EXISTS (SELECT 1 FROM listed l WHERE l.path = f.path)"
            " ORDER BY 1"
        )
        for path, *pair in rows:
            listed = Entry(*pair[:3]) if pair[0] is not None else None
            restored = Entry(*pair[3:]) if pair[3] is not None else None
            yield _mismatch(path, listed, restored)

    def close(self) -> None:
        """Forget the listing and remove its file."""
        self._db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def entry_of(path: Path) -> Entry:
    """The restored entry at ``path`` (not following a symlink), as a snapshot node would list it."""
    info = path.lstat()
    kind = next((name for test, name in _TYPES if test(info.st_mode)), "irregular")
    return Entry(type=kind, size=info.st_size if kind == "file" else 0, mode=stat.S_IMODE(info.st_mode))


def _walk(root: Path) -> Iterator[Path]:
    """Every entry below ``root``, never following a symlink."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as found:
            for item in found:
                yield Path(item.path)
                if item.is_dir(follow_symlinks=False):
                    stack.append(Path(item.path))


def _mismatch(path: str, wanted: Entry | None, there: Entry | None) -> Mismatch:
    if wanted is None:
        return Mismatch(path, UNEXPECTED, "restored, but the snapshot does not hold it")
    if there is None:
        return Mismatch(path, MISSING, f"missing from the restored data ({wanted.describe()})")
    return Mismatch(path, DIFFERS, _difference(wanted, there) or "differs")


def _difference(wanted: Entry, there: Entry) -> str | None:
    """How ``there`` differs from ``wanted`` (the rule the listing's query applies), None when it does not."""
    if wanted.type != there.type:
        return f"restored as a {there.type}, the snapshot holds a {wanted.type}"
    if wanted.type == "file" and wanted.size != there.size:
        return f"restored with {there.size} bytes, the snapshot holds {wanted.size}"
    if wanted.type != "symlink" and wanted.mode != there.mode:
        return f"restored with mode {there.mode:04o}, the snapshot holds {wanted.mode:04o}"
    return None
