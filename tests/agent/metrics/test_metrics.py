"""The Stash metrics: sizes and durations, the pure registry builders, and pushes to a real Pushgateway."""

from __future__ import annotations

import base64
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpServer
from tests.polling import wait_until

from stashlet.agent.metrics import build, catalog, push
from stashlet.agent.metrics.build import InvokerLabels, TargetLabels
from stashlet.agent.metrics.push import MetricsPushFailed
from stashlet.agent.sizes import format_size, parse_size
from stashlet.api.backupsession import (
    BackupSessionPhase,
    FileStats,
    HostBackupPhase,
    HostBackupStats,
    SnapshotStats,
    TargetPhase,
)
from stashlet.api.repository import RepositoryStatus
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase
from stashlet.localcluster import tools
from stashlet.localcluster.processes import ManagedProcess, free_port

LABELS = InvokerLabels(
    invoker_kind="BackupConfiguration", invoker_name="sample-backup", namespace="demo", repository="gcs-repo"
)
TARGET = TargetLabels(kind="Deployment", name="stash-demo", namespace="demo")
FINISHED = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

# Stash's gauges (pkg/restic/metrics.go), subsystem_name, as it sends them under the "stash" prefix.
STASH_GAUGES = {
    "backup_session_success",
    "backup_session_duration_seconds",
    "backup_target_count_total",
    "backup_last_success_time_seconds",
    "backup_target_success",
    "backup_target_host_count_total",
    "backup_target_last_success_time_seconds",
    "backup_host_backup_success",
    "backup_host_backup_duration_seconds",
    "backup_host_data_size_bytes",
    "backup_host_data_uploaded_bytes",
    "backup_host_data_processing_time_seconds",
    "backup_host_files_total",
    "backup_host_files_new",
    "backup_host_files_modified",
    "backup_host_files_unmodified",
    "repository_integrity",
    "repository_size_bytes",
    "repository_snapshot_count",
    "repository_snapshot_cleaned",
    "restore_session_success",
    "restore_session_duration_seconds",
    "restore_target_count_total",
    "restore_target_success",
    "restore_target_host_count_total",
    "restore_host_restore_success",
    "restore_host_restore_duration_seconds",
}


def host_labels(host: str) -> dict[str, str]:
    return {**LABELS.values(), **TARGET.values(), "host": host}


def both(registry: CollectorRegistry, spec: catalog.MetricSpec, labels: dict[str, str]) -> float | None:
    """The value of a gauge, asserting both prefixes carry the same one."""
    values = {registry.get_sample_value(name, labels) for name in spec.names}
    assert len(values) == 1, f"{spec.names} differ: {values}"
    return values.pop()


def names_in(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def succeeded_host(name: str, *, size: str = "4.154 KiB", files: int = 3) -> HostBackupStats:
    snapshot = SnapshotStats(
        name=f"{name}-snap",
        path="/source/data",
        total_size=size,
        uploaded="1.500 KiB",
        processing_time="0:02",
        file_stats=FileStats(total_files=files, new_files=1, modified_files=1, unmodified_files=files - 2),
    )
    return HostBackupStats(
        hostname=name, phase=HostBackupPhase.SUCCEEDED, snapshots=[snapshot], duration="4.5s"
    )


# ---------------------------------------------------------------- sizes and durations


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1024 B"),
        (1025, "1.001 KiB"),
        (4254, "4.154 KiB"),
        (4256, "4.156 KiB"),
        (5 * 2**20 + 2**19, "5.500 MiB"),
        (3 * 2**30, "3.000 GiB"),
        (2**40 + 2**39, "1.500 TiB"),
    ],
)
def test_format_size_writes_stash_units(count: int, text: str) -> None:
    """format_size writes Stash's formatBytes: binary units, three decimals, a unit only above it."""
    assert format_size(count) == text


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("4.154 KiB", 4254),
        ("4.156 KiB", 4256),
        ("12 B", 12),
        ("12B", 12),
        ("12", 12),
        (" 1.5 MiB ", 3 * 2**19),
        ("2.000 GiB", 2 * 2**30),
        ("1.000 TiB", 2**40),
    ],
)
def test_parse_size_reads_human_sizes(text: str, count: int) -> None:
    """parse_size turns restic/Stash human sizes into whole bytes."""
    assert parse_size(text) == count


@pytest.mark.parametrize("text", ["", "KiB", "1.5 KB", "-1 B", "1,5 KiB", "12 kib", "1e3 B"])
def test_parse_size_refuses_what_it_cannot_read(text: str) -> None:
    """parse_size raises ValueError on unknown units, signs and non-numbers, naming the input."""
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_size_round_trip() -> None:
    """Whatever format_size writes, parse_size reads back to a size that formats identically."""
    counts = [*range(0, 5000, 7), *(int(1.37**k) for k in range(20, 100))]
    for count in counts:
        text = format_size(count)
        assert format_size(parse_size(text)) == text, count
        assert abs(parse_size(text) - count) <= max(1, count / 1000), count


def test_format_size_refuses_negative() -> None:
    """format_size raises ValueError for a negative or non-finite count."""
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="byte count"):
            format_size(bad)


# ---------------------------------------------------------------- the catalogue


def test_every_stash_gauge_under_both_prefixes() -> None:
    """Each of Stash's gauges is in the catalogue under stash_ and stash_appscode_com_, and nothing else."""
    names = catalog.metric_names()
    assert len(names) == len(set(names))
    bases = {f"{spec.subsystem}_{spec.name}" for spec in catalog.ALL_METRICS}
    assert bases >= STASH_GAUGES
    assert bases - STASH_GAUGES == {
        "repository_last_backup_time_seconds",
        "repository_last_check_time_seconds",
    }
    assert set(names) == {f"{prefix}_{base}" for prefix in catalog.PREFIXES for base in bases}
    assert "stash_appscode_com_backup_session_success" in names
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) for name in names)


# ---------------------------------------------------------------- builders


def test_backup_host_metrics_of_a_succeeded_host() -> None:
    """A succeeded host gets success 1, its duration, and byte/time/file sums over its snapshots."""
    stats = succeeded_host("host-0")
    assert stats.snapshots is not None
    stats.snapshots.append(
        SnapshotStats(
            total_size="1.000 MiB",
            uploaded="0 B",
            processing_time="1:01",
            file_stats=FileStats(total_files=10, new_files=0, modified_files=0, unmodified_files=10),
        )
    )
    registry = build.backup_host_metrics(LABELS, TARGET, [stats])
    labels = host_labels("host-0")
    assert both(registry, catalog.HOST_BACKUP_SUCCESS, labels) == 1
    assert both(registry, catalog.HOST_BACKUP_DURATION, labels) == 4.5
    assert both(registry, catalog.HOST_DATA_SIZE, labels) == 4254 + 2**20
    assert both(registry, catalog.HOST_DATA_UPLOADED, labels) == 1536
    assert both(registry, catalog.HOST_DATA_PROCESSING_TIME, labels) == 63
    assert both(registry, catalog.HOST_FILES_TOTAL, labels) == 13
    assert both(registry, catalog.HOST_FILES_NEW, labels) == 1
    assert both(registry, catalog.HOST_FILES_MODIFIED, labels) == 1
    assert both(registry, catalog.HOST_FILES_UNMODIFIED, labels) == 11


def test_backup_host_metrics_of_a_failed_host_carry_only_success() -> None:
    """A failed host gets success 0 and nothing else, so its last good sizes stay on the gateway."""
    failed = HostBackupStats(hostname="host-1", phase=HostBackupPhase.FAILED, error="restic exited 1")
    registry = build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0"), failed])
    assert both(registry, catalog.HOST_BACKUP_SUCCESS, host_labels("host-1")) == 0
    assert both(registry, catalog.HOST_BACKUP_SUCCESS, host_labels("host-0")) == 1
    assert both(registry, catalog.HOST_DATA_SIZE, host_labels("host-1")) is None
    assert registry.get_sample_value("stash_backup_host_data_size_bytes", host_labels("host-0")) == 4254


def test_backup_host_metrics_refuse_an_unreadable_size() -> None:
    """A size the parser cannot read raises ValueError instead of pushing a wrong number."""
    with pytest.raises(ValueError, match="size"):
        build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0", size="lots")])


def test_backup_session_metrics() -> None:
    """A succeeded session sends success, duration, target count and last success; a failed one success 0."""
    ok = build.backup_session_metrics(
        LABELS, BackupSessionPhase.SUCCEEDED, duration_seconds=12.5, target_count=1, finished_at=FINISHED
    )
    labels = LABELS.values()
    assert set(labels) == set(catalog.INVOKER_LABELS)
    assert both(ok, catalog.BACKUP_SESSION_SUCCESS, labels) == 1
    assert both(ok, catalog.BACKUP_SESSION_DURATION, labels) == 12.5
    assert both(ok, catalog.BACKUP_TARGET_COUNT, labels) == 1
    assert both(ok, catalog.BACKUP_LAST_SUCCESS, labels) == FINISHED.timestamp()

    failed = build.backup_session_metrics(
        LABELS, BackupSessionPhase.FAILED, duration_seconds=3.0, target_count=1, finished_at=FINISHED
    )
    assert names_in(failed) == set(catalog.BACKUP_SESSION_SUCCESS.names)
    assert both(failed, catalog.BACKUP_SESSION_SUCCESS, labels) == 0


def test_backup_target_metrics() -> None:
    """A target's metrics carry the target labels: success, host count, last success time."""
    labels = {**LABELS.values(), **TARGET.values()}
    ok = build.backup_target_metrics(
        LABELS, TARGET, TargetPhase.SUCCEEDED, total_hosts=3, finished_at=FINISHED
    )
    assert both(ok, catalog.BACKUP_TARGET_SUCCESS, labels) == 1
    assert both(ok, catalog.BACKUP_TARGET_HOST_COUNT, labels) == 3
    assert both(ok, catalog.BACKUP_TARGET_LAST_SUCCESS, labels) == FINISHED.timestamp()
    failed = build.backup_target_metrics(
        LABELS, TARGET, TargetPhase.FAILED, total_hosts=3, finished_at=FINISHED
    )
    assert names_in(failed) == set(catalog.BACKUP_TARGET_SUCCESS.names)


def test_repository_metrics_from_status() -> None:
    """The Repository status becomes gauges: integrity 1/0, size in bytes, counts, last backup and last
    check times (checks run on their own cadence: the integrity is as old as the last check)."""
    checked = FINISHED - timedelta(hours=5)
    status = RepositoryStatus(
        integrity=True,
        total_size="4.154 KiB",
        snapshot_count=10,
        snapshots_removed_on_last_cleanup=2,
        last_backup_time=FINISHED,
        last_check_time=checked,
    )
    registry = build.repository_metrics_from_status(LABELS, status)
    labels = LABELS.values()
    assert both(registry, catalog.REPOSITORY_INTEGRITY, labels) == 1
    assert both(registry, catalog.REPOSITORY_SIZE, labels) == 4254
    assert both(registry, catalog.REPOSITORY_SNAPSHOT_COUNT, labels) == 10
    assert both(registry, catalog.REPOSITORY_SNAPSHOT_CLEANED, labels) == 2
    assert both(registry, catalog.REPOSITORY_LAST_BACKUP, labels) == FINISHED.timestamp()
    assert both(registry, catalog.REPOSITORY_LAST_CHECK, labels) == checked.timestamp()

    unchecked = build.repository_metrics_from_status(LABELS, RepositoryStatus())
    assert both(unchecked, catalog.REPOSITORY_INTEGRITY, labels) == 0
    assert both(unchecked, catalog.REPOSITORY_SIZE, labels) == 0
    assert both(unchecked, catalog.REPOSITORY_LAST_BACKUP, labels) is None
    assert both(unchecked, catalog.REPOSITORY_LAST_CHECK, labels) is None


def test_restore_metrics() -> None:
    """Restore sessions, targets and hosts: success, and durations and counts only on success."""
    labels = InvokerLabels(
        invoker_kind="RestoreSession", invoker_name="restore-1", namespace="demo", repository="gcs-repo"
    )
    session = build.restore_session_metrics(
        labels, RestorePhase.SUCCEEDED, duration_seconds=7.0, target_count=1
    )
    assert both(session, catalog.RESTORE_SESSION_SUCCESS, labels.values()) == 1
    assert both(session, catalog.RESTORE_SESSION_DURATION, labels.values()) == 7
    assert both(session, catalog.RESTORE_TARGET_COUNT, labels.values()) == 1
    failed = build.restore_session_metrics(labels, RestorePhase.FAILED, duration_seconds=7, target_count=1)
    assert names_in(failed) == set(catalog.RESTORE_SESSION_SUCCESS.names)

    target_labels = {**labels.values(), **TARGET.values()}
    target = build.restore_target_metrics(labels, TARGET, succeeded=True, total_hosts=2)
    assert both(target, catalog.RESTORE_TARGET_SUCCESS, target_labels) == 1
    assert both(target, catalog.RESTORE_TARGET_HOST_COUNT, target_labels) == 2

    hosts = build.restore_host_metrics(
        labels,
        TARGET,
        [
            HostRestoreStats(hostname="host-0", phase=HostRestorePhase.SUCCEEDED, duration="1m0.5s"),
            HostRestoreStats(hostname="host-1", phase=HostRestorePhase.FAILED, error="no snapshot"),
        ],
    )
    assert both(hosts, catalog.HOST_RESTORE_SUCCESS, {**target_labels, "host": "host-0"}) == 1
    assert both(hosts, catalog.HOST_RESTORE_DURATION, {**target_labels, "host": "host-0"}) == 60.5
    assert both(hosts, catalog.HOST_RESTORE_SUCCESS, {**target_labels, "host": "host-1"}) == 0
    assert both(hosts, catalog.HOST_RESTORE_DURATION, {**target_labels, "host": "host-1"}) is None


def test_builders_return_fresh_registries() -> None:
    """Each call builds a new registry; building twice never raises 'Duplicated timeseries'."""
    first = build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0")])
    second = build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0", files=5)])
    assert first is not second
    assert first.get_sample_value("stash_backup_host_files_total", host_labels("host-0")) == 3
    assert second.get_sample_value("stash_backup_host_files_total", host_labels("host-0")) == 5


def test_merge_combines_and_refuses_duplicates() -> None:
    """Merging exposes several registries as one, and refuses two that hold the same metric."""
    session = build.backup_session_metrics(
        LABELS, BackupSessionPhase.SUCCEEDED, duration_seconds=1, target_count=1, finished_at=FINISHED
    )
    repository = build.repository_metrics(
        LABELS, integrity=True, size_bytes=10, snapshot_count=1, snapshots_removed=0
    )
    merged = build.merge(session, repository)
    assert names_in(merged) == names_in(session) | names_in(repository)
    text = generate_latest(merged).decode()
    assert "stash_appscode_com_repository_size_bytes{" in text
    with pytest.raises(ValueError, match="stash_backup_session_success"):
        build.merge(session, session)


def test_job_name_and_grouping_key() -> None:
    """The job is <invoker kind lower-cased>-<namespace>-<invoker name>; the grouping key names the host."""
    assert push.job_name("BackupConfiguration", "demo", "sample-backup") == (
        "backupconfiguration-demo-sample-backup"
    )
    assert push.host_grouping_key("host-2") == {"hostname": "host-2"}


def test_redact_url_drops_credentials() -> None:
    """redact_url removes user name and password and keeps host, port and path."""
    assert push.redact_url("http://user:s3cret@gw.monitoring:9091/x") == "http://gw.monitoring:9091/x"
    assert push.redact_url("https://gw:9091") == "https://gw:9091"
    assert push.redact_url("gw:9091") == "http://gw:9091"
    assert push.redact_url("http://u:p@[::1]:9091") == "http://[::1]:9091"


# ---------------------------------------------------------------- a real Pushgateway


@dataclass
class Gateway:
    url: str
    process: ManagedProcess

    def families(self, job: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of ``job`` on the gateway's /metrics, by name and labels (job/instance left out)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("job") != job:
                    continue
                labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                found[sample.name, frozenset(labels.items())] = sample.value
        return found


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_gateway(workdir: Path) -> Gateway:
    """The pinned Pushgateway on a free loopback port, in memory only, ready."""
    binary = tools.ensure("pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess.start(
        "pushgateway",
        [str(binary), f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        workdir / "pushgateway.log",
    )
    try:

        def ready() -> bool:
            if not process.alive():
                pytest.fail(f"pushgateway exited while starting; its log:\n{process.log_tail()}")
            return _ready(url)

        wait_until(ready, timeout=30, interval=0.1, what="pushgateway /-/ready", log=process.log_tail)
    except BaseException:
        process.stop()
        raise
    return Gateway(url=url, process=process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One Pushgateway for this module's tests (each test uses a job of its own), stopped after."""
    started = start_gateway(tmp_path_factory.mktemp("pushgateway"))
    try:
        yield started
    finally:
        started.process.stop()


def fresh_job() -> str:
    return push.job_name("BackupConfiguration", "demo", f"sample-{uuid.uuid4().hex[:8]}")


def key(name: str, labels: dict[str, str]) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_two_hosts_do_not_overwrite_each_other(gateway: Gateway) -> None:
    """Two hosts push under one job with their hostname grouping key; both sets stay, values as pushed."""
    job = fresh_job()
    for host, files in (("host-0", 3), ("host-1", 7)):
        registry = build.backup_host_metrics(LABELS, TARGET, [succeeded_host(host, files=files)])
        await push.push(gateway.url, job, push.host_grouping_key(host), registry)

    found = gateway.families(job)
    for host, files in (("host-0", 3), ("host-1", 7)):
        labels = {**host_labels(host), "hostname": host}
        for prefix in catalog.PREFIXES:
            assert found[key(f"{prefix}_backup_host_files_total", labels)] == files
            assert found[key(f"{prefix}_backup_host_backup_success", labels)] == 1
            assert found[key(f"{prefix}_backup_host_data_size_bytes", labels)] == 4254
            assert found[key(f"{prefix}_backup_host_backup_duration_seconds", labels)] == 4.5


async def test_a_later_push_keeps_the_hosts_other_metrics(gateway: Gateway) -> None:
    """Session and repository metrics pushed after the host metrics (same host) do not delete them."""
    job = fresh_job()
    grouping = push.host_grouping_key("host-0")
    await push.push(
        gateway.url, job, grouping, build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0")])
    )
    session = build.backup_session_metrics(
        LABELS, BackupSessionPhase.SUCCEEDED, duration_seconds=9.0, target_count=1, finished_at=FINISHED
    )
    repository = build.repository_metrics(
        LABELS, integrity=True, size_bytes=4254, snapshot_count=10, snapshots_removed=1
    )
    await push.push(gateway.url, job, grouping, build.merge(session, repository))

    found = gateway.families(job)
    invoker = {**LABELS.values(), "hostname": "host-0"}
    assert found[key("stash_backup_host_files_total", {**host_labels("host-0"), "hostname": "host-0"})] == 3
    assert found[key("stash_backup_session_duration_seconds", invoker)] == 9
    assert found[key("stash_appscode_com_repository_snapshot_count", invoker)] == 10
    assert found[key("stash_repository_size_bytes", invoker)] == 4254


async def test_a_rejected_push_is_not_retried(gateway: Gateway) -> None:
    """A 4xx (the gateway's consistency check) fails at once, with the gateway's reason in the message."""
    job = fresh_job()
    name = f"stashlet_test_{uuid.uuid4().hex[:8]}"
    as_gauge = CollectorRegistry()
    Gauge(name, "a gauge here", registry=as_gauge).set(1)
    await push.push(gateway.url, job, push.host_grouping_key("host-0"), as_gauge)
    as_summary = CollectorRegistry()
    Summary(name, "a summary there", registry=as_summary).observe(1)

    started = time.monotonic()
    with pytest.raises(MetricsPushFailed) as failed:
        await push.push(gateway.url, job, push.host_grouping_key("host-1"), as_summary, backoff=2.0)
    assert time.monotonic() - started < 1.5  # one attempt: no 2 s wait
    message = str(failed.value)
    assert "HTTP 400" in message
    assert "inconsistent" in message
    assert job in message
    assert "after" not in message


async def test_a_stopped_gateway_fails_after_the_retries(tmp_path: Path) -> None:
    """Pushing to a gateway that has stopped raises MetricsPushFailed after 3 attempts, in a few seconds.

    The message names the gateway (without the URL's credentials) and the job.
    """
    gone = start_gateway(tmp_path)
    job = fresh_job()
    registry = build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0")])
    await push.push(gone.url, job, push.host_grouping_key("host-0"), registry)
    gone.process.stop()

    url = gone.url.replace("http://", "http://pusher:hunter2@")
    started = time.monotonic()
    with pytest.raises(MetricsPushFailed) as failed:
        await push.push(url, job, push.host_grouping_key("host-0"), registry, attempts=3, timeout=2)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3.0, elapsed  # waits 0.2 s + 0.4 s between the three attempts
    message = str(failed.value)
    assert gone.url in message
    assert job in message
    assert "after 3 attempts" in message
    assert "hunter2" not in message
    assert "pusher" not in message


# ---------------------------------------------------------------- retry policy and credentials


async def test_5xx_is_retried_and_credentials_go_as_basic_auth(aiohttp_server: AiohttpServer) -> None:
    """A gateway answering 503 twice gets a third POST that lands; URL credentials arrive as basic auth."""
    seen: list[tuple[str, str, str | None]] = []

    async def gateway(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        return web.Response(status=503 if len(seen) < 3 else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gateway)
    server = await aiohttp_server(app)
    url = f"http://pusher:p%40ss@127.0.0.1:{server.port}"

    registry = build.backup_host_metrics(LABELS, TARGET, [succeeded_host("host-0")])
    await push.push(url, "backupconfiguration-demo-x", {"hostname": "host-0"}, registry, backoff=0.05)

    expected_auth = "Basic " + base64.b64encode(b"pusher:p@ss").decode()
    assert seen == [("POST", "/metrics/job/backupconfiguration-demo-x/hostname/host-0", expected_auth)] * 3


async def test_5xx_until_the_end_fails_naming_the_status(aiohttp_server: AiohttpServer) -> None:
    """A gateway that keeps answering 500 yields MetricsPushFailed with the status, after all attempts."""
    calls = 0

    async def broken(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=500, text="storage full")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", broken)
    server = await aiohttp_server(app)
    with pytest.raises(MetricsPushFailed, match=r"HTTP 500 .*storage full.*after 2 attempts"):
        await push.push(
            f"http://127.0.0.1:{server.port}", "j", {"hostname": "h"}, CollectorRegistry(), attempts=2
        )
    assert calls == 2
