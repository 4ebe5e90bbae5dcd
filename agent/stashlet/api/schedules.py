"""A BackupConfiguration's ``spec.schedule`` judged as the CronJob controller judges it: pure.

The operator puts ``spec.schedule`` into the trigger CronJob as written, and the API server refuses a
CronJob whose schedule ``robfig/cron`` v3's ``ParseStandard`` refuses, or (when it is created) one that
holds ``TZ`` at all (``CRON_TZ=`` and ``TZ=`` prefixes: "use timeZone field instead").
:func:`schedule_problem` applies the same rules, so a configuration whose CronJob could never be made is
refused by name before anything is applied:

- a descriptor, exactly: ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
  ``@hourly``, or ``@every <Go duration>``;
- else exactly five fields split on white space (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
  ``jan``-``dec``, day of week 0-6 or ``sun``-``sat``, names in any case), each a comma-separated list
  (empty items are skipped) of ``*`` or ``?``, ``n``, ``a-b``, each with an optional ``/step`` (a step of
  at least 1; ``n/step`` runs from n to the field's maximum). Numbers are Go's ``strconv.Atoi``: an
  optional sign, ASCII digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from stashlet.api.durations import parse_go_duration

DESCRIPTORS: Final = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
EVERY: Final = "@every "
_ATOI: Final = re.compile(r"[+-]?[0-9]+")
_INT64_MAX: Final = 2**63 - 1
_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS: Final = (
    _Bounds("minute", 0, 59, {}),
    _Bounds("hour", 0, 23, {}),
    _Bounds("day of month", 1, 31, {}),
    _Bounds("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    _Bounds("day of week", 0, 6, {name: i for i, name in enumerate(_DAYS)}),
)


class ScheduleError(ValueError):
    """The schedule is not one the CronJob controller accepts."""


def schedule_problem(schedule: str | None, field: str = "spec.schedule") -> str | None:
    """What the CronJob controller would refuse in ``schedule``, naming ``field``; None when it is fine or
    empty (an empty schedule makes no CronJob: sessions are made on demand)."""
    if not schedule:
        return None
    try:
        check_schedule(schedule)
    except ScheduleError as exc:
        return f"{field}: {schedule!r} is not a schedule the CronJob controller accepts: {exc}"
    return None


def check_schedule(schedule: str) -> None:
    """Raise :class:`ScheduleError` saying why the CronJob controller would refuse ``schedule``."""
    if "TZ" in schedule:
        raise ScheduleError("a CronJob takes no TZ or CRON_TZ in its schedule (write the time in UTC)")
    if schedule.startswith("@"):
        _check_descriptor(schedule)
        return
    fields = schedule.split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(
            f"expected exactly 5 fields (minute, hour, day of month, month, day of week), found {len(fields)}"
        )
    for text, bounds in zip(fields, _FIELDS, strict=True):
        for item in (part for part in text.split(",") if part):
            _check_range(item, bounds)


def _check_descriptor(schedule: str) -> None:
    if schedule in DESCRIPTORS:
        return
    if schedule.startswith(EVERY):
        try:
            parse_go_duration(schedule[len(EVERY) :])
        except ValueError as exc:
            raise ScheduleError(f"@every takes a Go duration: {exc}") from None
        return
    raise ScheduleError(
        f"unknown descriptor; use one of {', '.join(sorted(DESCRIPTORS))} or '@every <duration>'"
    )


def _check_range(item: str, bounds: _Bounds) -> None:
    """One ``range[/step]`` item of a field, as robfig/cron's ``getRange`` reads it."""
    range_and_step = item.split("/")
    low_and_high = range_and_step[0].split("-")
    if len(range_and_step) > 2:
        raise ScheduleError(f"{bounds.name} {item!r}: too many slashes")
    if low_and_high[0] in ("*", "?"):
        start, end = bounds.low, bounds.high
    else:
        if len(low_and_high) > 2:
            raise ScheduleError(f"{bounds.name} {item!r}: too many hyphens")
        start = _number(low_and_high[0], bounds, item)
        end = _number(low_and_high[1], bounds, item) if len(low_and_high) == 2 else start
    step = 1
    if len(range_and_step) == 2:
        step = _number(range_and_step[1], None, item)
        if len(low_and_high) == 1:
            end = bounds.high
    if start < bounds.low or end > bounds.high:
        raise ScheduleError(f"{bounds.name} {item!r}: outside {bounds.low}-{bounds.high}")
    if start > end:
        raise ScheduleError(f"{bounds.name} {item!r}: the range begins after it ends")
    if step == 0:
        raise ScheduleError(f"{bounds.name} {item!r}: the step must be at least 1")


def _number(text: str, bounds: _Bounds | None, item: str) -> int:
    """A name of ``bounds`` (any case) or a number as Go's ``strconv.Atoi`` reads it, not negative."""
    if bounds is not None and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    what = bounds.name if bounds is not None else "step"
    if not _ATOI.fullmatch(text) or abs(int(text)) > _INT64_MAX:
        raise ScheduleError(f"{what} {item!r}: {text!r} is not a number")
    value = int(text)
    if value < 0:
        raise ScheduleError(f"{what} {item!r}: negative numbers are not allowed")
    return value
