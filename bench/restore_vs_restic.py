"""Restoring through the stash-init agent against bare ``restic restore`` of the same snapshot.

Generates data (a few large files and many small ones), backs it up once with plain restic as host-0,
then restores that snapshot into the same place, alternately with bare restic and with
``stashlet-agent restore`` (a fresh RestoreSession each round, the agent running as a process as
stash-init runs in a pod: the session's own ServiceAccount's token with exactly the RBAC the operator
grants, ``restore_rbac``, and the storage Secret mounted as a folder), wiping the target before every
run. The agent is timed from spawn to exit (start-up, the API calls, ``restic ls`` and
``restic restore``, status). Prints the wall times per
round, the median ratio agent/restic, where the agent's extra time goes (from its log), and the peak RSS
of the agent's Python process and of restic.

    .venv/bin/python -m bench.restore_vs_restic [--large-mb 256] [--large-files 4] [--small-files 20000]
        [--small-kb 2] [--rounds 3] [--kubeconfig PATH] [--work-dir DIR] [--json-out FILE]

Without ``--kubeconfig`` a local control plane is started in a temporary folder and stopped afterwards.
The bare restic run is ``restic restore <id>:<path> --target <path>``, the same restic command the agent
runs, with a restic cache of its own kept across rounds as the agent keeps its own.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bench.kubeapi import Api, service_account_token, token_kubeconfig

from stashlet.api import agent_identity
from stashlet.api.restoresession import RestoreSession
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.injection.restore_rbac import restore_account, restore_rbac

REPO_ROOT = Path(__file__).resolve().parents[1]
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"
PASSWORD = "bench-password"
SECRET = "local-secret"


@dataclass
class Timed:
    seconds: float
    peak_rss_mib: float
    restic_rss_mib: float = float("nan")
    log: str = ""


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(tools.ensure("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")
    return result.stdout


def apply(kubeconfig: str, *objects: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(list(objects)))


@contextlib.contextmanager
def cluster(kubeconfig: str | None, folder: Path) -> Iterator[tuple[str, ControlPlane | None]]:
    if kubeconfig:
        yield kubeconfig, None
        return
    plane = ControlPlane(folder / "plane")
    plane.start(crds=CRDS)
    try:
        yield str(plane.kubeconfig), plane
    finally:
        plane.stop()


# --- data -----------------------------------------------------------------------------------------------


def generate(
    root: Path, large_mb: int, large_files: int, small_files: int, small_kb: float
) -> tuple[int, int]:
    """Write the data set; returns (files, bytes)."""
    rng = random.Random(42)  # noqa: S311 - sizes, not secrets
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    chunk = 4 * 1024 * 1024
    per_file = large_mb * 1024 * 1024 // max(1, large_files)
    for i in range(large_files):
        with (root / f"large-{i}.bin").open("wb") as out:
            left = per_file
            while left > 0:
                out.write(os.urandom(min(chunk, left)))
                left -= chunk
        total += per_file
    for i in range(small_files):
        folder = root / "small" / f"d{i // 200:03d}"
        if i % 200 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = max(1, int(rng.uniform(0.25, 1.75) * small_kb * 1024))
        (folder / f"f{i:06d}.dat").write_bytes(os.urandom(size))
        total += size
    return large_files + small_files, total


def wipe(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# --- processes ------------------------------------------------------------------------------------------


class PeakRss:
    """Samples a process's VmHWM (its peak resident set) until it exits."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            if "State:\tZ" in text:
                return
            time.sleep(0.02)

    def mib(self) -> float:
        self._thread.join(timeout=1)
        return self.peak_kib / 1024


def run_restic(restic: str, env: dict[str, str], args: list[str]) -> Timed:
    started = time.monotonic()
    process = subprocess.Popen([restic, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"restic {args[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return Timed(seconds, usage.ru_maxrss / 1024, usage.ru_maxrss / 1024)


def run_agent(argv: list[str], env: dict[str, str], log: Path) -> Timed:
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = PeakRss(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if code != 0:
        raise RuntimeError(f"stashlet-agent restore exited {code}:\n{text[-3000:]}")
    return Timed(seconds, sampler.mib(), usage.ru_maxrss / 1024, text)


def breakdown(log: str) -> dict[str, float]:
    """Seconds spent in the agent's phases, from the times of its log lines."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]

    def at(message: str) -> float:
        for line in lines:
            if line["msg"] == message:
                return dt.datetime.fromisoformat(line["time"]).timestamp()
        return float("nan")

    restored = [line for line in lines if line["msg"] == "path restored"]
    return {
        "startup": at("took the restore turn") - at("restore started"),
        "plan (restic ls)": at("restore planned") - at("host restore started"),
        "restore (restic)": sum(float(line["seconds"]) for line in restored),
        "record (API)": at("restore finished") - at("host restore recorded"),
    }


# --- the cluster side -----------------------------------------------------------------------------------


def setup_namespace(kubeconfig: str, namespace: str, repo: Path, secrets: Path) -> None:
    """The storage Secret (also written to ``secrets`` as the kubelet mounts it into stash-init), the
    Repository, and the Deployment restored into."""
    kubectl(kubeconfig, "create", "namespace", namespace)
    apply(
        kubeconfig,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": namespace},
            "data": {"RESTIC_PASSWORD": base64.b64encode(PASSWORD.encode()).decode()},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "local-repo", "namespace": namespace},
            "spec": {
                "backend": {
                    "local": {"mountPath": str(repo), "hostPath": {"path": str(repo)}},
                    "storageSecretName": SECRET,
                }
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                },
            },
        },
    )
    (secrets / SECRET).mkdir(parents=True)
    (secrets / SECRET / "RESTIC_PASSWORD").write_text(PASSWORD)


def session_identity(kubeconfig: str, namespace: str, name: str, folder: Path) -> Path:
    """RestoreSession ``name``'s own account with exactly the RBAC the operator grants stash-init
    (``restore_rbac``); returns a kubeconfig holding that account's token."""
    api = Api(kubeconfig)
    rs = RestoreSession.from_dict(
        api.request("GET", f"/apis/stash.appscode.com/v1beta1/namespaces/{namespace}/restoresessions/{name}")
    )
    rbac = restore_rbac(
        rs, WORKLOAD_KINDS["Deployment"], "app", repository=RepositoryAccess(namespace, "local-repo", SECRET)
    )
    apply(kubeconfig, *rbac)
    token = service_account_token(api, namespace, restore_account(rs))
    return token_kubeconfig(kubeconfig, token, folder / f"{name}.kubeconfig", namespace)


def restore_session(namespace: str, name: str, data: Path) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": {"name": "local-repo"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                "volumeMounts": [{"name": "data", "mountPath": str(data)}],
                # The path's latest snapshot of the host, as a seed-004 rule asks for it (without a rule
                # Stash, and so stashlet, restores nothing).
                "rules": [{"paths": [str(data)]}],
            },
        },
    }


# --- main -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--large-mb", type=int, default=256, help="total size of the large files")
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--small-files", type=int, default=20000)
    parser.add_argument("--small-kb", type=float, default=2.0, help="mean size of a small file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kubeconfig", default=None, help="use this cluster instead of starting one")
    parser.add_argument("--work-dir", default=None, help="where data and repository go (default: a temp dir)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()

    restic = os.environ.get("STASHLET_RESTIC") or str(tools.ensure("restic"))
    with contextlib.ExitStack() as stack:
        folder = (
            Path(args.work_dir)
            if args.work_dir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stashlet-restore-bench-")))
        )
        folder.mkdir(parents=True, exist_ok=True)
        data, repo = folder / "data", folder / "repo"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(folder),
            "RESTIC_REPOSITORY": str(repo),
            "RESTIC_PASSWORD": PASSWORD,
        }
        t0 = time.monotonic()
        files, size = generate(data, args.large_mb, args.large_files, args.small_files, args.small_kb)
        print(f"data: {files} files, {size / 2**20:.0f} MiB in {time.monotonic() - t0:.1f}s", flush=True)
        run_restic(restic, env, ["init"])
        backup = run_restic(restic, env, ["--no-cache", "backup", "--host=host-0", "--", str(data)])
        snapshot = json.loads(
            subprocess.run(
                [restic, "--no-cache", "snapshots", "--json", "--latest=1"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]["id"]
        print(f"backup: {backup.seconds:.1f}s, snapshot {snapshot[:8]}", flush=True)

        kubeconfig, _ = stack.enter_context(cluster(args.kubeconfig, folder))
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        sessions = [f"rs-{i}" for i in range(args.rounds + 1)]
        secrets = folder / "secrets"
        setup_namespace(kubeconfig, namespace, repo, secrets)
        agent_tmp = folder / "stash-tmp"
        agent_tmp.mkdir()
        bare_cache = folder / "bare-cache"
        agent_env = {
            "PATH": os.environ["PATH"],
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            "NAMESPACE": namespace,
            "POD_NAME": "app-6d5c4-x",
            "STASHLET_RESTIC": restic,
            "HOME": str(agent_tmp),
            agent_identity.ENV_STORAGE_SECRETS_DIR: str(secrets),
        }
        bare_args = [
            "--json",
            f"--cache-dir={bare_cache}",
            "restore",
            f"--target={data}",
            "--",
            f"{snapshot}:{data}",
        ]

        def agent_round(i: int) -> Timed:
            apply(kubeconfig, restore_session(namespace, sessions[i], data))
            own = session_identity(kubeconfig, namespace, sessions[i], folder)
            argv = [
                sys.executable, "-m", "stashlet.agent.cli", "restore", "--invoker-kind=RestoreSession",
                f"--invoker-name={sessions[i]}", "--target-kind=Deployment", "--target-name=app",
                f"--tmp-dir={agent_tmp}", "--log-level=info",
            ]  # fmt: skip
            return run_agent(argv, {**agent_env, "KUBECONFIG": str(own)}, folder / f"agent-{i}.log")

        # A warm-up of each (not counted): page cache and restic caches as in every later round.
        wipe(data)
        run_restic(restic, env, bare_args)
        wipe(data)
        agent_round(0)
        bare: list[Timed] = []
        agent: list[Timed] = []
        for i in range(1, args.rounds + 1):
            order = ("bare", "agent") if i % 2 else ("agent", "bare")
            for which in order:
                wipe(data)
                if which == "bare":
                    bare.append(run_restic(restic, env, bare_args))
                else:
                    agent.append(agent_round(i))
            print(f"round {i}: restic {bare[-1].seconds:6.2f}s   agent {agent[-1].seconds:6.2f}s", flush=True)

        ratios = [a.seconds / b.seconds for a, b in zip(agent, bare, strict=True)]
        phases = [breakdown(a.log) for a in agent]
        bare_median = statistics.median(b.seconds for b in bare)
        agent_median = statistics.median(a.seconds for a in agent)
        print()
        print(f"median wall time: restic {bare_median:.2f}s, agent {agent_median:.2f}s")
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"median ratio agent/restic: {statistics.median(ratios):.2f}  (rounds: {shown})")
        for phase in phases[0]:
            print(f"  agent {phase:18s} median {statistics.median(p[phase] for p in phases):.2f}s")
        agent_rss = max(a.peak_rss_mib for a in agent)
        tree_rss = max(a.restic_rss_mib for a in agent)
        bare_rss = max(b.restic_rss_mib for b in bare)
        print(f"peak RSS: agent's Python process {agent_rss:.0f} MiB; its process tree {tree_rss:.0f} MiB;")
        print(f"          bare restic {bare_rss:.0f} MiB")
        if args.json_out:
            found = {
                "bare_s": bare_median,
                "agent_s": agent_median,
                "ratio": statistics.median(ratios),
                "ratios": ratios,
                "agent_peak_rss_mib": agent_rss,
                "bare_restic_peak_rss_mib": bare_rss,
                "data_files": files,
                "data_mib": size / 2**20,
            }
            args.json_out.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
