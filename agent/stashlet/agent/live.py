"""What the agent is doing right now, for ``GET /status``: one in-memory record, no secrets in it."""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stashlet.agent.restic import output as rj

_KEEP_RESULTS = 20


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LiveState:
    """The agent's view, updated by the session handlers and read by the HTTP API."""

    invoker: dict[str, str]
    target: dict[str, str]
    host: str
    mode: str
    watching: bool = False
    settings_loaded: bool = False
    leader: bool | None = None
    paused: bool | None = None
    next_schedule: str | None = None
    running: dict[str, Any] | None = None
    waiting_for_turn: dict[str, Any] | None = None
    results: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    repository: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    def start(self, session: str, operation: str) -> None:
        """A session began on this host."""
        self.running = {"session": session, "operation": operation, "startedAt": _now(), "progress": None}

    def waiting(self, session: str | None, lease: str = "") -> None:
        """This replica waits for ``lease`` to back up ``session`` (None: it no longer waits)."""
        self.waiting_for_turn = {"session": session, "lease": lease, "since": _now()} if session else None

    def progress(self, status: rj.BackupStatus | rj.RestoreStatus) -> None:
        """Restic reported progress."""
        if self.running is not None:
            self.running["progress"] = progress_dict(status)

    def finish(self, session: str, phase: str, detail: str = "", duration: str = "") -> None:
        """A session ended on this host (or was skipped)."""
        if self.running and self.running.get("session") == session:
            self.running = None
        self.results[session] = {"phase": phase, "detail": detail, "duration": duration, "finishedAt": _now()}
        self.results.move_to_end(session)
        while len(self.results) > _KEEP_RESULTS:
            self.results.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        """The JSON document served at /status."""
        return {
            "mode": self.mode,
            "invoker": self.invoker,
            "target": self.target,
            "host": self.host,
            "leader": self.leader,
            "paused": self.paused,
            "watching": self.watching,
            "nextSchedule": self.next_schedule,
            "running": self.running,
            "waitingForTurn": self.waiting_for_turn,
            "lastResults": dict(self.results),
            "repository": self.repository,
            "uptimeSeconds": round(time.monotonic() - self.started, 1),
        }


def progress_dict(status: rj.BackupStatus | rj.RestoreStatus) -> dict[str, Any]:
    """Restic's progress message as camelCase JSON, the fraction done to four places (0.01 %)."""
    fields = (
        "percent_done",
        "total_files",
        "files_done",
        "total_bytes",
        "bytes_done",
        "seconds_elapsed",
        "seconds_remaining",
        "error_count",
    )
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(status, name, None)
        if name == "percent_done" and value is not None:
            value = round(value, 4)
        if value is not None:
            head, *rest = name.split("_")
            out[head + "".join(part.title() for part in rest)] = value
    return out
