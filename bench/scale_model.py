"""The cost model of ``docs/scale.md``: the per-unit figures a ``bench.scale`` run measured, projected
to 1,000 and 10,000 backed-up workloads and 100,000 sessions a day.

    .venv/bin/python -m bench.scale_model FIGURES.json   # a run's --json-out

Every input is a measured figure; the shape of the cluster is the model's only assumption and is printed
with it: one BackupConfiguration per workload, ``REPLICAS`` replicas per workload (a Deployment's: each
runs a sidecar, one backs up), ``CONFIGS_PER_NAMESPACE`` configurations sharing a namespace (it matters
only for the namespace-wide watch the sidecar had before), each session one host.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import markdown_table

WORKLOADS = (1_000, 10_000)
SESSIONS_PER_DAY = 100_000
REPLICAS = 2
CONFIGS_PER_NAMESPACE = 10
HOSTS = 1
DAY = 86_400.0


@dataclass(frozen=True)
class Inputs:
    """The measured per-unit costs."""

    events_per_session_per_replica: float
    """Watch events the API server sends per session for each replica of the session's workload (the
    selected watch: each replica's agent receives its own sessions only)."""
    bytes_per_event: float
    idle_requests_per_agent_s: float
    """A sidecar at rest: its watch's renewals (no Lease is held or polled between sessions)."""
    idle_apiserver_millicores_per_agent: float
    apiserver_kib_per_agent: float
    requests_per_session: float
    """A real sidecar's API requests for one session (reads, status writes, Lease, events, Repository)."""
    requests_per_session_per_extra_replica: float
    """What each further replica of the workload sends for one session: it waits for the Lease (a try
    every 3 s; its session watch tells it when the session ends) and finds the host done."""
    job_series_per_config: float
    series_per_host: float
    scrape_bytes_per_series: float
    gateway_kib_per_series: float
    objects_per_config: float
    operator_mib_per_config: float
    operator_mib_base: float
    ready_s_per_config: float
    """Time to Ready per configuration when the operator starts with every configuration waiting (the
    last one's time over the count: a restart, or an install over existing configurations)."""
    kcm_millicores_per_1000_cronjobs: float
    rest_requests_per_config_s: float


def _rate(measured: float | None) -> float:
    """A rate measured against a quiet window: one below the quiet window's (the difference negative) is
    noise, and counts as none."""
    return max(0.0, measured or 0.0)


def _largest(runs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    return max((r for r in runs if r["mode"] == mode), key=lambda r: r["agents"])


def inputs(found: dict[str, Any]) -> Inputs:
    """The model's inputs from a run's figures (the largest fan-out and operator runs)."""
    selected = _largest(found["fan_out"], "selected")
    operators = sorted(found["operator"], key=lambda o: o["configs"])
    largest = operators[-1]
    if len(operators) > 1:
        small = operators[0]
        slope = (largest["operator_peak_rss_mib"] - small["operator_peak_rss_mib"]) / (
            largest["configs"] - small["configs"]
        )
    else:
        slope = largest["operator_peak_rss_mib"] / largest["configs"]
    base = largest["operator_peak_rss_mib"] - slope * largest["configs"]
    gateway = found["pushgateway"]
    real = found.get("real_agent") or {}
    return Inputs(
        events_per_session_per_replica=selected["received_per_session"] / selected["replicas"],
        bytes_per_event=selected["bytes_per_event"],
        idle_requests_per_agent_s=_rate(selected.get("idle_requests_per_agent_s")),
        idle_apiserver_millicores_per_agent=_rate(selected.get("idle_apiserver_millicores_per_agent")),
        apiserver_kib_per_agent=selected.get("apiserver_rss_per_agent_kib") or 0.0,
        requests_per_session=real.get("requests_per_session") or 0.0,
        requests_per_session_per_extra_replica=real.get("requests_per_session_per_extra_replica") or 0.0,
        job_series_per_config=gateway["job_series_per_config"],
        series_per_host=gateway["series_per_host"],
        scrape_bytes_per_series=gateway["scrape_bytes"] / max(gateway["series"], 1),
        gateway_kib_per_series=gateway["rss_per_config_kib"] / max(gateway["series_per_config"], 1e-9),
        objects_per_config=largest["objects_per_config"],
        operator_mib_per_config=slope,
        operator_mib_base=base,
        ready_s_per_config=(largest["all_ready_s"] or 0.0) / largest["configs"],
        kcm_millicores_per_1000_cronjobs=(largest.get("rest_kcm_millicores") or 0.0)
        * 1000
        / largest["configs"],
        rest_requests_per_config_s=_rate(largest.get("rest_requests_per_config_s")),
    )


@dataclass(frozen=True)
class Projection:
    """One cluster's costs: ``workloads`` backed up, ``sessions_per_day`` sessions."""

    workloads: int
    sessions_per_day: int
    agents: int
    watches: int
    idle_requests_s: float
    idle_apiserver_cores: float
    apiserver_watch_mib: float
    session_requests_s: float
    session_events_day: float
    session_events_day_before: float
    session_mib_day: float
    trigger_pods_s: float
    etcd_objects: float
    gateway_series: float
    gateway_scrape_mib: float
    gateway_mib: float
    operator_mib: float
    operator_restart_s: float
    kcm_cores: float
    operator_requests_s: float


def project(i: Inputs, workloads: int, sessions_per_day: int = SESSIONS_PER_DAY) -> Projection:
    """The costs of ``workloads`` workloads (module docstring's shape) and ``sessions_per_day``."""
    agents = workloads * REPLICAS
    events_day = sessions_per_day * i.events_per_session_per_replica * REPLICAS
    series = workloads * (i.job_series_per_config + HOSTS * i.series_per_host)
    # Kept per configuration besides its own objects: the newest finished session (backupHistoryLimit 1),
    # the trigger CronJob's last succeeded and last failed Job with their pods (history limits 1 and 1).
    kept_per_config = 1 + 2 * 2
    return Projection(
        workloads=workloads,
        sessions_per_day=sessions_per_day,
        agents=agents,
        watches=agents,
        idle_requests_s=agents * i.idle_requests_per_agent_s,
        idle_apiserver_cores=agents * i.idle_apiserver_millicores_per_agent / 1000,
        apiserver_watch_mib=agents * i.apiserver_kib_per_agent / 1024,
        session_requests_s=sessions_per_day
        * (i.requests_per_session + (REPLICAS - 1) * i.requests_per_session_per_extra_replica)
        / DAY,
        session_events_day=events_day,
        session_events_day_before=events_day * CONFIGS_PER_NAMESPACE,
        session_mib_day=events_day * i.bytes_per_event / 2**20,
        trigger_pods_s=sessions_per_day / DAY,
        etcd_objects=workloads * (i.objects_per_config + kept_per_config),
        gateway_series=series,
        gateway_scrape_mib=series * i.scrape_bytes_per_series / 2**20,
        gateway_mib=series * i.gateway_kib_per_series / 1024,
        operator_mib=i.operator_mib_base + workloads * i.operator_mib_per_config,
        operator_restart_s=workloads * i.ready_s_per_config,
        kcm_cores=workloads * i.kcm_millicores_per_1000_cronjobs / 1000 / 1000,
        operator_requests_s=workloads * i.rest_requests_per_config_s,
    )


def report(i: Inputs) -> str:
    """The projections as a Markdown table, with the shape assumed."""
    found = [project(i, w) for w in WORKLOADS]
    rows: list[tuple[str, Callable[[Projection], str]]] = [
        ("sidecars (watches of BackupSessions open)", lambda p: f"{p.agents:,}"),
        ("idle API requests/s (watch renewals)", lambda p: f"{p.idle_requests_s:,.0f}"),
        ("idle API server CPU, cores", lambda p: f"{p.idle_apiserver_cores:.2f}"),
        ("API server memory for the agents, MiB", lambda p: f"{p.apiserver_watch_mib:,.0f}"),
        ("session API requests/s (the real replicas' per session)", lambda p: f"{p.session_requests_s:.1f}"),
        ("session watch events/day, selected (now)", lambda p: f"{p.session_events_day:,.0f}"),
        (
            f"session watch events/day, namespace-wide ({CONFIGS_PER_NAMESPACE} configs a namespace)",
            lambda p: f"{p.session_events_day_before:,.0f}",
        ),
        ("session watch MiB/day sent, selected", lambda p: f"{p.session_mib_day:,.0f}"),
        (
            "trigger Jobs and pods started/s (CronJob controller, scheduler)",
            lambda p: f"{p.trigger_pods_s:.2f}",
        ),
        ("objects in etcd (configuration's own + history kept)", lambda p: f"{p.etcd_objects:,.0f}"),
        ("Pushgateway series", lambda p: f"{p.gateway_series:,.0f}"),
        ("Pushgateway scrape, MiB", lambda p: f"{p.gateway_scrape_mib:.1f}"),
        ("Pushgateway memory for them, MiB", lambda p: f"{p.gateway_mib:,.0f}"),
        ("operator RSS, MiB", lambda p: f"{p.operator_mib:,.0f}"),
        ("operator restart: every configuration Ready again, s", lambda p: f"{p.operator_restart_s:,.0f}"),
        ("controller manager CPU for the CronJobs at rest, cores", lambda p: f"{p.kcm_cores:.3f}"),
        ("operator API requests/s at rest", lambda p: f"{p.operator_requests_s:.2f}"),
    ]
    table = markdown_table(
        ["projected", *(f"{p.workloads:,} workloads" for p in found)],
        [[what, *(show(p) for p in found)] for what, show in rows],
    )
    shape = (
        f"Shape assumed: one configuration per workload, {REPLICAS} replicas each (one sidecar per replica), "
        f"{CONFIGS_PER_NAMESPACE} configurations a namespace, {HOSTS} host a session, "
        f"{SESSIONS_PER_DAY:,} sessions a day."
    )
    return f"{table}\n\n{shape}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("figures", type=Path, help="a bench.scale run's --json-out")
    args = parser.parse_args()
    found = inputs(json.loads(args.figures.read_text()))
    for name, value in vars(found).items():
        print(f"{name:<40} {value:.4g}")
    print()
    print(report(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
