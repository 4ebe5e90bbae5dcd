"""Which ended drill Jobs the operator records as failed drills: those whose agent left no verdict."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stashlet.operator.drills.unreported import job_started, unreported_failure

STARTED = "2026-12-05T03:00:04Z"
START = dt.datetime(2026, 12, 5, 3, 0, 4, tzinfo=dt.UTC)


def job(*conditions: dict[str, str], started: str | None = STARTED) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if started:
        status["startTime"] = started
    return {
        "metadata": {"name": "stash-drill-app-29412345", "namespace": "demo", "creationTimestamp": STARTED},
        "status": status,
    }


DEADLINE = {
    "type": "Failed",
    "status": "True",
    "reason": "DeadlineExceeded",
    "message": "Job was active longer than specified deadline",
}


def test_a_job_past_its_deadline_without_a_verdict_is_the_drills_failure_named() -> None:
    message = unreported_failure(job(DEADLINE), None, "demo/app")
    assert message == (
        "restore drill of BackupConfiguration demo/app ended without a verdict: "
        "Job demo/stash-drill-app-29412345 failed: DeadlineExceeded: "
        "Job was active longer than specified deadline"
    )


def test_an_older_verdict_does_not_count_for_this_job() -> None:
    a_week_before = START - dt.timedelta(days=7)
    assert unreported_failure(job(DEADLINE), a_week_before, "demo/app") is not None


def test_a_verdict_recorded_since_the_job_started_is_left_as_the_agent_wrote_it() -> None:
    assert unreported_failure(job(DEADLINE), START + dt.timedelta(minutes=2), "demo/app") is None
    # the same second as the start (lastDrillTime has whole seconds) counts as this run's
    assert unreported_failure(job(DEADLINE), START, "demo/app") is None


def test_a_running_job_says_nothing_yet() -> None:
    assert unreported_failure(job(), None, "demo/app") is None


def test_a_job_complete_without_a_verdict_is_a_failed_drill_too() -> None:
    complete = {"type": "Complete", "status": "True"}
    message = unreported_failure(job(complete), None, "demo/app")
    assert message is not None and "completed but its agent did not record the end" in message


def test_the_start_is_the_jobs_start_else_its_creation() -> None:
    assert job_started(job()) == START
    assert job_started(job(started=None)) == START
    assert job_started({"metadata": {}, "status": {}}) is None
