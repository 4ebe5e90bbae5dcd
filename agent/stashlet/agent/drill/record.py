"""Recording a restore drill's verdict where users look: the Repository's condition and status, an event on
the BackupConfiguration, and the metrics.

- Repository: condition ``RestoreDrillSucceeded`` (True with reason ``RestoreDrillPassed``; False with the
  first problem's reason: ``FileNotRestored``, ``FileMissing``, ``UnexpectedFile``, ``FileDiffers``,
  ``CommandFailed``, ...), its message naming the snapshots and the first problem; ``lastDrillTime``
  always, ``lastVerifiedSnapshot`` when the drill passed.
- BackupConfiguration: a Normal event ``RestoreDrillSucceeded`` or a Warning ``RestoreDrillFailed`` with the
  same message, from component "Restore Drill".
- Pushgateway: :mod:`stashlet.agent.drill.metrics`. A failed push is logged and recorded as a Warning event
  ``MetricsPushFailed`` on the configuration; it never changes the verdict.

Each part is attempted even when another fails (an unreachable API server still gets the metrics pushed).
"""

from __future__ import annotations

import logging
from typing import Any

from stashlet.agent.context import upsert_condition
from stashlet.agent.drill import verdict as v
from stashlet.agent.drill.metrics import drill_metrics, push_drill_metrics
from stashlet.agent.metrics.build import InvokerLabels
from stashlet.agent.metrics.push import MetricsPushFailed
from stashlet.api.repository import Repository, RepositoryStatus
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError
from stashlet.kube.events import EventRecorder, EventType

log = logging.getLogger(__name__)

EVENT_METRICS_PUSH_FAILED = "MetricsPushFailed"


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


async def record(
    stash: StashClient,
    events: EventRecorder,
    configuration: dict[str, Any] | None,
    verdict: v.Verdict,
    labels: InvokerLabels,
    pushgateway_url: str | None,
) -> None:
    """Write ``verdict`` to the Repository, the configuration's events (``configuration``: the object as
    read, None when it is gone) and the Pushgateway (when one is configured)."""
    level = logging.INFO if verdict.passed else logging.ERROR
    log.log(
        level,
        "restore drill passed" if verdict.passed else "restore drill failed",
        extra={
            "invoker": verdict.configuration,
            "repository": verdict.repository,
            "reason": verdict.reason,
            "snapshots": [s.short_id for s in verdict.snapshots],
            "files_checked": verdict.files_checked,
            "bytes_checked": verdict.bytes_checked,
            "seconds": round(verdict.seconds, 2),
            "problems": list(verdict.problems),
            "problem_count": verdict.problem_count,
        },
    )
    finished = now_utc()
    if verdict.repository:
        await _repository_status(stash, verdict, finished)
    if configuration is not None:
        kind: EventType = "Normal" if verdict.passed else "Warning"
        reason = v.EVENT_PASSED if verdict.passed else v.EVENT_FAILED
        await events.record(configuration, kind, reason, verdict.message)
    if pushgateway_url:
        try:
            job = await push_drill_metrics(pushgateway_url, labels, drill_metrics(labels, verdict, finished))
        except MetricsPushFailed as exc:
            log.warning(
                "drill metrics push failed", extra={"invoker": verdict.configuration, "error": str(exc)}
            )
            if configuration is not None:
                await events.record(configuration, "Warning", EVENT_METRICS_PUSH_FAILED, str(exc))
        else:
            log.info("drill metrics pushed", extra={"invoker": verdict.configuration, "job": job})


async def _repository_status(stash: StashClient, verdict: v.Verdict, finished: Any) -> None:
    namespace, name = _split(verdict.repository)
    newest = verdict.newest

    def mutate(repo: Repository) -> bool:
        status = repo.status or RepositoryStatus()
        status.conditions = upsert_condition(
            status.conditions, v.CONDITION_TYPE, verdict.passed, verdict.reason, verdict.message, finished
        )
        status.last_drill_time = finished
        if verdict.passed and newest is not None:
            status.last_verified_snapshot = newest.short_id
        repo.status = status
        return True

    try:
        await stash.update_status(Repository, namespace, name, mutate)
    except KubeError as exc:
        log.error(
            "could not record the drill on the Repository",
            extra={"invoker": verdict.configuration, "repository": verdict.repository, "error": exc.message},
        )
