"""A restore Job that ended without its agent saying so fails its host, and the restore once every host
has ended: async.

:meth:`RestoreJobFailures.job_ended` is called for a Job labelled with its RestoreSession
(:mod:`.restore_job`). When the Job failed (``BackoffLimitExceeded``; ``DeadlineExceeded`` from
``activeDeadlineSeconds``, set from ``spec.timeOut``) or completed while the host it plays has no final
entry, the host gets a ``Failed`` entry whose error names the Job and its reason
(:func:`stashlet.operator.core.job_outcome.ended_job_verdict`); once every host has a final entry the
session ends ``Failed`` with its duration. A Warning event with the reason goes on the RestoreSession and,
when the session ends, ``stash_restore_session_success 0`` to the Pushgateway
(:mod:`stashlet.operator.metrics`).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from kubernetes_asyncio import client

from stashlet.api import names, restore_jobs
from stashlet.api.common import Snapshotter
from stashlet.api.durations import format_duration
from stashlet.api.restoresession import (
    HostRestorePhase,
    HostRestoreStats,
    RestorePhase,
    RestoreSession,
    RestoreSessionStatus,
)
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import NotFound
from stashlet.operator import metrics
from stashlet.operator.core.apiclient import ApiClient, call_json
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.core.job_outcome import Verdict, ended_job_verdict
from stashlet.operator.restore import restore_job
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

ENDED: Final = frozenset(
    {RestorePhase.SUCCEEDED, RestorePhase.FAILED, RestorePhase.UNKNOWN, RestorePhase.INVALID}
)
HOST_DONE: Final = frozenset({HostRestorePhase.SUCCEEDED, HostRestorePhase.FAILED, HostRestorePhase.UNKNOWN})


def fail_host(rs: RestoreSession, host: str, verdict: Verdict) -> bool:
    """Record ``host`` Failed with ``verdict`` unless it has a final entry; end the session Failed once every
    host has one. True when the session ended now."""
    status = rs.status or RestoreSessionStatus()
    rs.status = status
    stats = [s for s in status.stats or [] if s.hostname != host]
    stats.append(
        HostRestoreStats(
            hostname=host, phase=HostRestorePhase.FAILED, error=f"{verdict.reason}: {verdict.message}"
        )
    )
    status.stats = stats
    total = status.total_hosts or restore_jobs.total_hosts(rs)
    status.total_hosts = total
    if sum(1 for s in stats if s.phase in HOST_DONE) < total:
        if status.phase in (None, RestorePhase.PENDING):
            status.phase = RestorePhase.RUNNING
        return False
    status.phase = RestorePhase.FAILED
    created = rs.metadata.creation_timestamp
    if created is not None:
        status.session_duration = format_duration(max(0.0, (now_utc() - created).total_seconds()))
    return True


class RestoreJobFailures:
    """Fails the hosts of restore Jobs that ended silently (module docstring)."""

    def __init__(self, api: ApiClient, events: Events, settings: OperatorSettings) -> None:
        """Read Jobs and write RestoreSessions through ``api``."""
        self.stash = StashClient(api)
        self.batch = client.BatchV1Api(api)
        self.events = events
        self.settings = settings

    async def job_ended(self, namespace: str, job_name: str) -> None:
        """Fail the host of restore Job ``namespace/job_name`` if it ended and its host has not."""
        try:
            job: dict[str, Any] = await call_json(self.batch.read_namespaced_job, job_name, namespace)
        except NotFound:
            return
        verdict = ended_job_verdict(namespace, job)
        rs_name = ((job.get("metadata") or {}).get("labels") or {}).get(names.LABEL_RESTORE_SESSION)
        if verdict is None or not rs_name:
            return
        try:
            rs = await self.stash.get(RestoreSession, namespace, rs_name)
        except NotFound:
            return
        host = next((h for h, j in restore_job.job_hosts(rs).items() if j == job_name), None)
        if host is None:
            return
        outcome: list[bool] = []

        def mutate(current: RestoreSession) -> bool:
            status = current.status
            if status is not None and status.phase in ENDED:
                return False
            entry = next((s for s in (status.stats if status else None) or [] if s.hostname == host), None)
            if entry is not None and entry.phase in HOST_DONE:
                return False
            outcome[:] = [fail_host(current, host, verdict)]
            return True

        updated = await self.stash.update_status(RestoreSession, namespace, rs_name, mutate)
        if not outcome:
            return
        log.warning(
            "restore host failed: its job ended without a result",
            extra={
                "object": f"{namespace}/{rs_name}",
                "host": host,
                "reason": verdict.reason,
                "error": verdict.message,
            },
        )
        spec = EventSpec(
            "Warning", verdict.reason, f"host {host}: {verdict.message}", names.COMPONENT_RESTORE_SESSION
        )
        await self.events.emit(updated, spec)
        if outcome[0]:
            repo = rs.spec.repository
            labels = metrics.SessionLabels(
                invoker_kind=names.KIND_RESTORE_SESSION,
                invoker_name=rs_name,
                namespace=namespace,
                repository=repo.name if repo and repo.name else "",
                driver=str(rs.spec.driver or Snapshotter.RESTIC),
            )
            await metrics.push_failure(self.settings.pushgateway_url, labels, metrics.RESTORE_SESSION_SUCCESS)
