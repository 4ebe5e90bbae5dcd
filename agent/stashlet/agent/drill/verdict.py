"""A restore drill's verdict: what it restored, what it checked, and the first problems it found: pure.

The verdict travels as JSON from the drill's verify step to its report step (a file in the agent's
temporary volume, which the user's command container does not mount) and is what the Repository's
condition, the BackupConfiguration's event and the metrics say.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from stashlet.api import agent_contract
from stashlet.api.conditions import ConditionType

CONDITION_TYPE = ConditionType.RESTORE_DRILL_SUCCEEDED.value
REASON_PASSED = "RestoreDrillPassed"
REASON_FILE_MISSING = "FileMissing"
REASON_UNEXPECTED_FILE = "UnexpectedFile"
REASON_FILE_DIFFERS = "FileDiffers"
REASON_FILE_NOT_RESTORED = "FileNotRestored"
REASON_NO_SNAPSHOT = "NoSnapshot"
REASON_INVOKER_NOT_FOUND = "InvokerNotFound"
REASON_COMMAND_FAILED = "CommandFailed"
REASON_COMMAND_NOT_STARTED = "CommandNotStarted"
REASON_COMMAND_TIMED_OUT = "CommandTimedOut"
REASON_NO_VERDICT = "VerdictMissing"
EVENT_PASSED = agent_contract.DRILL_EVENT_PASSED
EVENT_FAILED = agent_contract.DRILL_EVENT_FAILED

PROBLEMS_KEPT = 5
"""How many problems a verdict names (the log has them all)."""
MAX_MESSAGE = 1500


@dataclass(frozen=True)
class DrilledSnapshot:
    """One snapshot a drill restored: its IDs, host, paths and time (RFC 3339)."""

    id: str
    short_id: str
    host: str
    paths: tuple[str, ...]
    time: str | None

    def describe(self) -> str:
        """``1a2b3c4d (host-0: /data)``."""
        return f"{self.short_id} ({self.host}: {', '.join(self.paths)})"


@dataclass(frozen=True)
class Verdict:
    """How one drill went; ``problems`` are the first mismatches, ``problem_count`` how many there were."""

    passed: bool
    reason: str
    message: str
    configuration: str
    """``namespace/name`` of the BackupConfiguration."""
    repository: str = ""
    """``namespace/name`` of its Repository (empty when it was never read)."""
    snapshots: tuple[DrilledSnapshot, ...] = ()
    files_checked: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    problems: tuple[str, ...] = field(default_factory=tuple)
    problem_count: int = 0

    @property
    def newest(self) -> DrilledSnapshot | None:
        """The newest snapshot restored (by time; the last listed when times are equal or missing)."""
        if not self.snapshots:
            return None
        return max(enumerate(self.snapshots), key=lambda pair: (pair[1].time or "", pair[0]))[1]

    def to_json(self) -> str:
        """The verdict as one JSON document."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        """The verdict :meth:`to_json` wrote; ValueError when it is not one."""
        raw: Any = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a drill verdict is a JSON object")  # noqa: TRY004 - bad input, as json.loads says
        snapshots = tuple(
            DrilledSnapshot(
                id=str(s["id"]),
                short_id=str(s["short_id"]),
                host=str(s["host"]),
                paths=tuple(str(p) for p in s["paths"]),
                time=s.get("time"),
            )
            for s in raw.get("snapshots") or []
        )
        return cls(
            passed=bool(raw["passed"]),
            reason=str(raw["reason"]),
            message=str(raw["message"]),
            configuration=str(raw["configuration"]),
            repository=str(raw.get("repository") or ""),
            snapshots=snapshots,
            files_checked=int(raw.get("files_checked") or 0),
            bytes_checked=int(raw.get("bytes_checked") or 0),
            seconds=float(raw.get("seconds") or 0.0),
            problems=tuple(str(p) for p in raw.get("problems") or []),
            problem_count=int(raw.get("problem_count") or 0),
        )

    def failed_after(self, reason: str, cause: str, seconds: float) -> Verdict:
        """This (passed) verdict failed afterwards for ``cause`` (the user's command), ``seconds`` in all."""
        message = shorten(f"{_drill(self.configuration)} failed: {cause} (after {self._restored()})")
        return replace(
            self,
            passed=False,
            reason=reason,
            message=message,
            seconds=seconds,
            problems=(cause,),
            problem_count=1,
        )

    def _restored(self) -> str:
        shown = ", ".join(s.describe() for s in self.snapshots) or "no snapshot"
        return f"snapshot {shown} restored and matched its listing, {self.files_checked} files"


def shorten(text: str) -> str:
    """``text`` cut to :data:`MAX_MESSAGE` characters."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _drill(configuration: str) -> str:
    return f"Restore drill of BackupConfiguration {configuration}"


def passed(
    configuration: str,
    repository: str,
    snapshots: Sequence[DrilledSnapshot],
    files: int,
    size: int,
    seconds: float,
) -> Verdict:
    """The verdict of a drill that found everything as backed up."""
    shown = ", ".join(s.describe() for s in snapshots)
    message = (
        f"{_drill(configuration)} passed: snapshot {shown} of Repository {repository} restored and matched "
        f"its listing ({files} files, {size} bytes checked)"
    )
    return Verdict(
        passed=True,
        reason=REASON_PASSED,
        message=shorten(message),
        configuration=configuration,
        repository=repository,
        snapshots=tuple(snapshots),
        files_checked=files,
        bytes_checked=size,
        seconds=seconds,
    )


def failed(
    configuration: str,
    reason: str,
    cause: str,
    *,
    repository: str = "",
    snapshots: Sequence[DrilledSnapshot] = (),
    problems: Sequence[str] = (),
    problem_count: int | None = None,
    files: int = 0,
    size: int = 0,
    seconds: float = 0.0,
) -> Verdict:
    """The verdict of a drill that found ``problems`` (or could not run, for ``cause``); ``problem_count``:
    how many there were when ``problems`` holds only the first of them."""
    count = len(problems) if problem_count is None else max(problem_count, len(problems))
    more = count - 1
    detail = f"{cause}" + (f" (and {more} more problems)" if more > 0 else "")
    return Verdict(
        passed=False,
        reason=reason,
        message=shorten(f"{_drill(configuration)} failed: {detail}"),
        configuration=configuration,
        repository=repository,
        snapshots=tuple(snapshots),
        files_checked=files,
        bytes_checked=size,
        seconds=seconds,
        problems=tuple(problems[:PROBLEMS_KEPT]) or (cause,),
        problem_count=max(count, 1),
    )
