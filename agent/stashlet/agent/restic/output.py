"""Parsers for restic's ``--json`` output (restic 0.18, ``doc/075_scripting.rst``), pure and tolerant.

Long-running commands (``backup``, ``restore``, ``check``) print JSON lines told apart by
``message_type``; the others print one JSON document. restic omits fields holding a default value
(``0``, ``""``, ``null``), may add fields and message types at any time, and still prints some plain
text (``forget --prune`` mixes prune's text into stdout; stderr carries warnings). So every parser
here ignores unknown keys, reads a missing number as 0, and returns ``None`` for a line that is not a
JSON object it knows, instead of raising.

Each message is a frozen dataclass whose field names are restic's JSON keys; :func:`_build` fills a
dataclass from a JSON object by the declared type of each field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

JSONObject: TypeAlias = Mapping[str, Any]
T = TypeVar("T", bound="DataclassInstance")


def load_object(line: str | bytes) -> JSONObject | None:
    """The JSON object on one line, or ``None`` when the line is blank, plain text or not an object."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as restic writes it (nanoseconds, ``Z`` or an offset), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None


def _number(value: object) -> int | float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


def _strs(value: object) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "int": lambda v: int(_number(v) or 0),
    "int | None": lambda v: None if _number(v) is None else int(_number(v) or 0),
    "float": lambda v: float(_number(v) or 0.0),
    "bool": lambda v: v is True,
    "str": lambda v: v if isinstance(v, str) else "",
    "str | None": lambda v: v if isinstance(v, str) and v else None,
    "tuple[str, ...]": _strs,
    "datetime | None": parse_time,
}


def _build(cls: type[T], obj: JSONObject, **given: object) -> T:
    """An instance of dataclass ``cls`` read from ``obj``: each field from the key of the same name."""
    values = dict(given)
    for field in dataclasses.fields(cls):
        if field.name not in values:
            values[field.name] = _CONVERTERS[str(field.type)](obj.get(field.name))
    factory: Callable[..., T] = cls
    return factory(**values)


# --- JSON lines: backup, restore, check and the diagnostics on stderr ------------------------------


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """A ``backup`` progress report (``message_type: status``)."""

    percent_done: float
    total_files: int
    files_done: int
    total_bytes: int
    bytes_done: int
    seconds_elapsed: int
    seconds_remaining: int
    error_count: int
    current_files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """Statistics of the backup that wrote a snapshot (stored in the snapshot since restic 0.17)."""

    files_new: int
    files_changed: int
    files_unmodified: int
    dirs_new: int
    dirs_changed: int
    dirs_unmodified: int
    data_blobs: int
    tree_blobs: int
    data_added: int
    data_added_packed: int | None
    total_files_processed: int
    total_bytes_processed: int
    backup_start: datetime | None
    backup_end: datetime | None


@dataclass(frozen=True, slots=True)
class BackupSummary(SnapshotSummary):
    """The last line of a ``backup``: the snapshot's statistics, its ID (absent on a dry run), duration."""

    total_duration: float
    snapshot_id: str | None
    dry_run: bool


@dataclass(frozen=True, slots=True)
class ItemError:
    """An ``error`` line (on stderr): ``item`` is usually the path restic could not read or write."""

    message: str
    during: str
    item: str


@dataclass(frozen=True, slots=True)
class ExitError:
    """The final ``exit_error`` line restic prints on stderr before exiting on a fatal error."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class RestoreCounts:
    """How far a ``restore`` got: the files and bytes it restored, skipped and deleted."""

    seconds_elapsed: int
    total_files: int
    files_restored: int
    files_skipped: int
    files_deleted: int
    total_bytes: int
    bytes_restored: int
    bytes_skipped: int


@dataclass(frozen=True, slots=True)
class RestoreStatus(RestoreCounts):
    """A ``restore`` progress report (``message_type: status``): the counts so far and the fraction done."""

    percent_done: float


@dataclass(frozen=True, slots=True)
class RestoreSummary(RestoreCounts):
    """The last line of a successful ``restore``: the final counts."""


@dataclass(frozen=True, slots=True)
class RestoreVerboseStatus:
    """A per-item ``restore`` report (``--verbose=2``): restored, updated, unchanged or deleted."""

    action: str
    item: str
    size: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of ``check --json``: ``ok`` unless restic found errors in the repository."""

    ok: bool
    num_errors: int
    broken_packs: tuple[str, ...]
    suggest_repair_index: bool
    suggest_prune: bool
    errors: tuple[str, ...] = ()


BackupMessage: TypeAlias = BackupStatus | BackupSummary | ItemError | ExitError
RestoreMessage: TypeAlias = RestoreStatus | RestoreSummary | RestoreVerboseStatus | ItemError | ExitError


def _diagnostic(obj: JSONObject) -> ItemError | ExitError | None:
    kind = obj.get("message_type")
    if kind == "exit_error":
        return _build(ExitError, obj)
    if kind == "error":
        # backup and restore nest the text in error.message; check puts it in message.
        nested = obj.get("error")
        message = nested.get("message") if isinstance(nested, dict) else obj.get("message")
        return _build(ItemError, obj, message=message if isinstance(message, str) else "")
    return None


@dataclass(frozen=True, slots=True)
class BackendRetry:
    """restic failed a backend operation and retries it (a plain stderr line, never JSON):
    ``Save(<data/a51d594f4a>) returned error, retrying after 958.7ms: Post "...": connection refused``."""

    operation: str
    error: str


@dataclass(frozen=True, slots=True)
class BackendRecovered:
    """A retried backend operation went through: ``Save(<data/…>) operation successful after 4 retries``."""

    operation: str


BackendNotice: TypeAlias = BackendRetry | BackendRecovered

_RETRY = re.compile(r"^(?P<op>\w+\(.*?\)) returned error, retrying after [^:]+: (?P<error>.*)$")
_RECOVERED = re.compile(r"^(?P<op>\w+\(.*?\)) operation successful after \d+ retries")


def parse_backend_notice(line: str) -> BackendNotice | None:
    """A stderr line saying restic retries a backend operation, or that a retried one succeeded."""
    text = line.strip()
    if match := _RETRY.match(text):
        return BackendRetry(match["op"], match["error"])
    if match := _RECOVERED.match(text):
        return BackendRecovered(match["op"])
    return None


def parse_diagnostic(line: str | bytes) -> ItemError | ExitError | None:
    """An ``error`` or ``exit_error`` line (restic writes both to stderr), else ``None``."""
    obj = load_object(line)
    return _diagnostic(obj) if obj is not None else None


_BACKUP_TYPES: dict[str, type[BackupStatus | BackupSummary]] = {
    "status": BackupStatus,
    "summary": BackupSummary,
}
_RESTORE_TYPES: dict[str, type[RestoreStatus | RestoreSummary | RestoreVerboseStatus]] = {
    "status": RestoreStatus,
    "summary": RestoreSummary,
    "verbose_status": RestoreVerboseStatus,
}


def _parse_message(line: str | bytes, types: Mapping[str, type[T]]) -> T | ItemError | ExitError | None:
    """One line of a ``--json`` stream typed by ``types``, else a diagnostic, else ``None``."""
    obj = load_object(line)
    if obj is None:
        return None
    cls = types.get(str(obj.get("message_type")))
    return _build(cls, obj) if cls is not None else _diagnostic(obj)


def parse_backup_message(line: str | bytes) -> BackupMessage | None:
    """One line of ``backup --json`` output as a typed message, or ``None`` if unknown or not JSON."""
    return _parse_message(line, _BACKUP_TYPES)


def parse_restore_message(line: str | bytes) -> RestoreMessage | None:
    """One line of ``restore --json`` output as a typed message, or ``None`` if unknown or not JSON."""
    return _parse_message(line, _RESTORE_TYPES)


def parse_check_summary(line: str | bytes) -> CheckResult | None:
    """The ``summary`` line of ``check --json`` (``errors`` stays empty: they come on stderr)."""
    obj = load_object(line)
    if obj is None or obj.get("message_type") != "summary":
        return None
    num_errors = _CONVERTERS["int"](obj.get("num_errors"))
    return _build(CheckResult, obj, ok=num_errors == 0, errors=())


# --- single documents: snapshots, forget, stats, locks, init, version ------------------------------


def _first_document(text: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """The whole text as a JSON document of ``kind``, else the first line that is one, else ``None``."""
    candidates = [text, *text.splitlines()]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, kind):
            return value
    return None


def _objects(value: object) -> list[JSONObject]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot as ``snapshots --json`` and ``forget --json`` describe it."""

    id: str
    short_id: str
    time: datetime | None
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    tree: str
    parent: str | None
    username: str
    uid: int
    gid: int
    excludes: tuple[str, ...]
    program_version: str
    summary: SnapshotSummary | None


def _snapshot(obj: JSONObject) -> Snapshot:
    summary = obj.get("summary")
    ident = obj.get("id") if isinstance(obj.get("id"), str) else ""
    return _build(
        Snapshot,
        obj,
        short_id=obj.get("short_id") or str(ident)[:8],
        summary=_build(SnapshotSummary, summary) if isinstance(summary, dict) else None,
    )


def parse_snapshots(text: str) -> list[Snapshot]:
    """The output of ``snapshots --json`` (a JSON array), oldest first as restic prints it."""
    return [_snapshot(item) for item in _objects(_first_document(text, list))]


@dataclass(frozen=True, slots=True)
class KeepReason:
    """Why ``forget`` kept a snapshot, e.g. ``matches=("last snapshot",)``."""

    snapshot_id: str
    matches: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForgetGroup:
    """One snapshot group of ``forget --json``: what it kept and what it removed."""

    host: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]
    reasons: tuple[KeepReason, ...]


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """The groups of a ``forget --json`` run (empty when restic printed no JSON)."""

    groups: tuple[ForgetGroup, ...]

    @property
    def kept(self) -> tuple[Snapshot, ...]:
        """Every snapshot kept, over all groups."""
        return tuple(snap for group in self.groups for snap in group.keep)

    @property
    def removed(self) -> tuple[Snapshot, ...]:
        """Every snapshot removed (or, with ``--dry-run``, that would be), over all groups."""
        return tuple(snap for group in self.groups for snap in group.remove)

    @property
    def removed_count(self) -> int:
        """How many snapshots were removed."""
        return len(self.removed)


def _keep_reason(obj: JSONObject) -> KeepReason:
    snap = obj.get("snapshot")
    ident = snap.get("id") if isinstance(snap, dict) else None
    return _build(KeepReason, obj, snapshot_id=ident if isinstance(ident, str) else "")


def parse_forget(text: str) -> ForgetResult:
    """The output of ``forget --json``; prune's plain text, mixed in with ``--prune``, is skipped."""
    groups = tuple(
        _build(
            ForgetGroup,
            obj,
            keep=tuple(_snapshot(s) for s in _objects(obj.get("keep"))),
            remove=tuple(_snapshot(s) for s in _objects(obj.get("remove"))),
            reasons=tuple(_keep_reason(r) for r in _objects(obj.get("reasons"))),
        )
        for obj in _objects(_first_document(text, list))
    )
    return ForgetResult(groups=groups)


@dataclass(frozen=True, slots=True)
class RepoStats:
    """``stats --json``: in ``raw-data`` mode the stored size, in ``restore-size`` mode the restorable one."""

    total_size: int
    total_file_count: int
    total_blob_count: int
    snapshots_count: int
    total_uncompressed_size: int
    compression_ratio: float
    compression_progress: float
    compression_space_saving: float


def parse_stats(text: str) -> RepoStats:
    """The output of ``stats --json`` (any mode; fields a mode does not print read as 0)."""
    return _build(RepoStats, _first_document(text, dict) or {})


@dataclass(frozen=True, slots=True)
class Lock:
    """A repository lock (``cat lock ID --json``): who holds it, since when, and how."""

    id: str
    time: datetime | None
    exclusive: bool
    hostname: str
    username: str
    pid: int
    uid: int
    gid: int


def parse_lock(text: str, lock_id: str) -> Lock:
    """The output of ``cat lock ID --json`` (a multi-line JSON object)."""
    return _build(Lock, _first_document(text, dict) or {}, id=lock_id)


_ID = re.compile(r"^[0-9a-f]{64}$")


def parse_ids(text: str) -> list[str]:
    """The IDs ``list locks`` (or ``list snapshots``, ...) prints, one a line: it has no JSON form."""
    return [line.strip() for line in text.splitlines() if _ID.match(line.strip())]


def parse_init(text: str) -> str:
    """The repository ID from ``init --json`` (``message_type: initialized``), or ``""``."""
    for line in text.splitlines():
        obj = load_object(line)
        if obj is not None and obj.get("message_type") == "initialized" and isinstance(obj.get("id"), str):
            return str(obj["id"])
    return ""


@dataclass(frozen=True, slots=True)
class ResticVersion:
    """``restic version``: the version string and its numeric ``(major, minor, patch)``."""

    version: str
    number: tuple[int, int, int]
    go_version: str = ""
    go_os: str = ""
    go_arch: str = ""


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> ResticVersion | None:
    """``restic version --json``, or the text ``restic 0.18.1 compiled with go1.24 on linux/amd64``."""
    obj = _first_document(text, dict) or {}
    raw = obj.get("version") if isinstance(obj.get("version"), str) else text
    match = _VERSION.search(str(raw))
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    extra = {key: str(obj.get(key) or "") for key in ("go_version", "go_os", "go_arch")}
    return ResticVersion(version=match.group(0), number=(major, minor, patch), **extra)
