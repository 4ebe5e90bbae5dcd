"""Recording one host's restore: its entry in the RestoreSession's status, events, and the Stash metrics.

The host's entry and ``totalHosts`` are written with a conflict-safe status update; the phase,
``sessionDuration`` and ``RestoreCompleted`` follow from the entries (:mod:`.status`). Events:
"Host Restore Succeeded"/"Host Restore Failed", and "RestoreSessionSucceeded"/"RestoreSessionFailed" from
the host whose entry completed the session. Metrics go to the Pushgateway under job
``restoresession-<namespace>-<name>``: the host's with grouping key ``hostname``, the session's and the
target's (sent by the host that completed the session) under the job alone. A failed push never fails
the restore: ``MetricsPushed=False`` and a Warning event say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stashlet.agent.context import AgentContext
from stashlet.agent.metrics import build as m
from stashlet.agent.metrics.push import MetricsPushFailed, host_grouping_key, job_name, push
from stashlet.agent.restore import status as rs
from stashlet.agent.restore.extract import HostRestore
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import parse_duration
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase, RestoreSession
from stashlet.api.timestamps import now_utc
from stashlet.kube.errors import KubeError

log = logging.getLogger(__name__)

REASON_HOST_SUCCEEDED = "Host Restore Succeeded"
REASON_HOST_FAILED = "Host Restore Failed"
REASON_SESSION_SUCCEEDED = "RestoreSessionSucceeded"
REASON_SESSION_FAILED = "RestoreSessionFailed"
REASON_PUSH_FAILED = "MetricsPushFailed"


@dataclass
class Recorded:
    """The session after this host's entry was written, and whether that entry completed it."""

    session: RestoreSession
    completed: bool


class RestoreReport:
    """Writes one host's result about its RestoreSession."""

    def __init__(self, ctx: AgentContext) -> None:
        """Report about ``ctx``'s invoker, as ``ctx.host``."""
        self.ctx = ctx

    @property
    def name(self) -> str:
        """The RestoreSession's name."""
        return self.ctx.settings.invoker_name

    @property
    def ref(self) -> str:
        """``namespace/name`` of the RestoreSession, for logs."""
        return f"{self.ctx.namespace}/{self.name}"

    async def record(self, total: int, stats: HostRestoreStats, done: HostRestore | None) -> Recorded:
        """Write this host's entry (and ``totalHosts``), then the events; NotFound if the session is gone."""
        completed = False

        def mutate(s: RestoreSession) -> None:
            nonlocal completed
            was_complete = rs.is_complete(s)
            rs.put_host(s, total, stats, now_utc())
            completed = rs.is_complete(s) and not was_complete
            if rs.is_complete(s):
                rs.set_condition(
                    s,
                    ConditionType.RESTORE_COMPLETED,
                    True,
                    ConditionReason.POST_RESTORE_TASKS_EXECUTED,
                    rs.summary(s),
                    now_utc(),
                )

        updated = await self.ctx.stash.update_status(RestoreSession, self.ctx.namespace, self.name, mutate)
        obj = updated.to_dict()
        host = stats.hostname
        if stats.phase == HostRestorePhase.SUCCEEDED:
            what = done.describe() if done is not None and done.items else "nothing to restore for this host"
            await self.ctx.events.record(
                obj, "Normal", REASON_HOST_SUCCEEDED, f"Restored host {host}: {what}"
            )
        else:
            await self.ctx.events.record(
                obj, "Warning", REASON_HOST_FAILED, f"Failed to restore host {host}: {stats.error}"
            )
        if completed:
            ok = rs.phase(updated) == RestorePhase.SUCCEEDED
            await self.ctx.events.record(
                obj,
                "Normal" if ok else "Warning",
                REASON_SESSION_SUCCEEDED if ok else REASON_SESSION_FAILED,
                f"RestoreSession {rs.phase(updated)}: {rs.summary(updated)}",
            )
        log.info(
            "host restore recorded",
            extra={
                "session": self.ref,
                "host": host,
                "phase": str(stats.phase),
                "session_phase": str(rs.phase(updated)),
                "completed_session": completed,
            },
        )
        return Recorded(updated, completed)

    async def publish(self, recorded: Recorded, total: int, stats: HostRestoreStats, repository: str) -> None:
        """Push this host's metrics (and the session's, if it completed it); never fails the restore."""
        settings = self.ctx.settings
        url = settings.pushgateway_url
        if not url:
            return
        session = recorded.session
        labels = m.InvokerLabels(
            invoker_kind=settings.invoker_kind,
            invoker_name=self.name,
            namespace=self.ctx.namespace,
            repository=repository or (session.spec.repository.name if session.spec.repository else ""),
            driver=str(session.spec.driver or "Restic"),
        )
        target = m.TargetLabels(
            kind=settings.target_kind, name=settings.target_name, namespace=self.ctx.namespace
        )
        job = job_name(settings.invoker_kind, self.ctx.namespace, self.name)
        failures: list[str] = []
        pushed: list[str] = []
        try:
            await push(
                url,
                job,
                host_grouping_key(self.ctx.host.name),
                m.restore_host_metrics(labels, target, [stats]),
            )
            pushed.append("host")
            if recorded.completed and session.status is not None:
                status = session.status
                phase = status.phase or RestorePhase.UNKNOWN
                duration = parse_duration(status.session_duration) if status.session_duration else None
                registry = m.merge(
                    m.restore_session_metrics(labels, phase, duration_seconds=duration, target_count=1),
                    m.restore_target_metrics(
                        labels, target, succeeded=phase == RestorePhase.SUCCEEDED, total_hosts=total
                    ),
                )
                await push(url, job, {}, registry)
                pushed.append("session")
        except (MetricsPushFailed, ValueError) as exc:
            failures.append(str(exc))
            log.warning("metrics push failed", extra={"session": self.ref, "job": job, "error": str(exc)})
        ok = not failures
        message = "; ".join(failures) if failures else f"pushed {' and '.join(pushed)} metrics to job {job}"
        try:
            updated = await self.ctx.stash.update_status(
                RestoreSession,
                self.ctx.namespace,
                self.name,
                lambda s: rs.set_condition(
                    s,
                    ConditionType.METRICS_PUSHED,
                    ok,
                    ConditionReason.SUCCESSFULLY_PUSHED_METRICS
                    if ok
                    else ConditionReason.FAILED_TO_PUSH_METRICS,
                    message,
                    now_utc(),
                ),
            )
        except KubeError as exc:
            log.warning(
                "could not record the metrics push", extra={"session": self.ref, "error": exc.message}
            )
            return
        if not ok:
            await self.ctx.events.record(updated.to_dict(), "Warning", REASON_PUSH_FAILED, message)
