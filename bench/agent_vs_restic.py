"""Backup through the stashlet sidecar versus bare restic, on the same data, side by side in one run.

    .venv/bin/python -m bench.agent_vs_restic [--large-mib 256] [--small-files 50000] [--rounds 3]
        [--latency-sessions 50] [--quick] [--json-out FILE]

Three sets: ``large`` (256 MiB of random data in 64 MiB files), ``small`` (50,000 files of 512 bytes in
folders of 1,000) and ``unchanged re-run`` (the small set backed up again into the same repository).
Each round, for each of large and small, both sides get a fresh repository, initialised beforehand and
untimed on both sides (the first backup into an existing repository); the unchanged re-run goes into the
repository the small backup just filled. Which side goes first alternates between rounds.

- Bare side, what a user runs with restic's defaults: ``restic backup --host=host-0 <data>`` with
  ``RESTIC_REPOSITORY``/``RESTIC_PASSWORD`` set and restic's cache on, in a cache folder of its own kept
  across rounds (``--cache-dir``, where the default ``~/.cache/restic`` would be). Timed from spawn to exit.
- Agent side: a real ``stashlet-agent sidecar`` process per set and round on a local control plane
  (etcd, kube-apiserver, kube-controller-manager), as a pod runs it: its own ServiceAccount's token with
  exactly the RBAC the operator grants (``sidecar_rbac``), the storage Secret mounted as a folder, its
  restic cache in its temporary folder, log level info. The configuration keeps every snapshot
  (``keepLast: 1000``, no prune), so retention removes nothing. A BackupSession is created as the
  trigger creates it (``build_session``) by a POST straight to the API server; the session's wall time
  runs from the client's clock just before that POST to the watch event that shows phase Succeeded:
  everything the session does (pick-up, Lease, restic's processes, retention, any check, status,
  events, metrics).

Per set it prints the median over rounds of both wall times and of their ratio, and from the agent's log
line "backup session host finished" its own time beyond its restic processes and the number of restic
processes it ran ("n/a" when the agent does not write that line), with the restic processes counted
apart by sampling its children every 25 ms. Work the agent still does after the session shows Succeeded
(restic processes it starts then, and for how long) is reported beside, not in the session's time; the
next measurement starts only once the agent is idle again (its cost line written, then no restic child
for 0.5 s), so nothing of one session runs beside the next measurement.

Latency: a separate agent at log level debug backs up a tiny set (``--latency-sessions`` sessions, one
after another); creation -> restic start is from the client's clock just before the POST to the time
stamped on the agent's first "running <restic ...>" line of that session (the agent logs it as it
spawns restic; same machine, same clock). p50 and p99 are interpolated between ranks.

Memory: the agent's Python process, idle (VmRSS just before its first session: /readyz has answered,
so its watch has listed) and peak (VmHWM after its sessions); restic's own peak apart (the agent's
``restic_max_rss_kib`` when it logs one, else the largest VmHWM sampled from its restic children every
25 ms). The machine's load (/proc/loadavg) before and after, and the restic version, are printed too.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.figures import NA, SessionCost, fmt
from bench.kubeapi import Api, service_account_token, token_kubeconfig

from bench import figures
from stashlet.api import agent_identity
from stashlet.api.agent_contract import AgentInvocation
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.sessions import build_session
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account
from stashlet.localcluster.processes import free_port
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess, agent_account, sidecar_rbac

REPO_ROOT = Path(__file__).resolve().parents[1]
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"
PASSWORD = "bench-password"
NAMESPACE = "bench"
SECRET = "bench-secret"
SESSIONS = f"/apis/stash.appscode.com/v1beta1/namespaces/{NAMESPACE}/backupsessions"
SESSION_TIMEOUT = 1800.0
LABELS = ("large", "small", "unchanged re-run")
IDLE_QUIET = 0.5
"""Seconds without a restic child after which an agent is idle (a process it starts shows within 25 ms)."""


# --- data ---------------------------------------------------------------------------------------------


def make_large(root: Path, mib: int) -> None:
    """``mib`` MiB of random data in files of at most 64 MiB."""
    root.mkdir(parents=True)
    left, i = mib, 0
    while left > 0:
        size = min(64, left)
        (root / f"large-{i}.bin").write_bytes(os.urandom(size * 1024 * 1024))
        left, i = left - size, i + 1


def make_small(root: Path, count: int, size: int = 512) -> None:
    """``count`` files of ``size`` random bytes, 1,000 to a folder."""
    for i in range(count):
        folder = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(os.urandom(size))


# --- processes ----------------------------------------------------------------------------------------


class ResticChildren(threading.Thread):
    """Watches a process's restic children every 25 ms until stopped: the largest VmHWM seen (KiB), when
    each restic process was first seen and when one was last seen running (Unix times)."""

    EVERY = 0.025

    def __init__(self, parent: int) -> None:
        super().__init__(daemon=True)
        self.children = Path(f"/proc/{parent}/task/{parent}/children")
        self.peak_kib = 0
        self.last_seen = 0.0
        self._first_seen: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.wait(self.EVERY):
            try:
                pids = self.children.read_text().split()
            except OSError:
                return
            now = time.time()
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if not status.startswith("Name:\trestic"):
                    continue
                with self._lock:
                    if int(pid) not in self._first_seen:
                        self._first_seen[int(pid)] = (now, self._command(pid))
                    self.last_seen = now
                self.peak_kib = max(self.peak_kib, figures.proc_status_kib(status, "VmHWM") or 0)

    @staticmethod
    def _command(pid: str) -> str:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return "?"
        return figures.restic_subcommand(argv) or "?"

    def started_between(self, start: float, end: float) -> list[str]:
        """The subcommands of the restic processes first seen in ``(start, end]``, in order."""
        with self._lock:
            return [command for seen, command in sorted(self._first_seen.values()) if start < seen <= end]

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=5)
        return self.peak_kib


@dataclass
class Agent:
    """One ``stashlet-agent sidecar`` process serving one BackupConfiguration."""

    config: BackupConfiguration
    popen: subprocess.Popen[bytes]
    log: Path
    restic: ResticChildren
    sessions: int = 0

    def stop(self) -> None:
        self.restic.stop()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class SessionResult:
    """One BackupSession through the agent."""

    wall_s: float
    cost: SessionCost | None
    start_latency_s: float | None
    """Client clock before the create -> the agent's first "running" line (None at log level info)."""
    first_command: str
    commands: list[str]
    """The restic processes seen (sampled) from the create to phase Succeeded, by subcommand."""
    after_s: float
    """How long the agent still ran restic after the session showed Succeeded (0: it was done)."""
    commands_after: list[str]
    """The restic processes it started after the session showed Succeeded."""

    @property
    def processes(self) -> int:
        return len(self.commands)

    @property
    def processes_after(self) -> int:
        return len(self.commands_after)


@dataclass
class SetFigures:
    """The medians of one set over the rounds."""

    bare_s: list[float] = field(default_factory=list)
    sessions: list[SessionResult] = field(default_factory=list)

    def add(self, bare_s: float, session: SessionResult) -> None:
        self.bare_s.append(bare_s)
        self.sessions.append(session)

    def summary(self) -> dict[str, Any]:
        def cost_median(key: str) -> float | None:
            return figures.median_or_none(getattr(r.cost, key) if r.cost else None for r in self.sessions)

        agent_s = [r.wall_s for r in self.sessions]
        ratios = [a / b for a, b in zip(agent_s, self.bare_s, strict=True)]
        return {
            "bare_s": statistics.median(self.bare_s),
            "agent_s": statistics.median(agent_s),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "own_s": cost_median("own_seconds"),
            "restic_s": cost_median("restic_seconds"),
            "restic_processes": cost_median("restic_processes"),
            "sampled_processes": statistics.median(r.processes for r in self.sessions),
            "after_s": statistics.median(r.after_s for r in self.sessions),
            "processes_after": statistics.median(r.processes_after for r in self.sessions),
            "commands": [r.commands for r in self.sessions],
            "commands_after": [r.commands_after for r in self.sessions],
        }


class Bench:
    """One control plane, one namespace; agents as pods would run them; bare restic beside."""

    def __init__(self, work: Path, plane: ControlPlane, restic: str) -> None:
        self.work = work
        self.plane = plane
        self.restic = restic
        self.api = Api(plane.kubeconfig)
        self.secrets = work / "secrets"
        self.bare_cache = work / "bare-cache"

    def setup(self) -> None:
        self.plane.kubectl("create", "namespace", NAMESPACE)
        wait_for_default_service_account(self.plane, NAMESPACE)
        password = base64.b64encode(PASSWORD.encode()).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "data": {"RESTIC_PASSWORD": password},
        }
        self.api.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", secret)
        mounted = self.secrets / SECRET  # as the kubelet mounts it into the sidecar
        mounted.mkdir(parents=True)
        (mounted / "RESTIC_PASSWORD").write_text(PASSWORD)

    def restic_env(self, repo: Path) -> dict[str, str]:
        return {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}

    def init_repository(self, repo: Path) -> None:
        """``restic init`` (untimed, either side)."""
        subprocess.run(
            [self.restic, "--no-cache", "init"], env=self.restic_env(repo), check=True, capture_output=True
        )

    def bare(self, data: Path, repo: Path) -> float:
        """Seconds of ``restic backup --host=host-0 <data>``, restic's cache in a folder kept across runs."""
        started = time.monotonic()
        done = subprocess.run(
            [self.restic, f"--cache-dir={self.bare_cache}", "backup", "--host=host-0", str(data)],
            env=self.restic_env(repo),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(
                f"bare restic backup of {data} exited {done.returncode}: {done.stderr[-2000:]!r}"
            )
        return seconds

    def start_agent(self, name: str, data: Path, log_level: str = "info") -> Agent:
        """Repository (initialised), BackupConfiguration and Deployment ``name``, the sidecar's account
        and RBAC as the operator makes them, and the agent process, ready."""
        repo = self.work / "repos" / f"agent-{name}"
        self.init_repository(repo)
        objects = [
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "backend": {
                        "local": {"mountPath": str(repo), "hostPath": {"path": str(repo)}},
                        "storageSecretName": SECRET,
                    }
                },
            },
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "repository": {"name": name},
                    "schedule": "0 0 1 1 *",
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                        "paths": [str(data)],
                    },
                    "retentionPolicy": {"name": "keep-all", "keepLast": 1000, "prune": False},
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                    },
                },
            },
        ]
        self.plane.kubectl(
            "apply", "-f", "-", input_text=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects})
        )
        config = BackupConfiguration.from_dict(
            self.api.request(
                "GET", f"/apis/stash.appscode.com/v1beta1/namespaces/{NAMESPACE}/backupconfigurations/{name}"
            )
        )
        rbac = sidecar_rbac(
            config, WORKLOAD_KINDS["Deployment"], name, repository=RepositoryAccess(NAMESPACE, name, SECRET)
        )
        self.plane.kubectl(
            "apply", "-f", "-", input_text=json.dumps({"kind": "List", "apiVersion": "v1", "items": rbac})
        )
        token = service_account_token(self.api, NAMESPACE, agent_account(config))
        token_kubeconfig(self.plane.kubeconfig, token, self.work / f"kubeconfig-{name}", NAMESPACE)
        return self._spawn(config, f"{name}-pod", log_level)

    def start_replica(self, agent: Agent, pod: str) -> Agent:
        """Another replica's sidecar (pod ``pod``) of ``agent``'s Deployment, ready."""
        return self._spawn(agent.config, pod, "info")

    def _spawn(self, config: BackupConfiguration, pod: str, log_level: str) -> Agent:
        """The sidecar of pod ``pod`` of ``config``'s Deployment, on its account's kubeconfig, ready."""
        name = config.metadata.name or ""
        kubeconfig = self.work / f"kubeconfig-{name}"
        port = free_port()
        tmp = self.work / f"tmp-{pod}"
        tmp.mkdir()
        invocation = AgentInvocation(
            mode="sidecar",
            invoker_kind="BackupConfiguration",
            invoker_name=name,
            target_kind="Deployment",
            target_name=name,
            status_port=port,
            tmp_dir=str(tmp),
            log_level=log_level,
        )
        env = {
            "PATH": os.environ["PATH"],
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            "HOME": str(tmp),
            "NAMESPACE": NAMESPACE,
            "POD_NAME": pod,
            "KUBECONFIG": str(kubeconfig),
            "STASHLET_RESTIC": self.restic,
            agent_identity.ENV_STORAGE_SECRETS_DIR: str(self.secrets),
        }
        log = self.work / f"agent-{pod}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "stashlet.agent.cli", *invocation.args(), "--listen-host=127.0.0.1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        agent = Agent(config, popen, log, ResticChildren(popen.pid))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    return self.wait_warm_up(agent)
            except (urllib.error.URLError, OSError):
                pass
            if popen.poll() is not None or time.monotonic() > deadline:
                agent.stop()
                raise RuntimeError(f"agent {name} not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def wait_warm_up(self, agent: Agent) -> Agent:
        """Wait for the sidecar's retention-scope listing at start to end (it runs once the watch has listed,
        and a session arriving meanwhile cancels it), as a sidecar's first session in a cluster comes long
        after its start."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = {e.get("msg") for e in figures.log_entries(agent.log.read_text(errors="replace"))}
            if found & {"retention scope listed", "retention scope not listed"}:
                return agent
            time.sleep(0.05)
        raise RuntimeError(f"agent {agent.config.metadata.name}: no warm-up line within 60 s")

    def session(self, agent: Agent) -> SessionResult:
        """One BackupSession for ``agent``'s configuration, created as the trigger does, until it ends."""
        agent.sessions += 1
        session = build_session(agent.config, int(time.time()))
        name = f"{agent.config.metadata.name}-{agent.sessions}"
        session.metadata.name = name
        body = session.to_dict()
        offset = agent.log.stat().st_size
        created = time.time()
        self.api.create(SESSIONS, body)
        final, ended = self.api.wait(
            SESSIONS,
            name,
            lambda o: (o.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Skipped"),
            SESSION_TIMEOUT,
        )
        phase = final["status"]["phase"]
        if phase != "Succeeded":
            raise RuntimeError(f"BackupSession {NAMESPACE}/{name} {phase}: {json.dumps(final['status'])}")
        entries = self.wait_idle(agent, name, offset)
        start = figures.first_restic_start(entries, created)
        after = agent.restic.last_seen - ended
        return SessionResult(
            wall_s=ended - created,
            cost=figures.session_cost(entries, name),
            start_latency_s=figures.entry_time(start) - created if start else None,
            first_command=figures.restic_command(start) if start else "",
            commands=agent.restic.started_between(created, ended),
            after_s=max(0.0, after),
            commands_after=agent.restic.started_between(ended, time.time()),
        )

    def wait_idle(self, agent: Agent, session: str, offset: int) -> list[dict[str, Any]]:
        """Wait until the agent is done with ``session``, all its work after the status included: its
        cost line is written (or 10 s passed without one) and no restic child ran for ``IDLE_QUIET``
        seconds since. Then nothing of it runs beside the next measurement. The log's entries from
        ``offset`` on."""
        deadline = time.monotonic() + SESSION_TIMEOUT
        logged_by = time.monotonic() + 10
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            with agent.log.open("rb") as handle:
                handle.seek(offset)
                entries = figures.log_entries(handle.read().decode(errors="replace"))
            if quiet_since is None and (
                figures.session_cost(entries, session) is not None or time.monotonic() > logged_by
            ):
                quiet_since = time.time()
            if quiet_since is not None:
                quiet_since = max(quiet_since, agent.restic.last_seen)
                if time.time() - quiet_since >= IDLE_QUIET:
                    return entries
            time.sleep(0.05)
        raise TimeoutError(f"agent {agent.config.metadata.name} still busy after session {session}")


# --- the run --------------------------------------------------------------------------------------------


def run_sets(bench: Bench, data: dict[str, Path], rounds: int) -> dict[str, Any]:
    sets = {label: SetFigures() for label in LABELS}
    idle_kib: list[int] = []
    peak_kib: list[int] = []
    logged_restic_kib: list[int] = []
    sampled_restic_kib: list[int] = []
    turn = 0
    for round_ in range(rounds):
        for name in ("large", "small"):
            agent = bench.start_agent(f"{name}-{round_}", data[name])
            bare_repo = bench.work / "repos" / f"bare-{name}-{round_}"
            bench.init_repository(bare_repo)
            idle_kib.append(figures.process_kib(agent.popen.pid, "VmRSS") or 0)
            try:
                for label in (name, "unchanged re-run") if name == "small" else (name,):
                    turn += 1
                    bare_first = turn % 2 == 1
                    bare = bench.bare(data[name], bare_repo) if bare_first else 0.0
                    result = bench.session(agent)
                    if not bare_first:
                        bare = bench.bare(data[name], bare_repo)
                    sets[label].add(bare, result)
                    own = fmt(result.cost.own_seconds if result.cost else None, ".3f", " s")
                    procs = fmt(result.cost.restic_processes if result.cost else None, ".0f")
                    print(
                        f"  round {round_} {label:<16} bare {bare:6.2f} s   "
                        f"agent session {result.wall_s:6.2f} s   ratio {result.wall_s / bare:5.2f}   "
                        f"agent's own {own}, restic processes {procs} ({' '.join(result.commands)}); "
                        f"after Succeeded {result.processes_after} more for {result.after_s:.2f} s "
                        f"({' '.join(result.commands_after)})"
                        f"   ({'bare' if bare_first else 'agent'} first)",
                        flush=True,
                    )
                    if result.cost and result.cost.restic_max_rss_kib:
                        logged_restic_kib.append(result.cost.restic_max_rss_kib)
                peak_kib.append(figures.process_kib(agent.popen.pid, "VmHWM") or 0)
            finally:
                agent.stop()
            sampled_restic_kib.append(agent.restic.peak_kib)
    restic_kib, source = (
        (logged_restic_kib, "the agent's log") if logged_restic_kib else (sampled_restic_kib, "sampled")
    )
    return {
        "sets": {label: f.summary() for label, f in sets.items()},
        "idle_rss_mib": statistics.median(idle_kib) / 1024,
        "peak_rss_mib": max(peak_kib) / 1024,
        "restic_peak_rss_mib": max(restic_kib) / 1024 if any(restic_kib) else None,
        "restic_peak_source": source,
    }


def run_latency(bench: Bench, data: Path, count: int) -> dict[str, Any]:
    agent = bench.start_agent("tiny", data, log_level="debug")
    try:
        results = [bench.session(agent) for _ in range(count)]
    finally:
        agent.stop()
    latencies = [r.start_latency_s for r in results if r.start_latency_s is not None]
    if len(latencies) != len(results):
        raise RuntimeError(f"{len(results) - len(latencies)} sessions have no 'running' line in {agent.log}")
    commands = sorted({r.first_command for r in results})
    return {
        "sessions": count,
        "p50_ms": figures.percentile(latencies, 50) * 1000,
        "p99_ms": figures.percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "first_restic_commands": commands,
        "session_p50_s": figures.percentile([r.wall_s for r in results], 50),
    }


def restic_version(restic: str) -> str:
    return subprocess.run([restic, "version"], capture_output=True, text=True, check=True).stdout.strip()


def print_report(found: dict[str, Any]) -> None:
    print(f"\n{found['restic_version']}; load before {found['load_before']}, after {found['load_after']}")
    print(
        f"{found['rounds']} round(s); large {found['large_mib']} MiB, small {found['small_files']} files; "
        "medians over rounds\n"
    )
    rows = []
    for label, s in found["sets"].items():
        rows.append(
            [
                label,
                fmt(s["bare_s"], ".2f", " s"),
                fmt(s["agent_s"], ".2f", " s"),
                fmt(s["ratio"], ".2f", "x"),
                fmt(s["own_s"], ".3f", " s"),
                f"{fmt(s['restic_processes'], '.0f')} ({fmt(s['sampled_processes'], '.0f')})",
                f"{fmt(s['processes_after'], '.0f')} for {fmt(s['after_s'], '.2f', ' s')}",
            ]
        )
    headers = [
        "set",
        "bare `restic backup`",
        "agent session",
        "ratio",
        "agent's own time",
        "restic processes, logged (sampled)",
        "restic after Succeeded",
    ]
    print(figures.markdown_table(headers, rows))
    lat = found["latency"]
    print(
        f"\ncreation -> restic start over {lat['sessions']} sessions: p50 {lat['p50_ms']:.0f} ms, "
        f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms "
        f"(first restic command: {', '.join(lat['first_restic_commands']) or NA})"
    )
    print(
        f"agent RSS: idle {found['idle_rss_mib']:.1f} MiB, peak {found['peak_rss_mib']:.1f} MiB; "
        f"restic's own peak {fmt(found['restic_peak_rss_mib'], '.1f', ' MiB')} "
        f"({found['restic_peak_source']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large-mib", type=int, default=None, help="256 (16 with --quick)")
    parser.add_argument("--small-files", type=int, default=None, help="50,000 (2,000 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="3 (1 with --quick)")
    parser.add_argument("--latency-sessions", type=int, default=None, help="50 (10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller defaults (above)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    for key, full, quick in (
        ("large_mib", 256, 16),
        ("small_files", 50_000, 2000),
        ("rounds", 3, 1),
        ("latency_sessions", 50, 10),
    ):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    restic = str(tools.ensure("restic"))
    found: dict[str, Any] = {
        "restic_version": restic_version(restic),
        "load_before": figures.load_average(),
        "rounds": args.rounds,
        "large_mib": args.large_mib,
        "small_files": args.small_files,
    }
    with tempfile.TemporaryDirectory(prefix="stashlet-bench-agent-") as tmp:
        work = Path(tmp)
        print(
            f"generating data: {args.large_mib} MiB in large files, {args.small_files} small files ...",
            flush=True,
        )
        data = {"large": work / "data-large", "small": work / "data-small", "tiny": work / "data-tiny"}
        make_large(data["large"], args.large_mib)
        make_small(data["small"], args.small_files)
        make_small(data["tiny"], 20)
        plane = ControlPlane(work / "cluster")
        plane.start(crds=CRDS)
        try:
            bench = Bench(work, plane, restic)
            bench.setup()
            found.update(run_sets(bench, data, args.rounds))
            print(f"latency: {args.latency_sessions} sessions of a tiny set ...", flush=True)
            found["latency"] = run_latency(bench, data["tiny"], args.latency_sessions)
        finally:
            plane.stop()
    found["load_after"] = figures.load_average()
    print_report(found)
    if args.json_out:
        args.json_out.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
