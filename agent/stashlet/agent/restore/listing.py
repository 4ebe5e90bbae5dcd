"""``restic ls`` as the independent count of a snapshot, restore items, and the check of restic's summary:
pure.

``SnapshotListing`` reads ``restic ls --json`` as a stream: the snapshot comes first, then each backed-up
path's own node, then what lies below it. The agent starts restoring a path as soon as its own node has
been read (its type decides how it is restored) while the listing goes on, and checks restic's summary
against the finished count: every node below the path must be accounted for (restored, or skipped
because restic found its content already in place) and every byte, hard links counted once.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stashlet.agent.restic import output as rj
from stashlet.agent.restore.plan import HostRule, rebase_patterns

_GO_MODE_SETUID = 1 << 23
_GO_MODE_SETGID = 1 << 22
_GO_MODE_STICKY = 1 << 20
_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$")


@dataclass(frozen=True)
class RootNode:
    """The metadata of a backed-up path's own node (applied to the volume root after the restore)."""

    type: str
    mode: int
    """Unix permission bits (with setuid/setgid/sticky)."""
    uid: int
    gid: int
    mtime_ns: int | None
    atime_ns: int | None
    size: int = 0


@dataclass
class PathListing:
    """What ``restic ls`` says lies at and below one backed-up path."""

    root: RootNode | None = None
    nodes: int = 0
    """Nodes below the path (the path itself not counted)."""
    bytes_all: int = 0
    bytes_unique: int = 0
    """File bytes counting each inode once (restic writes a hard link's data once)."""
    _inodes: set[int] = field(default_factory=set)


def go_mode_to_unix(mode: int) -> int:
    """A Go ``os.FileMode`` (as restic stores it) as Unix mode bits (permissions and special bits)."""
    bits = mode & 0o777
    if mode & _GO_MODE_SETUID:
        bits |= 0o4000
    if mode & _GO_MODE_SETGID:
        bits |= 0o2000
    if mode & _GO_MODE_STICKY:
        bits |= 0o1000
    return bits


def parse_time_ns(value: object) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time as restic writes it (keeps all nine digits)."""
    if not isinstance(value, str) or not value:
        return None
    match = _FRACTION.match(value.strip())
    if match is None:
        return None
    head, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(head + (zone if zone and zone != "Z" else "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return int(moment.timestamp()) * 1_000_000_000 + nanos


def outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """``paths`` without those inside another of them (restoring the outer one restores them too)."""
    unique = list(dict.fromkeys(paths))
    return tuple(p for p in unique if not any(o != p and p.startswith(o.rstrip("/") + "/") for o in unique))


@dataclass
class SnapshotListing:
    """A streaming reader of ``restic ls --json``: the snapshot, then per backed-up path what lies there.

    ``paths`` are the paths of interest; when empty, the snapshot's own paths are taken from its first
    line. ``on_change`` is called when the snapshot or a path's own node has been read. Only counts are
    kept, so a snapshot of millions of files costs no memory.
    """

    paths: tuple[str, ...] = ()
    snapshot: rj.Snapshot | None = None
    by_path: dict[str, PathListing] = field(default_factory=dict)
    on_change: Callable[[], None] | None = None

    def feed(self, line: str) -> None:
        """One line of ``restic ls --json`` output."""
        obj = rj.load_object(line)
        if obj is None:
            return
        kind = obj.get("message_type") or obj.get("struct_type")
        if kind == "snapshot":
            self.snapshot = rj.parse_snapshots(f"[{line}]")[0]
            if not self.paths:
                self.paths = outermost(posixpath.normpath(p) for p in self.snapshot.paths)
            self.by_path = {p: PathListing() for p in self.paths}
            self._changed()
            return
        path = obj.get("path")
        if kind != "node" or not isinstance(path, str):
            return
        for root, listing in self.by_path.items():
            if path == root:
                listing.root = _root_node(obj)
                self._changed()
            elif path.startswith(root.rstrip("/") + "/"):
                listing.nodes += 1
                if obj.get("type") == "file":
                    size = int(obj.get("size") or 0)
                    listing.bytes_all += size
                    inode = obj.get("inode")
                    if not isinstance(inode, int) or inode == 0 or inode not in listing._inodes:
                        listing.bytes_unique += size
                        if isinstance(inode, int) and inode:
                            listing._inodes.add(inode)
            else:
                continue
            break

    def root(self, path: str) -> RootNode | None:
        """The node of backed-up ``path`` itself, once read."""
        found = self.by_path.get(path)
        return found.root if found is not None else None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _root_node(obj: rj.JSONObject) -> RootNode:
    def number(key: str) -> int:
        value = obj.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return RootNode(
        type=str(obj.get("type") or ""),
        mode=go_mode_to_unix(number("mode")),
        uid=number("uid"),
        gid=number("gid"),
        mtime_ns=parse_time_ns(obj.get("mtime")),
        atime_ns=parse_time_ns(obj.get("atime")),
        size=number("size"),
    )


# ----------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class RestoreItem:
    """One ``restic restore <snapshot>:<subfolder> --target <target>`` run."""

    snapshot_id: str
    path: str
    """The backed-up path this run puts back."""
    subfolder: str
    target: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    counted: bool = True
    """False when include/exclude patterns decide what is restored (restic's filter is the count)."""
    root: RootNode | None = None
    """Metadata to apply to ``target`` afterwards (directories only)."""

    @property
    def snapshot_arg(self) -> str:
        """The snapshot argument of ``restic restore``."""
        return f"{self.snapshot_id}:{self.subfolder}"


def plan_item(rule: HostRule, snapshot_id: str, path: str, root: RootNode) -> RestoreItem | None:
    """The restic run that restores ``path`` (whose own node is ``root``) as ``rule`` wants; None when the
    rule's patterns leave nothing of it.

    A directory is restored from its subtree into itself; a single file from its parent directory with an
    include of its name (the rest of the parent is left alone).
    """
    is_dir = root.type == "dir"
    subfolder = path if is_dir else posixpath.dirname(path)
    include: tuple[str, ...] = () if is_dir else ("/" + posixpath.basename(path),)
    exclude: tuple[str, ...] = ()
    counted = True
    if rule.include:
        rebased = rebase_patterns(rule.include, path)
        if not rebased.covers:
            if not is_dir or not rebased.patterns:
                return None
            include, counted = rebased.patterns, False
    if rule.exclude:
        rebased = rebase_patterns(rule.exclude, path)
        if rebased.covers:
            return None
        if rebased.patterns and is_dir:
            exclude, counted = rebased.patterns, False
    return RestoreItem(
        snapshot_id=snapshot_id,
        path=path,
        subfolder=subfolder,
        target=subfolder,
        include=include,
        exclude=exclude,
        counted=counted,
        root=root if is_dir else None,
    )


def mount_for(path: str, mounts: Sequence[str]) -> str | None:
    """The mount path (of ``mounts``) that holds ``path``: the longest one equal to it or above it."""
    best: str | None = None
    for mount in mounts:
        norm = posixpath.normpath(mount)
        inside = path == norm or path.startswith(norm.rstrip("/") + "/")
        if inside and (best is None or len(norm) > len(best)):
            best = norm
    return best


def verify(item: RestoreItem, summary: rj.RestoreSummary, found: PathListing) -> str | None:
    """Why restic's summary shows an incomplete restore of ``item``; None when it accounts for everything.

    ``found`` is the finished listing of ``item.path``.
    """
    if not item.counted or found.root is None:
        return None
    if item.root is None:  # a single file
        nodes, low, high = 1, found.root.size, found.root.size
    else:
        nodes, low, high = found.nodes, found.bytes_unique, found.bytes_all
    done = summary.files_restored + summary.files_skipped
    written = summary.bytes_restored + summary.bytes_skipped
    where = f"{item.path} from snapshot {item.snapshot_id[:8]}"
    if done != nodes:
        return (
            f"restic accounted for {done} of the {nodes} items of {where} "
            f"({summary.files_restored} restored, {summary.files_skipped} already there)"
        )
    if not low <= written <= high:
        return f"restic wrote {written} bytes of {where}, the snapshot holds {high}"
    return None
