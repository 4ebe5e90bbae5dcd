"""A restore drill's metrics: built from its verdict and pushed under its configuration's Pushgateway job.

They go under job ``backupconfiguration-<namespace>-<name>`` with no grouping key beyond it, like the
session's and the repository's metrics, with the same labels (``invoker_kind``, ``invoker_name``,
``namespace``, ``driver``, ``repository``). The push is a POST, which replaces only the families it carries:
a failed drill leaves ``..._last_verified_time_seconds`` at the last drill that passed, so "time since the
last verified restore" is one expression.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from stashlet.agent.drill.verdict import Verdict
from stashlet.agent.metrics import catalog
from stashlet.agent.metrics.build import InvokerLabels
from stashlet.agent.metrics.catalog import MetricSpec
from stashlet.agent.metrics.push import job_name, push


def drill_metrics(labels: InvokerLabels, verdict: Verdict, finished_at: datetime) -> CollectorRegistry:
    """The drill's gauges under both prefixes; the last-verified time only when it passed."""
    registry = CollectorRegistry(auto_describe=True)
    values = labels.values()

    def put(spec: MetricSpec, value: float) -> None:
        for name in spec.names:
            Gauge(name, spec.help, labelnames=sorted(values), registry=registry).labels(**values).set(value)

    put(catalog.RESTORE_DRILL_SUCCESS, 1 if verdict.passed else 0)
    put(catalog.RESTORE_DRILL_FILES_CHECKED, verdict.files_checked)
    put(catalog.RESTORE_DRILL_DURATION, verdict.seconds)
    if verdict.passed:
        put(catalog.RESTORE_DRILL_LAST_VERIFIED, finished_at.timestamp())
    return registry


async def push_drill_metrics(url: str, labels: InvokerLabels, registry: CollectorRegistry) -> str:
    """Push ``registry`` under the configuration's job; the job's name (MetricsPushFailed on failure)."""
    job = job_name(labels.invoker_kind, labels.namespace, labels.invoker_name)
    await push(url, job, {}, registry)
    return job
