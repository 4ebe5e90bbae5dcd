"""When a schedule fires next, as the CronJob controller (robfig/cron) reads ``spec.schedule``."""

from __future__ import annotations

import datetime as dt

import pytest

from stashlet.kubectl_stash.next_run import next_run
from stashlet.kubectl_stash.tables import short_duration

NOW = dt.datetime(2026, 12, 5, 16, 3, 27, tzinfo=dt.UTC)  # a Saturday


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("*/5 * * * *", dt.datetime(2026, 12, 5, 16, 5, tzinfo=dt.UTC)),
        ("0 0 1 1 *", dt.datetime(2027, 1, 1, tzinfo=dt.UTC)),
        ("@daily", dt.datetime(2026, 12, 6, tzinfo=dt.UTC)),
        ("@hourly", dt.datetime(2026, 12, 5, 17, tzinfo=dt.UTC)),
        ("30 2 * * mon-fri", dt.datetime(2026, 12, 7, 2, 30, tzinfo=dt.UTC)),
        ("0 */4 * * *", dt.datetime(2026, 12, 5, 20, tzinfo=dt.UTC)),
        # day of month and day of week both restricted: either matches (Friday 11th before the 13th)
        ("0 0 13 * 5", dt.datetime(2026, 12, 11, tzinfo=dt.UTC)),
        # one of them a star: both must match (the next Friday the 13th)
        ("0 0 13 * *", dt.datetime(2026, 12, 13, tzinfo=dt.UTC)),
        ("0 0 29 feb *", dt.datetime(2028, 2, 29, tzinfo=dt.UTC)),
        ("4 16 5 dec *", dt.datetime(2026, 12, 5, 16, 4, tzinfo=dt.UTC)),
        ("3 16 5 dec *", dt.datetime(2027, 12, 5, 16, 3, tzinfo=dt.UTC)),
    ],
)
def test_next_run(schedule: str, expected: dt.datetime) -> None:
    assert next_run(schedule, NOW) == expected


@pytest.mark.parametrize("schedule", [None, "", "@every 1h", "61 * * * *", "0 0 31 2 *"])
def test_no_next_run(schedule: str | None) -> None:
    assert next_run(schedule, NOW) is None


def test_durations_read_as_kubectls() -> None:
    assert [short_duration(s) for s in (5, 119, 150, 600, 3700, 4 * 3600, 50 * 3600, 9 * 86400)] == [
        "5s",
        "119s",
        "2m30s",
        "10m",
        "61m",
        "4h",
        "2d2h",
        "9d",
    ]
