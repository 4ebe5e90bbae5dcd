"""Output as kubectl prints it: a table with upper-case headers, columns three spaces apart, and
durations in kubectl's short form (``45s``, ``5m``, ``3h12m``, ``2d``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TextIO

NONE = "<none>"


def write_table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """``headers`` and ``rows`` aligned in columns; ``No resources found.``-style line when empty."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.write("   ".join(cells).rstrip() + "\n")


def short_duration(seconds: float) -> str:
    """A duration as kubectl shows an age (``duration.HumanDuration``)."""
    seconds = int(max(seconds, 0))
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def age(when: dt.datetime | None, now: dt.datetime) -> str:
    """How long ago ``when`` was, or ``<none>``."""
    return short_duration((now - when).total_seconds()) if when is not None else NONE


def human_bytes(size: int) -> str:
    """A size as restic prints one (``1.234 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.3f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
