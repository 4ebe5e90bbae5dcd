"""Durations as Stash's status fields hold them ("39s", "1m2.5s", restic's "1:02"), and back to seconds.

Stash writes a session's and a host's duration as Go prints a ``time.Duration``; restic writes a
snapshot's ``processingTime`` as a clock (``m:ss`` or ``h:mm:ss``); ``spec.timeOut`` is a Go duration.
``format_duration`` writes the Go form, rounded as Stash's status shows it; ``parse_duration`` reads
all three forms (and plain seconds), e.g. for the metrics and for enforcing a ``timeOut``.

A duration a user writes in a spec (``timeOut``, ``retryConfig.delay``, a schedule's ``@every``) is what
Stash decodes with Go's ``time.ParseDuration`` and nothing else: :func:`parse_go_duration` reads exactly
that syntax, :data:`GO_DURATION_PATTERN` is the same syntax as a regular expression (RE2 and Python alike)
for the CRDs' rules, and :func:`go_duration_problem` words a refusal naming the field.
"""

from __future__ import annotations

import re
from typing import Final

_GO_UNITS: Final[dict[str, float]] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go writes the micro sign
    "μs": 1e-6,  # and accepts the Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_CLOCK: Final = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2})$")
_NUMBER: Final = re.compile(r"^\d+(?:\.\d+)?$")

GO_DURATION_PATTERN: Final = r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"
"""Go's ``time.ParseDuration`` syntax: a sign, then ``0`` or numbers each with a unit (``1h30m``, ``.5s``)."""
_GO_DURATION: Final = re.compile(GO_DURATION_PATTERN)
_GO_MAX_NANOSECONDS: Final = 2**63 - 1
GO_DURATION_EXAMPLES: Final = "a number and a unit (ns, us, ms, s, m, h), e.g. 30s, 5m or 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in a duration as Stash's status fields hold them.

    Accepts Go durations (``"1m2.5s"``, ``"4h0m0s"``, ``"350ms"``: session and host durations),
    restic's clock form (``"1:02"``, ``"1:02:03"``: a snapshot's ``processingTime``) and plain seconds
    (``"12"``, ``"12.5"``). Raises ValueError on anything else.
    """
    value = text.strip()
    if _NUMBER.match(value):
        return float(value)
    if clock := _CLOCK.match(value):
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    negative = value.startswith("-")
    body = value[1:] if value[:1] in ("+", "-") else value
    total, position = 0.0, 0
    for part in _GO_PART.finditer(body):
        if part.start() != position:
            break
        total += float(part[1]) * _GO_UNITS[part[2]]
        position = part.end()
    if not body or position != len(body):
        raise ValueError(f"not a duration: {text!r} (expected e.g. '1m2.5s', '1:02' or '12')")
    return -total if negative else total


def parse_go_duration(text: str) -> float:
    """Seconds in ``text`` read as Go's ``time.ParseDuration`` reads it; ValueError for anything Go refuses
    (no unit, a space, an unknown unit, more than about 292 years)."""
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(f"not a Go duration: {text!r} (expected {GO_DURATION_EXAMPLES})")
    sign = -1 if text.startswith("-") else 1
    nanoseconds = 0.0
    for part in _GO_PART.finditer(text):
        nanoseconds += float(part[1]) * _GO_UNITS[part[2]] * 1e9
    if nanoseconds > _GO_MAX_NANOSECONDS:
        raise ValueError(f"not a Go duration: {text!r} is longer than Go's longest (about 292 years)")
    return sign * nanoseconds / 1e9


def go_duration_problem(field: str, text: str | None, *, positive: bool) -> str | None:
    """What is wrong with the spec's Go duration ``text`` at ``field`` (None when it is fine or unset): not
    Go's syntax, negative, or (when ``positive``) zero."""
    if text is None:
        return None
    try:
        seconds = parse_go_duration(text)
    except ValueError as exc:
        return f"{field}: {exc}"
    if seconds < 0 or (positive and seconds == 0):
        bound = "longer than 0s" if positive else "0s or longer"
        return f"{field}: {text!r} must be {bound}"
    return None


def format_duration(seconds: float) -> str:
    """A duration as Go prints one, rounded as Stash's status fields show it: whole seconds (milliseconds
    below one second), e.g. 850ms, 39s, 2m5s, 1h0m3s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return format_whole_seconds(seconds)


def format_whole_seconds(seconds: float) -> str:
    """A duration rounded to whole seconds as Go prints one: ``0s``, ``45s``, ``1m5s``, ``2h0m1s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
