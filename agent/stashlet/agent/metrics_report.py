"""Publishing the agent's metrics: pushed to the Pushgateway, and kept for its own ``GET /metrics``.

Every push goes under job ``<invoker kind>-<namespace>-<invoker name>``: a host's own metrics with
grouping key ``hostname=<host>``, so hosts do not overwrite each other; the session's and the
repository's (sent by whichever host ends the session) under the job alone, so there is one copy.
A failed push never fails a backup or a restore: it sets the condition ``MetricsPushed=False`` and
records a Warning event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from stashlet.agent import metrics as m
from stashlet.agent import session_status as ss
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupStats, TargetPhase
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionType
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.events import EventRecorder

if TYPE_CHECKING:
    from stashlet.agent.context import AgentContext

log = logging.getLogger(__name__)


class LatestMetrics(Collector):
    """The most recent registry per kind of metric, served at the agent's ``/metrics``."""

    def __init__(self) -> None:
        """Start empty."""
        self.registries: dict[str, CollectorRegistry] = {}

    def collect(self) -> Iterator[Metric]:
        """Everything last published."""
        for registry in list(self.registries.values()):
            yield from registry.collect()


class MetricsReporter:
    """Builds and pushes the Stash metrics for one agent process."""

    def __init__(self, ctx: AgentContext, latest: LatestMetrics) -> None:
        """Push as ``ctx``'s host to ``ctx.settings.pushgateway_url`` (none: only keep them locally)."""
        self.ctx = ctx
        self.latest = latest

    def _labels(self, config: BackupConfiguration) -> m.InvokerLabels:
        repo = config.spec.repository
        return m.InvokerLabels(
            invoker_kind=self.ctx.settings.invoker_kind,
            invoker_name=self.ctx.settings.invoker_name,
            namespace=self.ctx.namespace,
            repository=repo.name if repo else "",
            driver=str(config.spec.driver or "Restic"),
        )

    def _target(self, ref: TargetRef) -> m.TargetLabels:
        return m.TargetLabels(kind=ref.kind or "", name=ref.name or "", namespace=self.ctx.namespace)

    async def host_backup(
        self,
        config: BackupConfiguration,
        session: BackupSession,
        ref: TargetRef,
        stats: HostBackupStats,
    ) -> None:
        """This host's backup result."""
        await self._publish(
            "host",
            session,
            lambda: m.backup_host_metrics(self._labels(config), self._target(ref), [stats]),
            per_host=True,
        )

    async def repository(self, config: BackupConfiguration, repo: Repository) -> None:
        """The Repository's state after retention and check."""
        if repo.status is None:
            return
        status = repo.status
        await self._publish(
            "repository", None, lambda: m.repository_metrics_from_status(self._labels(config), status)
        )

    async def session(self, session: BackupSession, config: BackupConfiguration | None = None) -> None:
        """The session's and its targets' results, sent by the host that ended the session."""
        if session.status is None or session.status.phase is None or config is None:
            return
        status = session.status
        labels = self._labels(config)
        finished = ss.now_utc()
        duration = m.parse_duration(status.session_duration) if status.session_duration else None

        def build() -> CollectorRegistry:
            parts = [
                m.backup_session_metrics(
                    labels,
                    status.phase or BackupSessionPhase.UNKNOWN,
                    duration_seconds=duration,
                    target_count=len(status.targets or []),
                    finished_at=finished,
                )
            ]
            for target in status.targets or []:
                if target.ref is not None:
                    parts.append(
                        m.backup_target_metrics(
                            labels,
                            self._target(target.ref),
                            target.phase or TargetPhase.FAILED,
                            total_hosts=target.total_hosts,
                            finished_at=finished,
                        )
                    )
            return m.merge(*parts)

        await self._publish("session", session, build)

    async def _publish(
        self,
        key: str,
        session: BackupSession | None,
        build: Callable[[], CollectorRegistry],
        *,
        per_host: bool = False,
    ) -> None:
        try:
            registry = build()
        except ValueError as exc:
            log.error("could not build metrics", extra={"metrics": key, "error": str(exc)})
            return
        self.latest.registries[key] = registry
        url = self.ctx.settings.pushgateway_url
        if not url:
            return
        job = m.job_name(self.ctx.settings.invoker_kind, self.ctx.namespace, self.ctx.settings.invoker_name)
        try:
            await m.push(url, job, m.host_grouping_key(self.ctx.host.name) if per_host else {}, registry)
        except m.MetricsPushFailed as exc:
            log.warning("metrics push failed", extra={"metrics": key, "job": job, "error": str(exc)})
            if session is not None:
                await self._push_condition(
                    self.ctx.stash, self.ctx.events, session, ok=False, message=str(exc)
                )
            return
        if session is not None:
            await self._push_condition(
                self.ctx.stash,
                self.ctx.events,
                session,
                ok=True,
                message=f"pushed {key} metrics to job {job}",
            )

    async def _push_condition(
        self, stash: StashClient, events: EventRecorder, session: BackupSession, *, ok: bool, message: str
    ) -> None:
        name = session.metadata.name or ""
        await stash.update_status(
            BackupSession,
            self.ctx.namespace,
            name,
            lambda s: ss.set_condition(
                s,
                ConditionType.METRICS_PUSHED,
                ok,
                "MetricsPushed" if ok else "MetricsPushFailed",
                message,
                ss.now_utc(),
            ),
        )
        if not ok:
            await events.record(session.to_dict(), "Warning", "MetricsPushFailed", message)
