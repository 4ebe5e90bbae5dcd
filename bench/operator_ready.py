"""How long the operator takes to bring N BackupConfigurations to Ready on the local control plane, and its
peak RSS.

N Deployments and N BackupConfigurations (seed 003's shape, one Repository and Secret) are created first;
then ``stashlet-operator run`` starts as a process and the clock runs until every configuration reports
``Ready`` for its generation. It then checks that each Deployment was rolled exactly once, and times the
deletion of all configurations (the finalizer takes each sidecar out again). It also counts the requests
the API server answered from the operator's start to the last Ready (its ``apiserver_request_total``).

    .venv/bin/python bench/operator_ready.py [--count 500] [--workers N] [--kubeconfig PATH]

Without ``--kubeconfig`` a control plane is started in a temporary folder and stopped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.settings import DEFAULT_WORKERS

REPO_ROOT = Path(__file__).resolve().parents[1]
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(tools.ensure("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")
    return result.stdout


def objects(namespace: str, count: int) -> list[dict[str, Any]]:
    """The Secret, the Repository, and ``count`` Deployments with a BackupConfiguration each."""
    found: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gcs-secret", "namespace": namespace},
            "stringData": {"RESTIC_PASSWORD": "changeit", "GOOGLE_PROJECT_ID": "p"},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "gcs-repo", "namespace": namespace},
            "spec": {"backend": {"gcs": {"bucket": "b", "prefix": "/p"}, "storageSecretName": "gcs-secret"}},
        },
    ]
    for i in range(count):
        name = f"app-{i}"
        found.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "busybox",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                }
                            ],
                            "volumes": [{"name": "data", "emptyDir": {}}],
                        },
                    },
                },
            }
        )
        found.append(
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": f"bc-{i}", "namespace": namespace},
                "spec": {
                    "repository": {"name": "gcs-repo"},
                    "schedule": "0 3 * * *",
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "paths": ["/data"],
                    },
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                },
            }
        )
    return found


def ready_count(kubeconfig: str, namespace: str) -> int:
    items = json.loads(kubectl(kubeconfig, "get", "backupconfigurations", "-n", namespace, "-o", "json"))[
        "items"
    ]
    return sum(
        1
        for bc in items
        if (bc.get("status") or {}).get("phase") == "Ready"
        and bc["status"].get("observedGeneration") == bc["metadata"]["generation"]
    )


def remaining(kubeconfig: str, namespace: str) -> int:
    out = kubectl(kubeconfig, "get", "backupconfigurations", "-n", namespace, "-o", "name")
    return len(out.split())


def requests_answered(kubeconfig: str) -> float | None:
    """Requests the API server has answered so far (``apiserver_request_total``: every client and verb);
    None where its metrics may not be read."""
    try:
        metrics = kubectl(kubeconfig, "get", "--raw", "/metrics")
    except RuntimeError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def cluster(kubeconfig: str | None) -> Iterator[str]:
    if kubeconfig:
        yield kubeconfig
        return
    with tempfile.TemporaryDirectory(prefix="stashlet-bench-") as folder:
        plane = ControlPlane(Path(folder) / "plane")
        plane.start(crds=CRDS)
        try:
            yield str(plane.kubeconfig)
        finally:
            plane.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--workers", type=int, default=None, help="the operator's (default: its own)")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--log-level", default="warning", help="the operator's (its log goes to a file)")
    args = parser.parse_args()
    with cluster(args.kubeconfig) as kubeconfig:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        kubectl(kubeconfig, "create", "namespace", namespace)
        started = time.monotonic()
        docs = objects(namespace, args.count)
        for i in range(0, len(docs), 200):
            kubectl(kubeconfig, "create", "-f", "-", stdin=yaml.safe_dump_all(docs[i : i + 200]))
        created = time.monotonic() - started

        requests_before = requests_answered(kubeconfig)
        operator_bin = Path(sys.executable).parent / "stashlet-operator"
        command = [str(operator_bin), "run", f"--namespaces={namespace}", f"--kubeconfig={kubeconfig}"]
        command += [f"--workers={args.workers}"] if args.workers else []
        command += ["--log-level=" + args.log_level]
        log = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
        with log.open("w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
            t0 = time.monotonic()
            first = None
            ready = 0
            try:
                while time.monotonic() - t0 < args.timeout:
                    ready = ready_count(kubeconfig, namespace)
                    if ready and first is None:
                        first = time.monotonic() - t0
                    if ready == args.count:
                        break
                    time.sleep(0.5)
                all_ready = time.monotonic() - t0
                cpu_ready = cpu_seconds(process.pid)
                requests_after = requests_answered(kubeconfig)
                time.sleep(5)  # a quiet spell: nothing more should roll
                deployments = json.loads(
                    kubectl(kubeconfig, "get", "deployments", "-n", namespace, "-o", "json")
                )
                rolled_once = sum(d["metadata"]["generation"] == 2 for d in deployments["items"])
                t1 = time.monotonic()
                kubectl(
                    kubeconfig, "delete", "backupconfigurations", "--all", "-n", namespace, "--wait=false"
                )
                while time.monotonic() - t1 < args.timeout and remaining(kubeconfig, namespace):
                    time.sleep(0.5)
                deleted = time.monotonic() - t1
                rss = peak_rss_mib(process.pid)
                cpu_total = cpu_seconds(process.pid)
            finally:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
                if process.poll() is None:
                    process.kill()
        kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")

    workers = args.workers or f"{DEFAULT_WORKERS}, the operator's default"
    print(f"configurations            {args.count} (workers {workers})")
    print(f"objects created           {created:8.1f} s (kubectl, before the operator starts)")
    print(f"first Ready               {first if first is not None else float('nan'):8.1f} s")
    print(
        f"all Ready                 {all_ready:8.1f} s   {ready}/{args.count}   {ready / all_ready:6.1f} /s"
    )
    print(f"rolled exactly once       {rolled_once}/{args.count}")
    if requests_before is not None and requests_after is not None:
        requests = requests_after - requests_before
        print(
            f"API requests to Ready     {requests:8.0f}   ({requests / args.count:.1f} a configuration; "
            "every client: the operator, kube-controller-manager, this bench's polling)"
        )
    print(f"all deleted (finalizers)  {deleted:8.1f} s")
    print(f"operator CPU to Ready     {cpu_ready:8.1f} s   ({cpu_total:.1f} s with the deletions)")
    print(f"operator peak RSS         {rss:8.1f} MiB")
    print(f"load average              {os.getloadavg()[0]:8.2f} (the machine's, at the end)")
    print(f"operator log              {log} ({os.path.getsize(log)} bytes)")
    return 0 if ready == args.count and rolled_once == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
