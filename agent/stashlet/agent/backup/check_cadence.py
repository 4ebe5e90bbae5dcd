"""When ``restic check`` runs on a Repository: its own cadence, not every session; pure.

A Repository says how often with the annotation ``stash.appscode.com/check-interval`` (a Go duration,
default :data:`DEFAULT_CHECK_INTERVAL`, ``0s`` after every backup) and whether the check also reads
data with ``stash.appscode.com/check-read-data-subset`` (restic's ``--read-data-subset``: ``n/t``,
``x%`` or a size like ``500M``). A check is due when the Repository's ``status.lastCheckTime`` (written
when a check reached its verdict, by whichever agent ran it) is unset or at least an interval old, so
due-ness survives agent restarts and is shared by every agent backing up into the Repository.

A value that is not one of those is refused with :class:`CheckSettingsRefused`, naming the Repository
and the annotation; the check is then reported not run (never silently run with other settings).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput
from stashlet.api.durations import parse_duration
from stashlet.api.names import ANNOTATION_CHECK_INTERVAL, ANNOTATION_CHECK_READ_DATA_SUBSET
from stashlet.api.repository import Repository

DEFAULT_CHECK_INTERVAL = 24 * 3600.0
"""Seconds between two checks of a Repository when it does not say (once a day)."""

_PART = re.compile(r"^(\d+)/(\d+)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_SIZE = re.compile(r"^\d+[kKmMgGtT]?$")


class CheckSettingsRefused(RefuseInput):
    """A Repository's check annotation holds a value restic or the agent cannot use."""

    reason = "InvalidCheckSettings"


@dataclass(frozen=True)
class CheckSettings:
    """How a Repository is checked: every ``interval`` seconds, reading ``read_data_subset`` of its data."""

    interval: float = DEFAULT_CHECK_INTERVAL
    read_data_subset: str | None = None


def check_settings(repo: Repository) -> CheckSettings:
    """The Repository's check settings from its annotations; CheckSettingsRefused names a bad one."""
    annotations = repo.metadata.annotations or {}
    where = f"Repository {repo.metadata.namespace}/{repo.metadata.name}"
    interval = DEFAULT_CHECK_INTERVAL
    raw_interval = annotations.get(ANNOTATION_CHECK_INTERVAL)
    if raw_interval is not None:
        interval = _interval(raw_interval, where)
    subset = annotations.get(ANNOTATION_CHECK_READ_DATA_SUBSET)
    if subset is not None:
        subset = _subset(subset, where)
    return CheckSettings(interval=interval, read_data_subset=subset)


def _interval(raw: str, where: str) -> float:
    problem = (
        f"{where}: annotation {ANNOTATION_CHECK_INTERVAL}={raw!r} is not a duration "
        "(a Go duration of 0s or more, e.g. 24h, 168h, 30m; 0s checks after every backup)"
    )
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise CheckSettingsRefused(problem) from exc
    if seconds < 0:
        raise CheckSettingsRefused(problem)
    return seconds


def _subset(raw: str, where: str) -> str:
    value = raw.strip()
    problem = (
        f"{where}: annotation {ANNOTATION_CHECK_READ_DATA_SUBSET}={raw!r} is not a subset restic reads "
        "(n/t with 1 <= n <= t, a percentage above 0 and at most 100 like 10%, or a size like 500M)"
    )
    if part := _PART.match(value):
        n, t = int(part[1]), int(part[2])
        if not 1 <= n <= t:
            raise CheckSettingsRefused(problem)
        return value
    if percent := _PERCENT.match(value):
        if not 0 < float(percent[1]) <= 100:
            raise CheckSettingsRefused(problem)
        return value
    if _SIZE.match(value) and int(value.rstrip("kKmMgGtT")) > 0:
        return value
    raise CheckSettingsRefused(problem)


def check_due(settings: CheckSettings, last_check: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a check is due at ``now``: never checked, or the last check is an interval old (a last
    check in the future, a clock gone back, counts as due: the status cannot be trusted then)."""
    if last_check is None:
        return True
    age = (now - last_check).total_seconds()
    return age < 0 or age >= settings.interval
