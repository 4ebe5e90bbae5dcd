"""When a cron schedule fires next (UTC, as the CronJob controller reads ``spec.schedule`` without a time
zone): pure. The schedule is one :func:`stashlet.api.schedules.schedule_problem` accepts; ``@every`` has
no fixed time (None)."""

from __future__ import annotations

import datetime as dt

from stashlet.api.schedules import schedule_problem

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_BOUNDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, _MONTHS), (0, 6, _DAYS))
_HORIZON = dt.timedelta(days=366 * 5)


def _number(text: str, names: tuple[str, ...], low: int) -> int:
    lowered = text.lower()
    return names.index(lowered) + low if lowered in names else int(text)


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is a star (``*``/``?``)."""
    values: set[int] = set()
    star = False
    for item in filter(None, text.split(",")):
        part, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if part in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        elif "-" in part:
            first, _, last = part.partition("-")
            start, end = _number(first, names, low), _number(last, names, low)
        else:
            start = _number(part, names, low)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def next_run(schedule: str | None, after: dt.datetime) -> dt.datetime | None:
    """The first minute after ``after`` the schedule fires at; None without one, or for ``@every``."""
    if not schedule or schedule_problem(schedule) or schedule.startswith("@every"):
        return None
    fields = _DESCRIPTORS.get(schedule, schedule).split()
    (minutes, _), (hours, _), (mdays, mday_star), (months, _), (wdays, wday_star) = (
        _field(text, low, high, names) for text, (low, high, names) in zip(fields, _BOUNDS, strict=True)
    )
    wdays = wdays | ({0} if 7 in wdays else set())
    when = after.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    limit = when + _HORIZON
    while when < limit:
        if when.month not in months:
            when = (when.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
            continue
        weekday = (when.weekday() + 1) % 7
        day_ok = (
            when.day in mdays and weekday in wdays
            if mday_star or wday_star
            else when.day in mdays or weekday in wdays
        )
        if not day_ok:
            when = when.replace(hour=0, minute=0) + dt.timedelta(days=1)
            continue
        if when.hour not in hours:
            when = when.replace(minute=0) + dt.timedelta(hours=1)
            continue
        if when.minute not in minutes:
            when += dt.timedelta(minutes=1)
            continue
        return when
    return None
