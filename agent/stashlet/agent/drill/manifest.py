"""What a snapshot holds, as ``restic ls --json`` lists it, and the comparison of a restored tree with it.

:class:`SnapshotManifest` reads the listing as a stream (the snapshot line first, then one line per node)
and keeps, per backed-up path, the node's type, size and permission bits. :func:`compare` walks the
folder a drill restored into and names every entry that is missing, that the snapshot does not hold, or
whose type, size or mode differs. Ownership and times are not compared: a drill restores into scratch
space, where they prove nothing about the data. Content is restic's to check (``restore --verify`` reads
every file back against the snapshot's blobs).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stashlet.agent.restic import output as rj
from stashlet.agent.restore.listing import go_mode_to_unix

MISSING = "missing"
UNEXPECTED = "unexpected"
DIFFERS = "differs"
NOT_RESTORED = "not-restored"

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


@dataclass
class SnapshotManifest:
    """A streaming reader of ``restic ls --json <snapshot>``: the snapshot, then every node by path."""

    snapshot: rj.Snapshot | None = None
    entries: dict[str, Entry] = field(default_factory=dict)

    def feed(self, line: str) -> None:
        """One line of the listing."""
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
        self.entries[posixpath.normpath(path)] = Entry(
            type=str(obj.get("type") or ""),
            size=size if isinstance(size, int) else 0,
            mode=go_mode_to_unix(mode) if isinstance(mode, int) else 0,
        )

    @property
    def files(self) -> int:
        """How many regular files the snapshot holds."""
        return sum(1 for entry in self.entries.values() if entry.type == "file")


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


def compare(expected: Mapping[str, Entry], root: Path) -> list[Mismatch]:
    """How the tree restored under ``root`` (``root`` + a backed-up path is where restic put it) differs
    from ``expected``, sorted by path."""
    found: list[Mismatch] = []
    seen: set[str] = set()
    if root.is_dir():
        for path in _walk(root):
            backed_up = "/" + path.relative_to(root).as_posix()
            seen.add(backed_up)
            wanted = expected.get(backed_up)
            if wanted is None:
                found.append(Mismatch(backed_up, UNEXPECTED, "restored, but the snapshot does not hold it"))
                continue
            there = entry_of(path)
            difference = _difference(wanted, there)
            if difference is not None:
                found.append(Mismatch(backed_up, DIFFERS, difference))
    for gone in expected.keys() - seen:
        found.append(Mismatch(gone, MISSING, f"missing from the restored data ({expected[gone].describe()})"))
    return sorted(found, key=lambda m: m.path)


def _difference(wanted: Entry, there: Entry) -> str | None:
    if wanted.type != there.type:
        return f"restored as a {there.type}, the snapshot holds a {wanted.type}"
    if wanted.type == "file" and wanted.size != there.size:
        return f"restored with {there.size} bytes, the snapshot holds {wanted.size}"
    if wanted.type != "symlink" and wanted.mode != there.mode:
        return f"restored with mode {there.mode:04o}, the snapshot holds {wanted.mode:04o}"
    return None
