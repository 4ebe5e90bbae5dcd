"""The benches' pure helpers: percentiles, the agent's JSON log lines, the machine's state, tables.

Nothing here starts a process or talks to a server; ``tests/bench`` checks it in the fast lane.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NA = "n/a"

SESSION_COST_MSG = "backup session host finished"
"""The agent's log line that accounts for one host's session (fields in :class:`SessionCost`)."""

RESTIC_START_PREFIX = "running "
RESTIC_START_LOGGER = "stashlet.agent.restic.runner"
"""The agent's debug log line written as it spawns a restic process: "running <argv>" from the restic
runner's logger (other loggers' "running ..." lines, e.g. "running restic forget", say why, not when)."""


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, linearly interpolated between the closest ranks
    (numpy's default): p50 of an even count is the mean of the middle two, p100 the largest."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_or_none(values: Iterable[float | None]) -> float | None:
    """The median of the values that are known; None when none is."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(known) if known else None


# --- the agent's log -------------------------------------------------------------------------------


def log_entries(text: str) -> list[dict[str, Any]]:
    """The JSON objects among ``text``'s lines (anything else, e.g. a traceback, is skipped)."""
    entries = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def entry_time(entry: dict[str, Any]) -> float:
    """The entry's ``time`` field as a Unix time (the agent writes ISO 8601 with its offset)."""
    return dt.datetime.fromisoformat(str(entry["time"])).timestamp()


def first_restic_start(entries: Iterable[dict[str, Any]], after: float) -> dict[str, Any] | None:
    """The restic runner's first "running <argv>" line stamped at or after ``after`` (a Unix time); None
    without one (the agent logs it at debug level only)."""
    for entry in entries:
        if (
            entry.get("logger") == RESTIC_START_LOGGER
            and str(entry.get("msg", "")).startswith(RESTIC_START_PREFIX)
            and entry_time(entry) >= after
        ):
            return entry
    return None


_VALUE_OPTIONS = frozenset(
    {"-o", "--option", "-r", "--repo", "--repository-file", "--cache-dir", "-p", "--password-file",
     "--password-command", "--key-hint", "--cacert", "--tls-client-cert", "--limit-upload",
     "--limit-download", "--pack-size", "--compression", "--retry-lock", "--stuck-request-timeout"}
)  # fmt: skip
"""restic's global options that take their value as the next argument (when not written with ``=``)."""


def restic_subcommand(argv: Sequence[str]) -> str:
    """The subcommand of a restic command line (``argv[0]`` is restic): the first argument that is
    neither a global option nor an option's value; "" without one."""
    words = iter(argv[1:])
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def restic_command(entry: dict[str, Any]) -> str:
    """The restic subcommand of a "running <argv>" line."""
    return restic_subcommand(str(entry.get("msg", ""))[len(RESTIC_START_PREFIX) :].split())


@dataclass(frozen=True)
class SessionCost:
    """What the agent says one host's session cost (its "backup session host finished" line)."""

    session_seconds: float | None
    restic_seconds: float | None
    restic_processes: int | None
    own_seconds: float | None
    restic_max_rss_kib: int | None


def _number(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def session_cost(entries: Iterable[dict[str, Any]], session: str) -> SessionCost | None:
    """The cost line of ``session`` (its name, or ``namespace/name`` as the agent logs it); None when
    the agent wrote none. A field the line lacks is None, never a guess."""
    for entry in entries:
        if entry.get("msg") != SESSION_COST_MSG:
            continue
        logged = str(entry.get("session", ""))
        if logged != session and logged.rsplit("/", 1)[-1] != session:
            continue
        processes = _number(entry, "restic_processes")
        rss = _number(entry, "restic_max_rss_kib")
        return SessionCost(
            session_seconds=_number(entry, "session_seconds"),
            restic_seconds=_number(entry, "restic_seconds"),
            restic_processes=int(processes) if processes is not None else None,
            own_seconds=_number(entry, "own_seconds"),
            restic_max_rss_kib=int(rss) if rss is not None else None,
        )
    return None


# --- the machine -------------------------------------------------------------------------------------


def proc_status_kib(status_text: str, field: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of a /proc/<pid>/status text; None when absent."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def process_kib(pid: int | str, field: str) -> int | None:
    """``field`` of /proc/<pid>/status in KiB; None when the process or the field is gone."""
    try:
        return proc_status_kib(Path(f"/proc/{pid}/status").read_text(), field)
    except OSError:
        return None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- other benches' printed figures ----------------------------------------------------------------

_OPERATOR_LINES = {
    "count": r"^configurations\s+(\d+)",
    "all_ready_s": r"^all Ready\s+([\d.]+) s",
    "ready": r"^all Ready\s+[\d.]+ s\s+(\d+)/",
    "rolled_once": r"^rolled exactly once\s+(\d+)/",
    "peak_rss_mib": r"^operator peak RSS\s+([\d.]+) MiB",
    "cpu_to_ready_s": r"^operator CPU to Ready\s+([\d.]+) s",
}


def operator_ready_figures(output: str) -> dict[str, float | None]:
    """The figures bench/operator_ready.py prints (it writes no JSON): None for a line not found."""
    found: dict[str, float | None] = {}
    for key, pattern in _OPERATOR_LINES.items():
        match = re.search(pattern, output, re.MULTILINE)
        found[key] = float(match.group(1)) if match else None
    return found


# --- formatting ---------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    """``value`` formatted, with its unit; ``n/a`` when unknown (None or NaN), never a made-up figure."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    return f"{value:{spec}}{unit}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is unknown or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with its columns padded to line up in a terminal too."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells for {len(headers)} columns")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "| " + " | ".join("-" * w for w in widths) + " |", *(line(r) for r in rows)]
    )
