"""What backed-up workloads cost a cluster, per unit, measured as the counts grow on a real control plane.

    .venv/bin/python -m bench.scale [--agents 10,50,200] [--operator-configs 200,1000]
        [--pushgateway-configs 300] [--sessions-per-config 2] [--idle-seconds 15] [--quick]
        [--json-out FILE]

It starts etcd, kube-apiserver and kube-controller-manager (``stashlet.localcluster``, the tests' and the
demo's control plane) in a temporary folder and runs, one after another:

1. **Baseline**: the quiet cluster's request rate and the API server's CPU over ``--idle-seconds``
   (kube-controller-manager's own traffic), subtracted from every idle figure below.
2. **One real sidecar** (``stashlet-agent sidecar`` with restic, its own account's token and RBAC, as
   ``bench.agent_vs_restic`` runs it): its idle request rate, and per session its API requests and the
   watch events it receives (its debug log), and the session's final status (the payload of step 3).
3. **Session fan-out**, for each agent count, twice: the agents watching every session of their namespace
   (``namespace``, the sidecar before issue 19) and only their configuration's (``selected``, now).
   Agents are spread over namespaces of five configurations each (R replicas each); each is the sidecar's
   own watch and Lease code in a few processes (:mod:`bench.scale_agents` says why). Each configuration
   gets ``--sessions-per-config`` sessions, each written as a real one-host session is (created, then the
   real agent's status writes with its final status). Counted: watch events the API server sent
   (``apiserver_watch_events_total``) and their bytes (``apiserver_watch_events_sizes``), and what each
   agent received; in the ``selected`` run also the agents' idle request rate, the API server's CPU per
   agent, its RSS and the watches open.
4. **Pushgateway**: the agent's metric builders and push (``stashlet.agent.metrics``) for
   ``--pushgateway-configs`` configurations of two hosts (300; 1,000 take 10 minutes: the gateway checks
   everything it holds on each push), as each session's hosts and last host push them,
   into the pinned Pushgateway: groups, series, exposition bytes and its RSS per configuration.
5. **Operator**: ``stashlet-operator run`` over N configurations (seed 003's shape, as
   ``bench/operator_ready.py``) for each ``--operator-configs`` count: time to Ready of each configuration
   (p50, p99, last; from a watch), its peak RSS and CPU, the objects per configuration (every kind
   of the namespace counted before and after: the operator's and what the controllers made of them),
   and at rest (every CronJob made, the rollouts done) the controller manager's CPU (the CronJob
   controller) and the request rate, against a quiet window before the operator started.

It prints one table (and the model of ``bench.scale_model`` from these figures); ``docs/scale.md`` holds
a run's. ``--quick`` is a smoke run (its figures are not the document's). Not in ``bench.all``: the full
run takes about 9 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from bench.agent_vs_restic import NAMESPACE, Agent, Bench, make_small
from bench.figures import fmt, log_entries, markdown_table
from bench.kubeapi import Api, service_account_token, token_kubeconfig
from bench.operator_ready import objects as operator_objects
from bench.scale_cluster import (
    ApiServerMetrics,
    GatewayContents,
    cpu_seconds,
    memory_mib,
    namespace_objects,
    objects_added,
    patch_status,
)

from bench import scale_model
from stashlet.agent.metrics import build as m
from stashlet.agent.metrics.push import host_grouping_key, job_name, push
from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSessionPhase, HostBackupStats, TargetPhase
from stashlet.api.sessions import build_session
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, http_ok
from stashlet.localcluster.processes import ManagedProcess, free_port
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess, agent_account, sidecar_rbac

REPO_ROOT = Path(__file__).resolve().parents[1]
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"
GROUP_PATH = f"/apis/{names.GROUP}/v1beta1"
CONFIGS_PER_NAMESPACE = 5
AGENTS_PER_NAMESPACE = 50
AGENTS_PER_PROCESS = 50
FINAL = ("Succeeded", "Failed", "Skipped")


class Cluster:
    """The control plane, an admin client, and its processes' ids."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.api = Api(plane.kubeconfig)
        started = plane.state.pids if plane.state else {}  # a cluster attached to, as a test's
        self.pids = {**started, **{p.name: p.pid for p in plane.processes}}

    def metrics(self) -> ApiServerMetrics:
        return ApiServerMetrics.read(self.api)

    def cpu(self, process: str) -> float:
        return cpu_seconds(self.pids[process])

    def rss(self, process: str) -> float:
        return memory_mib(self.pids[process])

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.plane.kubectl(
            "apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        )

    def namespace(self, name: str) -> None:
        self.api.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )


@dataclass(frozen=True)
class Rates:
    """What the cluster did per second over a quiet window."""

    seconds: float
    requests_per_s: float
    apiserver_cpu: float
    """API server CPU seconds per second (1.0 = one core)."""
    kcm_cpu: float

    @classmethod
    def over(cls, cluster: Cluster, seconds: float) -> Rates:
        before, cpu, kcm = (
            cluster.metrics(),
            cluster.cpu("kube-apiserver"),
            cluster.cpu("kube-controller-manager"),
        )
        started = time.monotonic()
        time.sleep(seconds)
        after = cluster.metrics()
        took = time.monotonic() - started
        return cls(
            took,
            (after.requests - before.requests) / took,
            (cluster.cpu("kube-apiserver") - cpu) / took,
            (cluster.cpu("kube-controller-manager") - kcm) / took,
        )

    def minus(self, base: Rates) -> Rates:
        return Rates(
            self.seconds,
            self.requests_per_s - base.requests_per_s,
            self.apiserver_cpu - base.apiserver_cpu,
            self.kcm_cpu - base.kcm_cpu,
        )


# --- 2. one real sidecar -----------------------------------------------------------------------------------


def real_agent(cluster: Cluster, work: Path, sessions: int, idle_seconds: float) -> dict[str, Any]:
    """A real sidecar (restic and all): its idle requests per second (the quiet cluster's before it started
    subtracted), and per session its requests (beyond its idle ones), the watch events it received and
    the session's final status; then with a second replica of its Deployment beside it, the requests of
    both per session (one backs up, the other waits for the Lease and finds the host done)."""
    bench = Bench(work / "real", cluster.plane, str(tools.ensure("restic")))
    (work / "real" / "repos").mkdir(parents=True)
    bench.setup()
    data = work / "real-data"
    make_small(data, 20)
    quiet = Rates.over(cluster, idle_seconds)
    agent = bench.start_agent("real", data, log_level="debug")
    try:
        idle = Rates.over(cluster, idle_seconds)
        requests, seconds = [], []
        for _ in range(sessions):
            before, started = cluster.metrics(), time.monotonic()
            bench.session(agent)
            took = time.monotonic() - started
            # Less the bench's own (the POST, the watch that waits for the end) and the idle rate.
            requests.append(cluster.metrics().requests - before.requests - 2 - idle.requests_per_s * took)
            seconds.append(took)
        final = cluster.api.request("GET", f"{GROUP_PATH}/namespaces/bench/backupsessions/real-{sessions}")
        replica = bench.start_replica(agent, "real-pod-2")
        try:
            paired, backed_up_by = [], []
            for _ in range(sessions):
                before, started = cluster.metrics(), time.monotonic()
                own, pod = two_replica_session(cluster, agent)
                took = time.monotonic() - started
                paired.append(
                    cluster.metrics().requests - before.requests - own - 2 * idle.requests_per_s * took
                )
                backed_up_by.append(pod)
        finally:
            replica.stop()
    finally:
        agent.stop()
    events: dict[str, int] = {}
    for entry in log_entries(agent.log.read_text(errors="replace")):
        if entry.get("msg") == "backup session event":
            events[entry["session"]] = events.get(entry["session"], 0) + 1
    per_session = [events.get(f"bench/real-{i + 1}", 0) for i in range(sessions)]
    return {
        "idle_requests_per_s": idle.requests_per_s - quiet.requests_per_s,
        "requests_per_session": statistics.median(requests),
        "session_seconds": statistics.median(seconds),
        "events_per_session": statistics.median(per_session),
        "events_by_session": per_session,
        "final_status": final["status"],
        "requests_per_session_two_replicas": statistics.median(paired),
        "requests_per_session_per_extra_replica": statistics.median(paired) - statistics.median(requests),
        "two_replica_sessions_by_pod": backed_up_by,
    }


SETTLE_S = 4.0
"""Seconds a session's waiting replica may still send after the Lease is given back (its last try of the
Lease, every 3 s, and its read of the session once it has the Lease)."""


def two_replica_session(cluster: Cluster, agent: Agent) -> tuple[int, str]:
    """One session of ``agent``'s configuration with two replicas running, until it has ended, the Lease
    is given back and the waiting replica is quiet: the requests the bench itself sent, and the pod that
    backed up."""
    agent.sessions += 1
    session = build_session(agent.config, int(time.time()))
    name = f"{agent.config.metadata.name}-{agent.sessions}"
    session.metadata.name = name
    sessions = f"{GROUP_PATH}/namespaces/{NAMESPACE}/backupsessions"
    cluster.api.create(sessions, session.to_dict())
    final, _ = cluster.api.wait(
        sessions, name, lambda o: (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"), 300
    )
    if final["status"]["phase"] != "Succeeded":
        raise RuntimeError(f"BackupSession {name} {final['status']['phase']}: {json.dumps(final['status'])}")
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/" + names.lease_name(
        "Deployment", agent.config.metadata.name or "", "backup"
    )
    own = 2  # the POST, the watch
    while cluster.api.request("GET", lease)["spec"].get("holderIdentity"):  # the winner's upkeep runs
        own += 1
        time.sleep(0.2)
    time.sleep(SETTLE_S)
    return own + 1, final["status"]["targets"][0]["stats"][0].get("pod") or ""


# --- 3. session fan-out ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How many agents, over how many namespaces, configurations and replicas."""

    namespaces: int
    configs_per_namespace: int
    replicas: int

    @classmethod
    def for_agents(cls, agents: int) -> Layout:
        namespaces = max(1, math.ceil(agents / AGENTS_PER_NAMESPACE))
        replicas = max(1, agents // (namespaces * CONFIGS_PER_NAMESPACE))
        return cls(namespaces, CONFIGS_PER_NAMESPACE, replicas)

    @property
    def configs(self) -> int:
        return self.namespaces * self.configs_per_namespace

    @property
    def agents(self) -> int:
        return self.configs * self.replicas


def configuration(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{names.GROUP}/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": {"name": "repo"},
            "schedule": "0 3 * * *",
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "paths": ["/data"],
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }


def agents_of(
    cluster: Cluster, work: Path, layout: Layout, prefix: str
) -> tuple[list[BackupConfiguration], list[dict[str, Any]]]:
    """Namespaces, configurations, each configuration's account with the sidecar's RBAC and a token; the
    configurations and the agents' specs (``bench.scale_agents``)."""
    configs: list[BackupConfiguration] = []
    agents: list[dict[str, Any]] = []
    for k in range(layout.namespaces):
        namespace = f"{prefix}-{k}"
        cluster.namespace(namespace)
        rbac: list[dict[str, Any]] = []
        for c in range(layout.configs_per_namespace):
            created = cluster.api.create(
                f"{GROUP_PATH}/namespaces/{namespace}/backupconfigurations",
                configuration(namespace, f"bc-{c}"),
            )
            bc = BackupConfiguration.from_dict(created)
            configs.append(bc)
            rbac += sidecar_rbac(
                bc,
                WORKLOAD_KINDS["Deployment"],
                f"bc-{c}",
                repository=RepositoryAccess(namespace, "repo", "secret"),
            )
        cluster.apply(rbac)
        for bc in configs[-layout.configs_per_namespace :]:
            name = bc.metadata.name or ""
            token = service_account_token(cluster.api, namespace, agent_account(bc))
            kubeconfig = token_kubeconfig(
                cluster.plane.kubeconfig, token, work / f"kc-{namespace}-{name}", namespace
            )
            for r in range(layout.replicas):
                agents.append(
                    {
                        "id": f"{namespace}/{name}/{r}",
                        "namespace": namespace,
                        "invoker": name,
                        "kubeconfig": str(kubeconfig),
                    }
                )
    return configs, agents


class AgentProcesses:
    """The agents in processes of ``AGENTS_PER_PROCESS`` (``bench.scale_agents``), every watch listed."""

    def __init__(self, agents: list[dict[str, Any]], mode: str, work: Path) -> None:
        self.processes: list[tuple[subprocess.Popen[str], Any]] = []
        self.events: dict[str, int] = {}
        """The events each agent received, once stopped."""
        for i in range(0, len(agents), AGENTS_PER_PROCESS):
            log = (work / f"agents-{mode}-{len(agents)}-{i}.log").open("w")
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.scale_agents"],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            self.processes.append((process, log))
            self._say(process, json.dumps({"mode": mode, "agents": agents[i : i + AGENTS_PER_PROCESS]}))
        for process, log in self.processes:
            line = self._hear(process)
            if not line.startswith('{"ready"'):
                self.stop()
                raise RuntimeError(f"agents did not start ({line!r}); see {log.name}")

    @staticmethod
    def _say(process: subprocess.Popen[str], line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()

    @staticmethod
    def _hear(process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        return process.stdout.readline()

    def requests(self) -> int:
        """The requests the agents have sent so far (counted as they send them)."""
        total = 0
        for process, _ in self.processes:
            self._say(process, "count")
            total += int(json.loads(self._hear(process))["requests"])
        return total

    def stop(self) -> int:
        """Stop every agent; the requests they sent in all (:attr:`events` is then filled)."""
        total = 0
        for process, _ in self.processes:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self._say(process, "stop")
        for process, log in self.processes:
            assert process.stdin is not None
            assert process.stdout is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            for line in process.stdout:
                if line.startswith('{"events"'):
                    answer = json.loads(line)
                    self.events.update(answer["events"])
                    total += int(answer["requests"])
            process.stdout.close()
            process.wait(timeout=60)
            log.close()
        return total


def session_writes(final_status: dict[str, Any], writes: int) -> list[dict[str, Any]]:
    """The status writes of a one-host session, the real agent's final status the last: as many writes as
    the real agent made (``writes``), each a change (so each is one watch event)."""
    running = {**final_status, "phase": "Running"}
    steps = [{**running, "sessionDuration": f"{i + 1}s"} for i in range(max(0, writes - 1))]
    return [*steps, final_status] if writes else []


def fan_out(
    cluster: Cluster,
    work: Path,
    layout: Layout,
    mode: str,
    *,
    sessions_per_config: int,
    final_status: dict[str, Any],
    writes: int,
    idle_seconds: float,
    prefix: str = "",
) -> dict[str, Any]:
    """One agent count in one mode (module docstring, step 3); the idle figures when ``idle_seconds``.
    Its namespaces are ``<prefix>-<n>`` (default ``fan-<mode>-<agents>``)."""
    prefix = prefix or f"fan-{mode[:3]}-{layout.agents}"
    configs, specs = agents_of(cluster, work, layout, prefix)
    found: dict[str, Any] = {
        "mode": mode,
        "agents": layout.agents,
        "configs": layout.configs,
        "namespaces": layout.namespaces,
        "replicas": layout.replicas,
    }
    quiet = Rates.over(cluster, idle_seconds) if idle_seconds > 0 else None
    rss_before = cluster.rss("kube-apiserver")
    agents = AgentProcesses(specs, mode, work)
    try:
        found["watches_open"] = cluster.metrics().session_watches
        if quiet is not None:
            sent = agents.requests()
            idle = Rates.over(cluster, idle_seconds)
            found["idle_requests_per_agent_s"] = (agents.requests() - sent) / (idle.seconds * layout.agents)
            found["idle_apiserver_millicores_per_agent"] = (
                (idle.apiserver_cpu - quiet.apiserver_cpu) * 1000 / layout.agents
            )
            found["apiserver_rss_mib"] = cluster.rss("kube-apiserver")
            found["apiserver_rss_per_agent_kib"] = (
                (found["apiserver_rss_mib"] - rss_before) * 1024 / layout.agents
            )
        before, cpu = cluster.metrics(), cluster.cpu("kube-apiserver")
        sessions = 0
        for s in range(sessions_per_config):
            for bc in configs:
                session = build_session(bc, int(time.time()))
                session.metadata.name = f"{bc.metadata.name}-{s}"
                path = f"{GROUP_PATH}/namespaces/{bc.metadata.namespace}/backupsessions"
                cluster.api.create(path, session.to_dict())
                for status in session_writes(final_status, writes):
                    patch_status(cluster.api, f"{path}/{session.metadata.name}", status)
                sessions += 1
        own = sessions_per_config * (1 + writes)
        expected = own * (layout.configs_per_namespace if mode == "namespace" else 1) * layout.agents
        deadline = time.monotonic() + 120
        while (after := cluster.metrics()).session_watch_events - before.session_watch_events < expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        found["apiserver_cpu_s"] = cluster.cpu("kube-apiserver") - cpu
    finally:
        agents.stop()
    received = sum(agents.events.values())
    sent_events = after.session_watch_events - before.session_watch_events
    found.update(
        sessions=sessions,
        events_expected=expected,
        events_sent=sent_events,
        events_received=received,
        received_per_session=received / sessions,
        received_per_agent_per_session=received / sessions / layout.agents,
        received_per_agent_min=min(agents.events.values(), default=0),
        received_per_agent_max=max(agents.events.values(), default=0),
        bytes_per_event=(after.session_watch_bytes - before.session_watch_bytes) / max(sent_events, 1),
    )
    found["bytes_per_session"] = found["bytes_per_event"] * found["received_per_session"]
    return found


# --- 4. Pushgateway ----------------------------------------------------------------------------------------


def host_stats(final_status: dict[str, Any] | None, host: str) -> HostBackupStats:
    """The real session's host entry (or a made-up one without a real session) as host ``host``."""
    try:
        entry = dict(final_status["targets"][0]["stats"][0]) if final_status else {}
    except (KeyError, IndexError):
        entry = {}
    entry = entry or {"phase": "Succeeded", "duration": "3s", "snapshots": [{"totalSize": "1 MiB"}]}
    return HostBackupStats.from_dict({**entry, "hostname": host})


async def push_configuration(
    url: str, namespace: str, config: str, hosts: int, final: dict[str, Any] | None
) -> None:
    """What one session's hosts and its last host push (``stashlet.agent.metrics.report``): each host's
    metrics under its host group, the session's and its target's and the Repository's under the job."""
    labels = m.InvokerLabels("BackupConfiguration", config, namespace, repository="repo")
    target = m.TargetLabels("StatefulSet", config, namespace)
    job = job_name("BackupConfiguration", namespace, config)
    now = datetime.now(UTC)
    for h in range(hosts):
        host = f"host-{h}"
        await push(
            url,
            job,
            host_grouping_key(host),
            m.backup_host_metrics(labels, target, [host_stats(final, host)]),
        )
    session = m.merge(
        m.backup_session_metrics(
            labels, BackupSessionPhase.SUCCEEDED, duration_seconds=12.0, target_count=1, finished_at=now
        ),
        m.backup_target_metrics(labels, target, TargetPhase.SUCCEEDED, total_hosts=hosts, finished_at=now),
    )
    await push(url, job, {}, session)
    repository = m.repository_metrics(
        labels,
        integrity=True,
        size_bytes=1e9,
        snapshot_count=5,
        snapshots_removed=1,
        last_backup_time=now,
        last_check_time=now,
    )
    await push(url, job, {}, repository)


def pushgateway(work: Path, configs: int, hosts: int, final: dict[str, Any] | None) -> dict[str, Any]:
    """Step 4 of the module docstring."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess.start(
        "pushgateway",
        [str(tools.ensure("pushgateway")), f"--web.listen-address=127.0.0.1:{port}"],
        work / "pushgateway.log",
    )
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{url}/-/ready"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Pushgateway did not start: {process.log_tail()}")
            time.sleep(0.1)
        rss_before = memory_mib(process.pid)

        async def push_all() -> float:
            gate = asyncio.Semaphore(8)

            async def one(c: int) -> None:
                async with gate:
                    await push_configuration(url, f"ns-{c // 100}", f"bc-{c}", hosts, final)

            started = time.monotonic()
            await asyncio.gather(*(one(c) for c in range(configs)))
            return time.monotonic() - started

        seconds = asyncio.run(push_all())
        contents = GatewayContents.read(url)
        rss = memory_mib(process.pid)
    finally:
        process.stop()
    return {
        "configs": configs,
        "hosts": hosts,
        "groups": contents.groups,
        "series": contents.series,
        "scrape_bytes": contents.scrape_bytes,
        "groups_per_config": contents.groups / configs,
        "series_per_config": contents.series / configs,
        "job_series_per_config": (contents.series - contents.host_series) / configs,
        "series_per_host": contents.host_series / (configs * hosts),
        "scrape_bytes_per_config": contents.scrape_bytes / configs,
        "rss_mib": rss,
        "rss_per_config_kib": (rss - rss_before) * 1024 / configs,
        "push_ms_per_session": seconds * 1000 / configs,
    }


# --- 5. operator -------------------------------------------------------------------------------------------


def ready_times(api: Api, namespace: str, count: int, started: float, timeout: float) -> list[float]:
    """Seconds from ``started`` at which each configuration first reported Ready for its generation (read
    from a watch)."""
    path = f"{GROUP_PATH}/namespaces/{namespace}/backupconfigurations"
    seen: dict[str, float] = {}
    deadline = started + timeout
    version = ""
    while len(seen) < count and time.monotonic() < deadline:
        query = {"watch": "true", "timeoutSeconds": str(max(1, int(deadline - time.monotonic())))}
        if version:
            query["resourceVersion"] = version
        request = urllib.request.Request(
            f"{api.server}{path}?{urllib.parse.urlencode(query)}", headers=api.headers
        )
        with urllib.request.urlopen(request, context=api.ssl, timeout=timeout) as stream:
            for line in stream:
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = ""
                    break
                version = obj.get("metadata", {}).get("resourceVersion", version)
                status = obj.get("status") or {}
                name = obj["metadata"]["name"]
                if (
                    status.get("phase") == "Ready"
                    and status.get("observedGeneration") == obj["metadata"]["generation"]
                ):
                    seen.setdefault(name, time.monotonic() - started)
                if len(seen) == count:
                    break
    return sorted(seen.values())


def settled(cluster: Cluster, namespace: str, count: int, timeout: float = 300) -> None:
    """Wait until the controller manager has made ``count`` ReplicaSets (a Deployment's first, and the
    one of the rollout the sidecar's injection makes; it makes them at its own request rate, 20 a second
    by default)."""
    deadline = time.monotonic() + timeout
    while namespace_objects(cluster.plane.kubectl, namespace)["replicaset.apps"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{namespace}: the Deployments' ReplicaSets not all made in {timeout:.0f}s")
        time.sleep(2)


NOT_THE_OPERATORS = ("replicaset.apps", "event")
"""Kinds counted apart: the rollout's new ReplicaSet (the controller manager's, at its own pace) and the
events (which expire after an hour)."""


def operator(
    cluster: Cluster, work: Path, count: int, idle_seconds: float, namespace: str = ""
) -> dict[str, Any]:
    """Step 5 of the module docstring, for ``count`` configurations (in ``namespace``, by default
    ``operator-<count>``)."""
    namespace = namespace or f"operator-{count}"
    cluster.namespace(namespace)
    docs = operator_objects(namespace, count)
    for i in range(0, len(docs), 200):
        cluster.plane.kubectl("create", "-f", "-", input_text=yaml.safe_dump_all(docs[i : i + 200]))
    settled(cluster, namespace, count)
    quiet = Rates.over(cluster, idle_seconds) if idle_seconds > 0 else None
    before = namespace_objects(cluster.plane.kubectl, namespace)
    command = [
        str(Path(sys.executable).parent / "stashlet-operator"),
        "run",
        f"--namespaces={namespace}",
        f"--kubeconfig={cluster.plane.kubeconfig}",
        "--log-level=warning",
    ]
    log = (work / f"operator-{count}.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    times: list[float] = []
    watcher = threading.Thread(
        target=lambda: times.extend(ready_times(cluster.api, namespace, count, started, 600)), daemon=True
    )
    try:
        watcher.start()
        watcher.join(610)
        cpu_ready = cpu_seconds(process.pid)
        time.sleep(3)  # the token Secrets filled, the last statuses written
        after = namespace_objects(cluster.plane.kubectl, namespace)
        settled(cluster, namespace, 2 * count)  # the rollouts done: what remains is the operator at rest
        rss, peak = memory_mib(process.pid), memory_mib(process.pid, "VmHWM")
        rest = Rates.over(cluster, idle_seconds).minus(quiet) if quiet is not None else None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    added = objects_added(before, after)
    found: dict[str, Any] = {
        "configs": count,
        "ready": len(times),
        "ready_p50_s": statistics.median(times) if times else None,
        "ready_p99_s": times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)] if times else None,
        "all_ready_s": times[-1] if len(times) == count else None,
        "operator_cpu_s": cpu_ready,
        "operator_rss_mib": rss,
        "operator_peak_rss_mib": peak,
        "objects_added": added,
        "objects_per_config": sum(n for kind, n in added.items() if kind not in NOT_THE_OPERATORS) / count,
    }
    if rest is not None:
        found["rest_requests_per_config_s"] = rest.requests_per_s / count
        found["rest_kcm_millicores"] = rest.kcm_cpu * 1000
        found["rest_apiserver_millicores"] = rest.apiserver_cpu * 1000
    return found


# --- the run -----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json_out"}}
    plane = ControlPlane(work / "plane")
    plane.start(crds=CRDS)
    try:
        cluster = Cluster(plane)
        print("baseline ...", flush=True)
        base = Rates.over(cluster, args.idle_seconds)
        found["baseline"] = {
            "requests_per_s": base.requests_per_s,
            "apiserver_millicores": base.apiserver_cpu * 1000,
            "kcm_millicores": base.kcm_cpu * 1000,
            "apiserver_rss_mib": cluster.rss("kube-apiserver"),
        }
        final: dict[str, Any] | None = None
        writes = args.writes
        if args.real_sessions:
            print(f"one real sidecar, {args.real_sessions} sessions ...", flush=True)
            found["real_agent"] = real_agent(cluster, work, args.real_sessions, args.idle_seconds)
            final = found["real_agent"]["final_status"]
            writes = max(1, round(found["real_agent"]["events_per_session"]) - 1)
        found["writes_per_session"] = writes
        found["fan_out"] = []
        for agents in args.agents:
            layout = Layout.for_agents(agents)
            for mode in ("namespace", "selected"):
                print(f"fan-out: {layout.agents} agents ({mode}) ...", flush=True)
                found["fan_out"].append(
                    fan_out(
                        cluster,
                        work,
                        layout,
                        mode,
                        sessions_per_config=args.sessions_per_config,
                        final_status=final or {"phase": "Succeeded"},
                        writes=writes,
                        idle_seconds=args.idle_seconds if mode == "selected" else 0,
                    )
                )
        if args.pushgateway_configs:
            print(f"Pushgateway: {args.pushgateway_configs} configurations ...", flush=True)
            found["pushgateway"] = pushgateway(work, args.pushgateway_configs, 2, final)
        found["operator"] = []
        for count in args.operator_configs:
            print(f"operator: {count} configurations ...", flush=True)
            found["operator"].append(operator(cluster, work, count, args.idle_seconds))
        found["etcd_rss_mib"] = cluster.rss("etcd")
        found["apiserver_rss_mib"] = cluster.rss("kube-apiserver")
    finally:
        plane.stop()
    return found


def report(found: dict[str, Any]) -> str:
    """The tables of a run: fan-out before/after, the per-unit costs, and the model."""
    rows = []
    for f in found["fan_out"]:
        rows.append(
            [
                f"{f['agents']} ({f['namespaces']} x {f['configs'] // f['namespaces']} x {f['replicas']})",
                f["mode"],
                f"{f['received_per_session']:.1f}",
                f"{f['received_per_agent_per_session']:.2f}",
                f"{f['received_per_agent_min']}-{f['received_per_agent_max']}",
                f"{f['bytes_per_session'] / 1024:.1f}",
                f"{f['apiserver_cpu_s'] * 1000 / f['sessions']:.1f}",
                fmt(f.get("idle_requests_per_agent_s"), ".3f"),
                fmt(f.get("idle_apiserver_millicores_per_agent"), ".2f"),
                fmt(f.get("apiserver_rss_per_agent_kib"), ".0f"),
            ]
        )
    fan = markdown_table(
        [
            "agents (namespaces x configs x replicas)",
            "sessions watched",
            "watch events received / session",
            "per agent / session",
            "received per agent",
            "KiB sent / session",
            "API server CPU ms / session",
            "idle req/s / agent",
            "idle API server mcores / agent",
            "API server KiB / agent",
        ],
        rows,
    )
    lines = [fan, ""]
    real = found.get("real_agent")
    if real:
        lines += [
            f"one real sidecar: {real['requests_per_session']:.0f} API requests and "
            f"{real['events_per_session']:.0f} watch events per session ({real['events_by_session']}), "
            f"{real['session_seconds']:.1f} s a session; idle {real['idle_requests_per_s']:.3f} req/s; "
            f"with a second replica {real['requests_per_session_two_replicas']:.0f} requests per session "
            f"(+{real['requests_per_session_per_extra_replica']:.0f}; backed up by "
            f"{', '.join(real['two_replica_sessions_by_pod'])})",
        ]
    gw = found.get("pushgateway")
    if gw:
        lines += [
            f"Pushgateway, {gw['configs']} configurations of {gw['hosts']} hosts: {gw['groups']} groups, "
            f"{gw['series']} series ({gw['series_per_config']:.0f} a configuration), "
            f"{gw['scrape_bytes'] / 1024:.0f} KiB a scrape ({gw['scrape_bytes_per_config'] / 1024:.1f} KiB a "
            f"configuration), RSS {gw['rss_mib']:.0f} MiB (+{gw['rss_per_config_kib']:.0f} KiB a "
            f"configuration), {gw['push_ms_per_session']:.0f} ms of pushes a session",
        ]
    for op in found.get("operator", []):
        added = ", ".join(f"{kind} {n / op['configs']:.2g}" for kind, n in op["objects_added"].items())
        lines += [
            f"operator, {op['configs']} configurations: Ready p50 {fmt(op['ready_p50_s'], '.1f', ' s')}, "
            f"p99 {fmt(op['ready_p99_s'], '.1f', ' s')}, all {fmt(op['all_ready_s'], '.1f', ' s')} "
            f"({op['ready']} Ready); peak RSS {op['operator_peak_rss_mib']:.0f} MiB, CPU "
            f"{op['operator_cpu_s']:.1f} s; {op['objects_per_config']:.1f} objects a configuration "
            f"({added}); "
            f"at rest {fmt(op.get('rest_requests_per_config_s'), '.4f')} req/s a configuration, "
            f"controller manager {fmt(op.get('rest_kcm_millicores'), '.0f')} mcores over baseline",
        ]
    base = found["baseline"]
    lines += [
        f"baseline: {base['requests_per_s']:.1f} req/s, API server {base['apiserver_millicores']:.0f} mcores "
        f"and {base['apiserver_rss_mib']:.0f} MiB, controller manager {base['kcm_millicores']:.0f} mcores; "
        f"at the end API server {found['apiserver_rss_mib']:.0f} MiB, etcd {found['etcd_rss_mib']:.0f} MiB",
        "",
        scale_model.report(scale_model.inputs(found)),
    ]
    return "\n".join(lines)


def counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=counts, default=None, help="agent counts (10,50,200; --quick 10)")
    parser.add_argument("--operator-configs", type=counts, default=None, help="200,1000 (--quick 10,20)")
    parser.add_argument(
        "--pushgateway-configs",
        type=int,
        default=None,
        help="300 (--quick 20); a push costs time in proportion to what it holds",
    )
    parser.add_argument("--sessions-per-config", type=int, default=2)
    parser.add_argument("--real-sessions", type=int, default=None, help="the real sidecar's (3; --quick 1)")
    parser.add_argument(
        "--writes", type=int, default=3, help="status writes a session (without a real sidecar)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="each quiet window, at least the Lease's 5 s (15; --quick 6)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (the defaults above in brackets)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    for key, full, quick in (
        ("agents", [10, 50, 200], [10]),
        ("operator_configs", [200, 1000], [10, 20]),
        ("pushgateway_configs", 300, 20),
        ("real_sessions", 3, 1),
        ("idle_seconds", 15.0, 6.0),
    ):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stashlet-bench-scale-") as tmp:
        found = run(args, Path(tmp))
    found["seconds"] = time.monotonic() - started
    text = report(found)
    print("\n" + ("Scaled down (--quick): a smoke run.\n" if args.quick else "") + text)
    print(f"\nbench wall time {found['seconds']:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(found, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
