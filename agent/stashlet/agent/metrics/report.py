"""Publishing the agent's metrics: pushed to the Pushgateway, and kept for its own ``GET /metrics``.

Every push goes under job ``<invoker kind>-<namespace>-<invoker name>``: a host's own metrics with
grouping key ``hostname=<host>``, so hosts do not overwrite each other; the session's and the
repository's (sent by whichever host ends the session) under the job alone, so there is one copy.
A failed push never fails a backup or a restore: the caller sets the condition ``MetricsPushed=False``
(with :func:`~stashlet.agent.backup.status.apply_push_condition`) and records a Warning event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from stashlet.agent.metrics import build as m
from stashlet.agent.metrics.push import MetricsPushFailed, host_grouping_key, job_name, push
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupStats, TargetPhase
from stashlet.api.common import TargetRef
from stashlet.api.durations import parse_duration
from stashlet.api.repository import Repository
from stashlet.api.timestamps import now_utc

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
        ref: TargetRef,
        stats: HostBackupStats,
    ) -> PushOutcome | None:
        """This host's backup result."""
        return await self._publish(
            "host",
            lambda: m.backup_host_metrics(self._labels(config), self._target(ref), [stats]),
            per_host=True,
        )

    async def repository(self, config: BackupConfiguration, repo: Repository) -> PushOutcome | None:
        """The Repository's state after retention and check."""
        if repo.status is None:
            return None
        status = repo.status
        return await self._publish(
            "repository", lambda: m.repository_metrics_from_status(self._labels(config), status)
        )

    async def session(self, session: BackupSession, config: BackupConfiguration) -> PushOutcome | None:
        """The session's and its targets' results, sent by the host that ends the session."""
        if session.status is None or session.status.phase is None:
            return None
        status = session.status
        labels = self._labels(config)
        finished = now_utc()
        duration = parse_duration(status.session_duration) if status.session_duration else None

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

        return await self._publish("session", build)

    async def _publish(
        self,
        key: str,
        build: Callable[[], CollectorRegistry],
        *,
        per_host: bool = False,
    ) -> PushOutcome | None:
        """Build, keep for /metrics, and push; None when there is no gateway to push to."""
        try:
            registry = build()
        except ValueError as exc:
            log.error("could not build metrics", extra={"metrics": key, "error": str(exc)})
            return PushOutcome(ok=False, message=f"could not build {key} metrics: {exc}")
        self.latest.registries[key] = registry
        url = self.ctx.settings.pushgateway_url
        if not url:
            return None
        job = job_name(self.ctx.settings.invoker_kind, self.ctx.namespace, self.ctx.settings.invoker_name)
        try:
            await push(url, job, host_grouping_key(self.ctx.host.name) if per_host else {}, registry)
        except MetricsPushFailed as exc:
            log.warning("metrics push failed", extra={"metrics": key, "job": job, "error": str(exc)})
            return PushOutcome(ok=False, message=str(exc))
        return PushOutcome(ok=True, message=f"pushed {key} metrics to job {job}")


@dataclass(frozen=True)
class PushOutcome:
    """How one push went."""

    ok: bool
    message: str


def merge_outcomes(outcomes: Iterable[PushOutcome | None]) -> PushOutcome | None:
    """One verdict for the MetricsPushed condition: failed if any push failed."""
    seen = [o for o in outcomes if o is not None]
    if not seen:
        return None
    failed = [o.message for o in seen if not o.ok]
    if failed:
        return PushOutcome(ok=False, message="; ".join(failed))
    return PushOutcome(ok=True, message="; ".join(o.message for o in seen))
