"""A restore drill's Job that ended without the drill's verdict: said where users look.

The drill's agent records every verdict itself (:mod:`stashlet.agent.drill.record`): the Repository's
condition ``RestoreDrillSucceeded`` and ``lastDrillTime``, an event on the BackupConfiguration. A drill whose
agent never got that far (its image could not be pulled, its pod was never scheduled, it ran past the Job's
``activeDeadlineSeconds``, the node was lost) would leave the last verdict standing, perhaps a success. So
when a drill Job (label ``stashlet.dev/restore-drill-of``) ends and the Repository's ``lastDrillTime`` is
older than the Job's start, the operator records the drill Failed: ``RestoreDrillSucceeded`` False with
reason ``RestoreDrillJobFailed``, its message naming the configuration, the Job and how the Job ended
(``DeadlineExceeded``, ``BackoffLimitExceeded``, or completed without a verdict), ``lastDrillTime`` now,
a Warning event ``RestoreDrillFailed`` on the configuration, and ``stash_restore_drill_success 0`` pushed
under the configuration's Pushgateway job with the labels the drill's agent uses
(:mod:`stashlet.operator.metrics`), so an alert on that gauge fires as it does for a drill that failed its
checks. A drill whose agent recorded its verdict is left as the agent wrote it; a Job seen again (a relist,
an operator restart) records nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Snapshotter
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository, RepositoryStatus
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import NotFound
from stashlet.operator import metrics
from stashlet.operator.core.apiclient import ApiClient, call_json
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions
from stashlet.operator.core.events import Events
from stashlet.operator.core.job_outcome import ended_job_verdict
from stashlet.operator.drills.cronjob import LABEL_DRILL_OF
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def job_started(job: dict[str, Any]) -> dt.datetime | None:
    """When the Job started (``status.startTime``, else its creation), None when it says neither."""
    stamp = (job.get("status") or {}).get("startTime") or (job.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def unreported_failure(job: dict[str, Any], last_drill: dt.datetime | None, configuration: str) -> str | None:
    """The message of a drill Job's end that its agent did not report: the Job ``job`` ended (failed, or
    completed without a verdict) and the Repository's ``lastDrillTime`` (``last_drill``) is older than its
    start. None while it runs, or when the agent recorded the drill. ``configuration``: ``namespace/name``."""
    namespace = str((job.get("metadata") or {}).get("namespace") or "")
    ended = ended_job_verdict(namespace, job)
    if ended is None:
        return None
    started = job_started(job)
    if last_drill is not None and (started is None or last_drill >= started.replace(microsecond=0)):
        return None
    return f"restore drill of BackupConfiguration {configuration} ended without a verdict: {ended.message}"


class UnreportedDrills:
    """Records the drills whose Jobs ended without their verdict (module docstring)."""

    def __init__(self, api: ApiClient, events: Events, settings: OperatorSettings) -> None:
        """Read Jobs and configurations, write Repository status and events, through ``api``; push to the
        ``settings``' Pushgateway."""
        self.stash = StashClient(api)
        self.batch = client.BatchV1Api(api)
        self.events = events
        self.settings = settings

    async def job_ended(self, namespace: str, job_name: str) -> None:
        """Record drill Job ``namespace/job_name``'s end as the drill's failure if its agent did not."""
        try:
            job: dict[str, Any] = await call_json(self.batch.read_namespaced_job, job_name, namespace)
            bc_name = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_DRILL_OF)
            if not bc_name:
                return
            bc = await self.stash.get(BackupConfiguration, namespace, bc_name)
        except NotFound:
            return
        ref = bc.spec.repository
        if ref is None or not ref.name:
            return
        repo_namespace = ref.namespace or namespace
        configuration = f"{namespace}/{bc_name}"
        failures: list[str] = []

        def mutate(repo: Repository) -> bool:
            status = repo.status or RepositoryStatus()
            message = unreported_failure(job, status.last_drill_time, configuration)
            failures[:] = [message] if message else []
            if message is None:
                return False
            now = now_utc()
            update = ConditionUpdate.false(
                ConditionType.RESTORE_DRILL_SUCCEEDED, ConditionReason.RESTORE_DRILL_JOB_FAILED, message
            )
            status.conditions = apply_conditions(status.conditions or [], [update], now=now, generation=None)
            status.last_drill_time = now
            repo.status = status
            return True

        try:
            await self.stash.update_status(Repository, repo_namespace, ref.name, mutate)
        except NotFound:
            return
        if not failures:
            return
        log.error(
            "restore drill failed: its job ended without a verdict",
            extra={
                "object": configuration,
                "job": f"{namespace}/{job_name}",
                "repository": f"{repo_namespace}/{ref.name}",
                "error": failures[0],
            },
        )
        event = agent_contract.DRILL_EVENT_FAILED
        await self.events.emit(bc, EventSpec("Warning", event, failures[0], names.COMPONENT_RESTORE_DRILL))
        labels = metrics.SessionLabels(
            invoker_kind=names.KIND_BACKUP_CONFIGURATION,
            invoker_name=bc_name,
            namespace=namespace,
            repository=ref.name,
            driver=str(bc.spec.driver or Snapshotter.RESTIC),
        )
        await metrics.push_failure(self.settings.pushgateway_url, labels, metrics.RESTORE_DRILL_SUCCESS)
