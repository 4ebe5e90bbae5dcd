"""``spec.retryConfig``: whether, when and how a failed BackupSession is retried: pure.

As Stash does it: a session made for a configuration whose ``retryConfig.maxRetry`` is N starts with
``spec.retryLeft: N`` (:func:`stashlet.api.sessions.build_session`). When such a session fails with
retries left, the operator waits ``retryConfig.delay`` (none: not at all) from when it saw the failure,
then makes a new session for the configuration with ``retryLeft`` one less, annotated
``stash.appscode.com/retry-of: <the failed session>``. The chain ends when a session succeeds or
``retryLeft`` reaches 0. A paused or deleted configuration is not retried. An event on the failed session
names its retry.

:func:`stashlet.operator.backup.retry.make_retry` does the API calls for the controller.
"""

from __future__ import annotations

from dataclasses import dataclass

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase
from stashlet.api.durations import parse_go_duration
from stashlet.api.sessions import build_session


@dataclass(frozen=True)
class Retry:
    """The retry of one failed session."""

    failed: str
    """The failed session's name."""
    retry_left: int
    """``spec.retryLeft`` of the retry: one less than the failed session's."""
    due: float
    """Unix time from which the retry may be made."""


def delay_seconds(config: BackupConfiguration) -> float:
    """``spec.retryConfig.delay`` in seconds (0 when unset); ValueError when it is not a Go duration."""
    retry = config.spec.retry_config
    if retry is None or not retry.delay:
        return 0.0
    seconds = parse_go_duration(retry.delay)
    if seconds < 0:
        raise ValueError(f"a negative delay: {retry.delay!r}")
    return seconds


def delay_problems(config: BackupConfiguration) -> list[str]:
    """A problem naming ``spec.retryConfig.delay`` when it is not a duration."""
    try:
        delay_seconds(config)
    except ValueError as exc:
        return [f"spec.retryConfig.delay: {exc} (write it as a Go duration, e.g. 30s or 5m)"]
    return []


def plan_retry(session: BackupSession, config: BackupConfiguration, failed_at: float) -> Retry | None:
    """The retry of ``session`` (which failed at ``failed_at``), or None when it is not to be retried."""
    phase = session.status.phase if session.status else None
    left = session.spec.retry_left or 0
    if phase != BackupSessionPhase.FAILED or left <= 0 or config.spec.paused:
        return None
    return Retry(session.metadata.name or "", left - 1, failed_at + delay_seconds(config))


def is_retry_of(session: BackupSession, failed: str) -> bool:
    """Whether ``session`` is the retry of the session named ``failed``."""
    return (session.metadata.annotations or {}).get(names.ANNOTATION_RETRY_OF) == failed


def retry_session(config: BackupConfiguration, retry: Retry, unix: int) -> BackupSession:
    """The session that retries ``retry.failed``, named after ``unix`` seconds like any other."""
    session = build_session(config, unix, annotations={names.ANNOTATION_RETRY_OF: retry.failed})
    session.spec.retry_left = retry.retry_left
    return session
