"""Backup through the stashlet agent versus bare restic, on the same data, in one run, alternating.

    .venv/bin/python bench/agent_vs_restic.py [--large-mib 256] [--small-files 50000] [--rounds 3]

Data sets: large files, many small files, and an unchanged re-run of the small set. For each round
and set it backs up with bare ``restic backup`` (into its own repository) and through the agent (a real
``stashlet-agent sidecar`` process on a local control plane, a BackupSession created as a user would),
and prints the median wall-time ratio, the agent's session time split (restic's own processing time
versus the whole session, which adds retention, ``restic check`` and status updates), the latency from
BackupSession creation to the first restic start, and the agent's idle and peak RSS.
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
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stashlet.api.agent_contract import AgentInvocation
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account
from stashlet.localcluster.processes import free_port

PASSWORD = "bench-password"


def make_large(root: Path, mib: int) -> None:
    root.mkdir(parents=True)
    chunk = 64
    for i in range(max(1, mib // chunk)):
        (root / f"large-{i}.bin").write_bytes(os.urandom(chunk * 1024 * 1024))


def make_small(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(os.urandom(512))


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Bench:
    """One control plane, one namespace, one agent per data set."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.plane = ControlPlane(work / "cluster")
        self.restic = str(tools.ensure("restic"))

    def kubectl(self, *args: str, obj: Any = None) -> str:
        text = json.dumps(obj) if obj is not None else None
        return self.plane.kubectl(*args, input_text=text).stdout

    def bare(self, data: Path, repo: Path) -> float:
        env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
        if not repo.exists():
            subprocess.run([self.restic, "init"], env=env, check=True, capture_output=True)
        started = time.monotonic()
        subprocess.run(
            [self.restic, "backup", "--no-cache", "--host", "host-0", str(data)],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.monotonic() - started

    def setup_agent(self, name: str, data: Path, repo: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
        ns = "bench"
        secret = base64.b64encode(PASSWORD.encode()).decode()
        objects = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-secret", "namespace": ns},
                "data": {"RESTIC_PASSWORD": secret},
            },
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": f"{name}-repo", "namespace": ns},
                "spec": {
                    "backend": {
                        "local": {"mountPath": str(repo), "hostPath": {"path": str(repo)}},
                        "storageSecretName": f"{name}-secret",
                    }
                },
            },
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "repository": {"name": f"{name}-repo"},
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
                "metadata": {"name": name, "namespace": ns},
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
        self.kubectl("apply", "-f", "-", obj={"apiVersion": "v1", "kind": "List", "items": objects})
        port = free_port()
        invocation = AgentInvocation(
            mode="sidecar",
            invoker_kind="BackupConfiguration",
            invoker_name=name,
            target_kind="Deployment",
            target_name=name,
            status_port=port,
            tmp_dir=str(self.work / f"tmp-{name}"),
            log_level="debug",
        )
        Path(invocation.tmp_dir).mkdir()
        log = self.work / f"agent-{name}.log"
        env = {
            **os.environ,
            "NAMESPACE": ns,
            "POD_NAME": f"{name}-pod",
            "KUBECONFIG": str(self.plane.kubeconfig),
            "STASHLET_RESTIC": self.restic,
        }
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stashlet.agent.cli",
                    *invocation.args(),
                    "--listen-host=127.0.0.1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        return agent, log, port

    def through_agent(self, name: str, log: Path, round_: str) -> tuple[float, float, float]:
        """(session wall time, restic processing seconds, creation-to-restic-start latency)."""
        session = f"{name}-{round_}"
        mark = len(log.read_text().splitlines())
        created = time.time()
        self.kubectl(
            "create",
            "-f",
            "-",
            obj={
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupSession",
                "metadata": {"name": session, "namespace": "bench"},
                "spec": {
                    "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": name}
                },
            },
        )
        while True:
            obj = json.loads(self.kubectl("get", "backupsession", session, "-n", "bench", "-o", "json"))
            phase = obj.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.05)
        wall = time.time() - created
        if phase != "Succeeded":
            raise SystemExit(f"{session} {phase}: {json.dumps(obj['status'])}")
        snap = obj["status"]["targets"][0]["stats"][0]["snapshots"][0]
        from stashlet.api.durations import parse_duration  # noqa: PLC0415

        processing = parse_duration(snap["processingTime"])
        started = None
        for line in log.read_text().splitlines()[mark:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg", "").startswith("running") and started is None:
                started = datetime.fromisoformat(entry["time"]).astimezone(UTC).timestamp()
        latency = (started - created) if started else float("nan")
        return wall, processing, latency


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--small-files", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stashlet-bench-") as tmp:
        work = Path(tmp)
        print(
            f"generating data: {args.large_mib} MiB in large files, {args.small_files} small files ...",
            flush=True,
        )
        make_large(work / "data-large", args.large_mib)
        make_small(work / "data-small", args.small_files)
        bench = Bench(work)
        bench.plane.start(crds=Path(__file__).resolve().parents[1] / "charts" / "stashlet" / "crds")
        try:
            bench.kubectl("create", "namespace", "bench")
            wait_for_default_service_account(bench.plane, "bench")
            sets = {"large": work / "data-large", "small": work / "data-small"}
            agents = {
                name: bench.setup_agent(name, data, work / f"repo-agent-{name}")
                for name, data in sets.items()
            }
            idle = {name: rss_kib(agent.pid, "VmRSS") for name, (agent, _, _) in agents.items()}
            results: dict[str, list[tuple[float, float, float, float]]] = {}
            for round_ in range(args.rounds):
                for name, data in sets.items():
                    # A fresh backup (new repositories), then an unchanged re-run of the same data.
                    for label, fresh in ((name, True), (f"{name} unchanged re-run", False)):
                        if not fresh and name == "large":
                            continue
                        suffix = f"{round_}-{'a' if fresh else 'b'}"
                        bare_repo = work / f"repo-bare-{name}-{round_}"
                        bare = bench.bare(data, bare_repo)
                        wall, processing, latency = bench.through_agent(name, agents[name][1], suffix)
                        results.setdefault(label, []).append((bare, wall, processing, latency))
                        print(
                            f"  round {round_} {label}: bare {bare:.2f}s, agent session {wall:.2f}s "
                            f"(restic {processing:.2f}s), latency {latency * 1000:.0f} ms",
                            flush=True,
                        )
            peak = {name: rss_kib(agent.pid, "VmHWM") for name, (agent, _, _) in agents.items()}
            print("\nset                      bare s   agent s   ratio   restic-in-agent ratio   latency ms")
            for label, rows in results.items():
                bare = statistics.median(r[0] for r in rows)
                wall = statistics.median(r[1] for r in rows)
                proc = statistics.median(r[2] for r in rows)
                lat = statistics.median(r[3] for r in rows)
                print(
                    f"{label:<24} {bare:7.2f}  {wall:8.2f}  {wall / bare:6.2f}"
                    f"   {max(proc, 0.01) / bare:21.2f}   {lat * 1000:10.0f}"
                )
            for name in sets:
                print(
                    f"agent ({name}) RSS: idle {idle[name] / 1024:.1f} MiB, peak {peak[name] / 1024:.1f} MiB"
                )
            for agent, _, _ in agents.values():
                agent.terminate()
                agent.wait(30)
        finally:
            bench.plane.stop()


if __name__ == "__main__":
    main()
