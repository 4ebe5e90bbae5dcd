"""How a Job the operator made ended, as a reason for the session it ran: pure.

A Job whose agent ended its session says nothing here; one that ended while its session had not gives
the session's failure: the Job's ``Failed`` condition reason (``BackoffLimitExceeded``,
``DeadlineExceeded`` for ``activeDeadlineSeconds``, ...) with its message, or
``JobSucceededWithoutStatus`` when it completed without the agent recording the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from stashlet.api.durations import parse_duration

REASON_JOB_FAILED: Final = "JobFailed"
REASON_JOB_WITHOUT_STATUS: Final = "JobSucceededWithoutStatus"
DEADLINE_GRACE_SECONDS: Final = 30
"""Added to a ``spec.timeOut`` for a Job's ``activeDeadlineSeconds``: the agent enforces the timeout
itself and reports it; the Job's deadline ends a pod that never got to (it never started, or hangs)."""


@dataclass(frozen=True)
class Verdict:
    """Why the operator ended a session: a machine-readable reason and a message naming the objects."""

    reason: str
    message: str


def job_failure(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Job that failed (its ``Failed`` condition), else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("reason") or REASON_JOB_FAILED), str(condition.get("message") or "")
    return None


def job_complete(job: Mapping[str, Any]) -> bool:
    """True when the Job completed (its ``Complete`` condition)."""
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def ended_job_verdict(namespace: str, job: Mapping[str, Any]) -> Verdict | None:
    """Why a session whose Job ended is to be failed by the operator; None while the Job runs.

    Only for a session its agent did not end: a failed Job gives its reason, a completed one
    ``JobSucceededWithoutStatus``.
    """
    what = f"Job {namespace}/{(job.get('metadata') or {}).get('name')}"
    failure = job_failure(job)
    if failure is not None:
        reason, message = failure
        return Verdict(reason, f"{what} failed: {reason}" + (f": {message}" if message else ""))
    if job_complete(job):
        return Verdict(REASON_JOB_WITHOUT_STATUS, f"{what} completed but its agent did not record the end")
    return None


def active_deadline(time_out: str | None) -> int | None:
    """A Job's ``activeDeadlineSeconds`` for a ``spec.timeOut`` (a Go duration) of ``time_out``: None without
    one (or with one validation refuses elsewhere)."""
    if not time_out:
        return None
    try:
        seconds = parse_duration(time_out)
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return math.ceil(seconds) + DEADLINE_GRACE_SECONDS
