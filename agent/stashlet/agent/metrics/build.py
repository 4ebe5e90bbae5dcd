"""Stash's Prometheus metrics: pure builders of registries (:mod:`stashlet.agent.metrics.push` sends them).

The gauges (see :mod:`stashlet.agent.metrics.catalog`) and the moments they are sent follow Stash's
``pkg/restic/metrics.go``; each gauge is exposed under both of Stash's prefixes, ``stash_<subsystem>_<name>``
and ``stash_appscode_com_<subsystem>_<name>``, so dashboards and alerts written for either keep working.
Labels: ``invoker_kind``, ``invoker_name``, ``namespace``, ``driver``, ``repository``; target metrics add
``target_kind``, ``target_name``, ``target_namespace``; per-host metrics add ``host``.

Every builder takes typed inputs and returns a fresh ``CollectorRegistry`` (no global state), so it is
tested without a server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from stashlet.agent.metrics import catalog as gauges
from stashlet.agent.metrics.catalog import HOST_LABEL, MetricSpec
from stashlet.agent.sizes import parse_size
from stashlet.api.backupsession import BackupSessionPhase, HostBackupPhase, HostBackupStats, TargetPhase
from stashlet.api.common import Snapshotter
from stashlet.api.durations import parse_duration
from stashlet.api.repository import RepositoryStatus
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase

# ---------------------------------------------------------------- labels


@dataclass(frozen=True)
class InvokerLabels:
    """The labels of every metric: who invoked the backup or restore, and with which repository."""

    invoker_kind: str
    """BackupConfiguration, or RestoreSession for a restore."""
    invoker_name: str
    namespace: str
    repository: str = ""
    """The Repository's name; empty for the VolumeSnapshotter driver."""
    driver: str = Snapshotter.RESTIC.value

    def values(self) -> dict[str, str]:
        """The label values by label name (the label names are the field names)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TargetLabels:
    """The target a target or host metric is about."""

    kind: str
    name: str
    namespace: str

    def values(self) -> dict[str, str]:
        """The label values by label name."""
        return {"target_kind": self.kind, "target_name": self.name, "target_namespace": self.namespace}


class _Builder:
    """A fresh registry; ``set`` writes one value into a gauge under both prefixes."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = dict(labels)
        self._gauges: dict[str, Gauge] = {}

    def set(self, spec: MetricSpec, value: float, **extra: str) -> None:
        labels = {**self._labels, **extra}
        for name in spec.names:
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = Gauge(name, spec.help, labelnames=sorted(labels), registry=self.registry)
                self._gauges[name] = gauge
            gauge.labels(**labels).set(value)


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class _SessionGauges:
    success: MetricSpec
    duration: MetricSpec
    target_count: MetricSpec


_BACKUP_SESSION = _SessionGauges(
    gauges.BACKUP_SESSION_SUCCESS, gauges.BACKUP_SESSION_DURATION, gauges.BACKUP_TARGET_COUNT
)
_RESTORE_SESSION = _SessionGauges(
    gauges.RESTORE_SESSION_SUCCESS, gauges.RESTORE_SESSION_DURATION, gauges.RESTORE_TARGET_COUNT
)


def _session(
    labels: InvokerLabels,
    specs: _SessionGauges,
    succeeded: bool,
    *,
    duration_seconds: float | None,
    target_count: int,
) -> _Builder:
    """A session's success; on success also its duration (when known) and its number of targets."""
    builder = _Builder(labels.values())
    builder.set(specs.success, 1 if succeeded else 0)
    if succeeded:
        if duration_seconds is not None:
            builder.set(specs.duration, duration_seconds)
        builder.set(specs.target_count, target_count)
    return builder


# ---------------------------------------------------------------- backup


def _host_succeeded(phase: str | None, error: str | None, success: str) -> bool:
    return phase == success if phase is not None else not error


def backup_session_metrics(
    labels: InvokerLabels,
    phase: BackupSessionPhase,
    *,
    duration_seconds: float | None,
    target_count: int,
    finished_at: datetime,
) -> CollectorRegistry:
    """Metrics of a whole BackupSession, as Stash sends them when the session ends.

    Succeeded: success 1, duration, number of targets, last success time (``finished_at``). Any other
    phase: success 0 only, so the last success time of an earlier session stays on the gateway.
    """
    builder = _session(
        labels,
        _BACKUP_SESSION,
        phase is BackupSessionPhase.SUCCEEDED,
        duration_seconds=duration_seconds,
        target_count=target_count,
    )
    if phase is BackupSessionPhase.SUCCEEDED:
        builder.set(gauges.BACKUP_LAST_SUCCESS, finished_at.timestamp())
    return builder.registry


def backup_target_metrics(
    labels: InvokerLabels,
    target: TargetLabels,
    phase: TargetPhase,
    *,
    total_hosts: int | None,
    finished_at: datetime,
) -> CollectorRegistry:
    """Metrics of one target of a BackupSession: success, number of hosts, last success time."""
    builder = _Builder({**labels.values(), **target.values()})
    if phase is TargetPhase.SUCCEEDED:
        builder.set(gauges.BACKUP_TARGET_SUCCESS, 1)
        builder.set(gauges.BACKUP_TARGET_LAST_SUCCESS, finished_at.timestamp())
        if total_hosts is not None:
            builder.set(gauges.BACKUP_TARGET_HOST_COUNT, total_hosts)
    else:
        builder.set(gauges.BACKUP_TARGET_SUCCESS, 0)
    return builder.registry


def backup_host_metrics(
    labels: InvokerLabels, target: TargetLabels, host_stats: Iterable[HostBackupStats]
) -> CollectorRegistry:
    """Per-host metrics of a backup, from the hosts' entries in ``status.targets[].stats``.

    A succeeded host gets success 1, its duration, and the sums over its snapshots of data size,
    uploaded bytes (sizes like ``"4.154 KiB"`` converted to bytes), processing time and file counts. A
    failed host gets success 0 only. Raises ValueError when a size or duration cannot be read.
    """
    builder = _Builder({**labels.values(), **target.values()})
    for stats in host_stats:
        host = {HOST_LABEL: stats.hostname or ""}
        if not _host_succeeded(stats.phase, stats.error, HostBackupPhase.SUCCEEDED):
            builder.set(gauges.HOST_BACKUP_SUCCESS, 0, **host)
            continue
        size = uploaded = processing = 0.0
        files = {"total": 0, "new": 0, "modified": 0, "unmodified": 0}
        for snapshot in stats.snapshots or []:
            size += parse_size(snapshot.total_size) if snapshot.total_size else 0
            uploaded += parse_size(snapshot.uploaded) if snapshot.uploaded else 0
            processing += parse_duration(snapshot.processing_time) if snapshot.processing_time else 0
            counts = snapshot.file_stats
            if counts is not None:
                files["total"] += counts.total_files or 0
                files["new"] += counts.new_files or 0
                files["modified"] += counts.modified_files or 0
                files["unmodified"] += counts.unmodified_files or 0
        builder.set(gauges.HOST_BACKUP_SUCCESS, 1, **host)
        if stats.duration:
            builder.set(gauges.HOST_BACKUP_DURATION, parse_duration(stats.duration), **host)
        builder.set(gauges.HOST_DATA_SIZE, size, **host)
        builder.set(gauges.HOST_DATA_UPLOADED, uploaded, **host)
        builder.set(gauges.HOST_DATA_PROCESSING_TIME, processing, **host)
        builder.set(gauges.HOST_FILES_TOTAL, files["total"], **host)
        builder.set(gauges.HOST_FILES_NEW, files["new"], **host)
        builder.set(gauges.HOST_FILES_MODIFIED, files["modified"], **host)
        builder.set(gauges.HOST_FILES_UNMODIFIED, files["unmodified"], **host)
    return builder.registry


def repository_metrics(
    labels: InvokerLabels,
    *,
    integrity: bool | None,
    size_bytes: float,
    snapshot_count: int,
    snapshots_removed: int,
    last_backup_time: datetime | None = None,
    last_check_time: datetime | None = None,
) -> CollectorRegistry:
    """The Repository's state after a backup: integrity (1 only when checked and good), size, counts, and
    when the last backup and the last check were."""
    builder = _Builder(labels.values())
    builder.set(gauges.REPOSITORY_INTEGRITY, 1 if integrity else 0)
    builder.set(gauges.REPOSITORY_SIZE, size_bytes)
    builder.set(gauges.REPOSITORY_SNAPSHOT_COUNT, snapshot_count)
    builder.set(gauges.REPOSITORY_SNAPSHOT_CLEANED, snapshots_removed)
    if last_backup_time is not None:
        builder.set(gauges.REPOSITORY_LAST_BACKUP, last_backup_time.timestamp())
    if last_check_time is not None:
        builder.set(gauges.REPOSITORY_LAST_CHECK, last_check_time.timestamp())
    return builder.registry


def repository_metrics_from_status(labels: InvokerLabels, status: RepositoryStatus) -> CollectorRegistry:
    """``repository_metrics`` from a Repository's status (``totalSize`` parsed; absent counts are 0)."""
    return repository_metrics(
        labels,
        integrity=status.integrity,
        size_bytes=parse_size(status.total_size) if status.total_size else 0,
        snapshot_count=status.snapshot_count or 0,
        snapshots_removed=status.snapshots_removed_on_last_cleanup or 0,
        last_backup_time=status.last_backup_time,
        last_check_time=status.last_check_time,
    )


# ---------------------------------------------------------------- restore


def restore_session_metrics(
    labels: InvokerLabels, phase: RestorePhase, *, duration_seconds: float | None, target_count: int
) -> CollectorRegistry:
    """Metrics of a whole RestoreSession: success, and on success its duration and number of targets."""
    return _session(
        labels,
        _RESTORE_SESSION,
        phase is RestorePhase.SUCCEEDED,
        duration_seconds=duration_seconds,
        target_count=target_count,
    ).registry


def restore_target_metrics(
    labels: InvokerLabels, target: TargetLabels, *, succeeded: bool, total_hosts: int | None
) -> CollectorRegistry:
    """Metrics of one restore target: success, and on success the number of hosts restored."""
    builder = _Builder({**labels.values(), **target.values()})
    builder.set(gauges.RESTORE_TARGET_SUCCESS, 1 if succeeded else 0)
    if succeeded and total_hosts is not None:
        builder.set(gauges.RESTORE_TARGET_HOST_COUNT, total_hosts)
    return builder.registry


def restore_host_metrics(
    labels: InvokerLabels, target: TargetLabels, host_stats: Iterable[HostRestoreStats]
) -> CollectorRegistry:
    """Per-host metrics of a restore: success, and on success the host's duration."""
    builder = _Builder({**labels.values(), **target.values()})
    for stats in host_stats:
        host = {HOST_LABEL: stats.hostname or ""}
        if _host_succeeded(stats.phase, stats.error, HostRestorePhase.SUCCEEDED):
            builder.set(gauges.HOST_RESTORE_SUCCESS, 1, **host)
            if stats.duration:
                builder.set(gauges.HOST_RESTORE_DURATION, parse_duration(stats.duration), **host)
        else:
            builder.set(gauges.HOST_RESTORE_SUCCESS, 0, **host)
    return builder.registry


class _Chain(Collector):
    """Collects what several registries hold."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = tuple(registries)

    def collect(self) -> Iterable[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def merge(*registries: CollectorRegistry) -> CollectorRegistry:
    """One registry holding what several hold, to push them in one request.

    Raises ValueError when two of them hold the same metric (the gateway would refuse a family that
    appears twice in one push).
    """
    seen: set[str] = set()
    for registry in registries:
        names = {family.name for family in registry.collect()}
        if clash := seen & names:
            raise ValueError(f"metrics in more than one registry: {', '.join(sorted(clash))}")
        seen |= names
    merged = CollectorRegistry(auto_describe=True)
    merged.register(_Chain(registries))
    return merged
