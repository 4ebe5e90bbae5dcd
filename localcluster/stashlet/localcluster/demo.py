"""The main job: seeds 003 and 004 walked through on a local cluster with a real node, every part real.

It starts a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and a real node:
containerd, kubelet, kube-proxy, CoreDNS) running stashlet's own images, installs stashlet with its Helm
chart (the operator and a Pushgateway), and runs a restic REST server pod (standing in for the seed's
GCS bucket, which cannot run here). Then, as the seeds do: create the demo Deployment and objects, take a
backup, show ``kubectl get backupsession``, the pods on the node and ``curl`` of the sidecar's
``/status``, pause and show the skipped session, resume, wipe the volume, restore it through a
RestoreSession and show the files are back. Everything stops at the end and the host is left as found.

``--kubeconfig`` uses the cluster in ``$KUBECONFIG`` instead: the CRDs and the seed objects are
applied and shown there (the operator and agents must then be installed with the Helm chart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from stashlet.api import names
from stashlet.localcluster import checkout, nodeobjects, tools
from stashlet.localcluster.cluster import LocalCluster

BACKENDS = "backends"
REST_URL = f"http://rest-server.{BACKENDS}.svc.cluster.local:{nodeobjects.REST_SERVER_PORT}"
NAMESPACE = "demo"
CRD_PLURALS = (
    names.REPOSITORIES,
    names.BACKUP_CONFIGURATIONS,
    names.BACKUP_SESSIONS,
    names.RESTORE_SESSIONS,
    names.BACKUP_BLUEPRINTS,
)
STEP_TIMEOUT = 180.0


def step(title: str) -> None:
    """Print a step heading."""
    print(f"\n=== {title}", flush=True)


def note(text: str) -> None:
    """Print a remark."""
    print(f"    {text}", flush=True)


class Kubectl:
    """The pinned kubectl against one cluster, echoing commands like a terminal session."""

    def __init__(self, kubeconfig: Path) -> None:
        """Use the cluster of ``kubeconfig``."""
        self.kubeconfig = kubeconfig
        self.binary = str(tools.ensure("kubectl"))

    def __call__(self, *args: str, show: bool = True, input_obj: Any = None) -> str:
        """Run kubectl; raise with its stderr when it fails."""
        if show:
            print(f"\n$ kubectl {' '.join(args)}", flush=True)
        text = (
            yaml.safe_dump_all(input_obj if isinstance(input_obj, list) else [input_obj])
            if input_obj
            else None
        )
        result = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        if show:
            print(result.stdout.rstrip(), flush=True)
        return result.stdout

    def json(self, *args: str) -> Any:
        """``kubectl get ... -o json``."""
        return json.loads(self("get", *args, "-o", "json", show=False))


async def until(check: Callable[[], Any], what: str, limit: float = STEP_TIMEOUT) -> Any:
    """Wait for ``check`` to return something truthy, showing progress meanwhile."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    shown = 0.0
    while time.monotonic() - started < limit:
        result = await asyncio.to_thread(check)
        elapsed = time.monotonic() - started
        if result:
            print(f"{chr(13) if tty else '    '}    {what}: done in {elapsed:.0f}s      ", flush=True)
            return result
        if tty:
            print(f"\r    waiting for {what} ... {elapsed:.0f}s", end="", flush=True)
        elif elapsed - shown >= 10:
            print(f"    still waiting for {what} ({elapsed:.0f}s)", flush=True)
            shown = elapsed
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {limit:.0f}s")


def load(name: str) -> list[dict[str, Any]]:
    """The objects of one example manifest."""
    return [doc for doc in yaml.safe_load_all((checkout.examples() / name).read_text()) if doc]


def curl(url: str, method: str = "GET") -> str:
    """What ``curl`` would print."""
    print(f"\n$ curl -s {'-X POST ' if method == 'POST' else ''}{url}", flush=True)
    request = urllib.request.Request(url, method=method)  # noqa: S310 - our own local server
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
        body: str = response.read().decode()
    print(json.dumps(json.loads(body), indent=2), flush=True)
    return body


class Walkthrough:
    """The embedded demo: a local cluster with a real node, stashlet from its chart, the seeds' steps."""

    def __init__(self, work: Path) -> None:
        """Work in ``work`` (a temporary folder)."""
        self.work = work
        self.cluster = LocalCluster(work / "cluster")

    async def run(self) -> None:
        """All steps, then a clean stop."""
        try:
            kubectl = self._start()
            await self._backup_steps(kubectl)
            await self._restore_steps(kubectl)
        finally:
            step("stopping everything and undoing the node's host changes")
            for line in self.cluster.down():
                note(line)

    def _start(self) -> Kubectl:
        step("a local cluster: the control plane and a real node (containerd, kubelet, kube-proxy, CoreDNS)")
        started = time.monotonic()
        state = self.cluster.up(crds=checkout.crds())
        note(f"up in {time.monotonic() - started:.1f}s at {state.server}")
        kubectl = Kubectl(self.cluster.kubeconfig)
        kubectl("get", "nodes", "-o", "wide")
        kubectl("get", "crd", *(f"{plural}.{names.GROUP}" for plural in CRD_PLURALS))

        step("helm install stashlet (the operator and a Pushgateway, from the images built here)")
        helm = [str(tools.ensure("helm")), f"--kubeconfig={self.cluster.kubeconfig}"]
        command = [
            "install",
            "stashlet",
            str(checkout.chart()),
            "-n",
            "stashlet-system",
            "--create-namespace",
        ]
        print(f"\n$ helm {' '.join(command)} --wait", flush=True)
        subprocess.run([*helm, *command, "--skip-crds", "--wait", "--timeout=180s"], check=True, timeout=240)

        step("a restic REST server pod, standing in for the seed's GCS bucket")
        kubectl("apply", "-f", "-", input_obj=nodeobjects.rest_server(BACKENDS))
        kubectl("rollout", "status", "-n", BACKENDS, "deployment/rest-server", "--timeout=120s")
        return kubectl

    async def _backup_steps(self, kubectl: Kubectl) -> None:
        step(
            "seed 003: the demo namespace, the Deployment writing sample data, Secret, Repository, "
            "BackupConfiguration"
        )
        kubectl("create", "namespace", NAMESPACE)
        kubectl("apply", "-f", str(checkout.examples() / "deployment.yaml"))
        await until(lambda: self._running(kubectl) >= 3, "the three busybox replicas to run")
        pod = self._pods(kubectl)[0]
        note(f"data.txt: {self._exec(kubectl, pod, 'cat /source/data/data.txt').strip()}")
        secret = load("secret.yaml")[0]
        secret["stringData"] = {"RESTIC_PASSWORD": "changeit"}
        kubectl("apply", "-f", "-", input_obj=secret)
        repository = load("repository.yaml")[0]
        repository["spec"]["backend"] = {
            "rest": {"url": f"{REST_URL}/sample-data"},
            "storageSecretName": "gcs-secret",
        }
        note("the Repository gcs-repo is applied with a REST-server backend instead of GCS")
        kubectl("apply", "-f", "-", input_obj=repository)
        kubectl("apply", "-f", str(checkout.examples() / "backupconfiguration.yaml"))
        await until(
            lambda: (
                kubectl.json("backupconfiguration", "pause-backup", "-n", NAMESPACE)
                .get("status", {})
                .get("phase")
                == "Ready"
            ),
            "the BackupConfiguration to be Ready",
        )
        kubectl("get", "backupconfiguration", "-n", NAMESPACE)
        kubectl("get", "cronjob", "-n", NAMESPACE)

        step("the operator injected the stash sidecar: the Deployment rolls out on the node")
        await until(lambda: self._running(kubectl, injected=True) >= 3, "three ready pods with the sidecar")
        kubectl("get", "pods", "-A", "-o", "wide")
        pod = self._pods(kubectl, injected=True)[0]
        self._exec(
            kubectl, pod, f"echo written by the demo at {time.strftime('%H:%M:%S')} > /source/data/report.txt"
        )
        note(f"and report.txt: {self._exec(kubectl, pod, 'cat /source/data/report.txt').strip()}")

        step("take a backup now: a BackupSession, as the CronJob would make it")
        session = f"pause-backup-{int(time.time())}"
        kubectl(
            "create",
            "-f",
            "-",
            input_obj={
                "apiVersion": names.API_VERSION_BETA,
                "kind": names.KIND_BACKUP_SESSION,
                "metadata": {
                    "name": session,
                    "namespace": NAMESPACE,
                    "labels": {names.LABEL_BACKUP_CONFIGURATION: "pause-backup"},
                },
                "spec": {
                    "invoker": {
                        "apiGroup": names.GROUP,
                        "kind": names.KIND_BACKUP_CONFIGURATION,
                        "name": "pause-backup",
                    }
                },
            },
        )
        await until(lambda: self._phase(kubectl, session) in ("Succeeded", "Failed"), f"{session} to finish")
        status = kubectl.json("backupsession", session, "-n", NAMESPACE)["status"]
        if status["phase"] == "Failed":
            raise RuntimeError(f"the backup failed: {json.dumps(status, indent=2)}")
        # the replica that took the Lease for this session and backed up: its pod is in the host's entry
        backed_up_by = status["targets"][0]["stats"][0]["pod"]
        ip = kubectl.json("pod", backed_up_by, "-n", NAMESPACE)["status"]["podIP"]
        status_url = f"http://{ip}:{names.DEFAULT_STATUS_PORT}"
        kubectl("get", "backupsession", "-n", NAMESPACE)
        kubectl("get", "repository", "-n", NAMESPACE)
        curl(f"{status_url}/status")

        step("pause it (seed 003): a BackupSession made by hand is Skipped")
        kubectl(
            "patch",
            "backupconfiguration",
            "-n",
            NAMESPACE,
            "pause-backup",
            "--type=merge",
            "--patch",
            '{"spec": {"paused": true}}',
        )
        kubectl("apply", "-f", str(checkout.examples() / "backupsession.yaml"))
        await until(
            lambda: self._phase(kubectl, "instant-backupsession") == "Skipped", "the session to be Skipped"
        )
        kubectl("get", "backupsession", "-n", NAMESPACE, "instant-backupsession")
        described = kubectl("describe", "backupsession", "-n", NAMESPACE, "instant-backupsession", show=False)
        print("\n$ kubectl describe backupsession -n demo instant-backupsession | tail -3")
        print("\n".join(described.rstrip().splitlines()[-3:]), flush=True)

        step("resume it")
        kubectl(
            "patch",
            "backupconfiguration",
            "-n",
            NAMESPACE,
            "pause-backup",
            "--type=merge",
            "--patch",
            '{"spec": {"paused": false}}',
        )
        kubectl("get", "backupconfiguration", "-n", NAMESPACE)

        step("kubectl stash: every configuration at a glance, and the snapshots (restic in a Pod)")
        self._plugin("status", "-n", NAMESPACE)
        self._plugin("snapshots", "gcs-repo", "-n", NAMESPACE)

    def _plugin(self, *args: str) -> None:
        """``kubectl stash <args>`` (the installed plugin's code, run with this Python), echoed."""
        print(f"\n$ kubectl stash {' '.join(args)}", flush=True)
        argv = [
            sys.executable,
            "-m",
            "stashlet.kubectl_stash.cli",
            *args,
            f"--kubeconfig={self.cluster.kubeconfig}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
        print((done.stdout + done.stderr).rstrip(), flush=True)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl stash {args[0]} exited {done.returncode}")

    async def _restore_steps(self, kubectl: Kubectl) -> None:
        step("seed 004: wipe the volume, then restore it through a RestoreSession")
        pod = self._pods(kubectl, injected=True)[0]
        self._exec(kubectl, pod, "rm -rf /source/data/* && ls -A /source/data")
        note(f"the volume holds {self._exec(kubectl, pod, 'ls -A /source/data').split()}")
        kubectl("apply", "-f", str(checkout.examples() / "restoresession.yaml"))
        await until(
            lambda: (
                kubectl.json("restoresession", "deployment-restore", "-n", NAMESPACE)
                .get("status", {})
                .get("phase")
                in ("Succeeded", "Failed")
            ),
            "the restore to finish",
        )
        kubectl("get", "restoresession", "-n", NAMESPACE)
        status = kubectl.json("restoresession", "deployment-restore", "-n", NAMESPACE)["status"]
        if status.get("phase") != "Succeeded":
            raise RuntimeError(f"the restore failed: {json.dumps(status, indent=2)}")
        await until(lambda: self._running(kubectl, injected=True) >= 3, "the restored pods to run")
        pod = self._pods(kubectl, injected=True)[0]
        note(f"report.txt is back: {self._exec(kubectl, pod, 'cat /source/data/report.txt').strip()!r}")

    def _exec(self, kubectl: Kubectl, pod: str, script: str) -> str:
        return kubectl("exec", "-n", NAMESPACE, pod, "-c", "busybox", "--", "sh", "-c", script, show=False)

    def _pods(self, kubectl: Kubectl, *, injected: bool = False) -> list[str]:
        """The ready pods of the demo Deployment (with ``injected``: those with the sidecar)."""
        items = kubectl.json("pods", "-n", NAMESPACE, "-l", "app=stash-demo")["items"]
        return [
            p["metadata"]["name"]
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in p["status"].get("conditions") or []
            )
            and (not injected or any(c["name"] == names.SIDECAR_CONTAINER for c in p["spec"]["containers"]))
        ]

    def _running(self, kubectl: Kubectl, *, injected: bool = False) -> int:
        return len(self._pods(kubectl, injected=injected))

    def _phase(self, kubectl: Kubectl, session: str) -> str | None:
        phase = kubectl.json("backupsession", session, "-n", NAMESPACE).get("status", {}).get("phase")
        return str(phase) if phase else None


def on_cluster(kubeconfig: Path) -> None:
    """``--kubeconfig``: apply the CRDs and the seed 003 objects to an existing cluster and show them."""
    kubectl = Kubectl(kubeconfig)
    step("the stashlet CRDs")
    kubectl("apply", "--server-side", "-f", str(checkout.crds()))
    kubectl("create", "namespace", NAMESPACE)
    for manifest in ("deployment.yaml", "secret.yaml", "repository.yaml", "backupconfiguration.yaml"):
        kubectl("apply", "--validate=strict", "-f", str(checkout.examples() / manifest))
    kubectl("get", "backupconfiguration", "-n", NAMESPACE)
    note("with the operator installed by the Helm chart (charts/stashlet), the configuration turns Ready")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stashlet-cluster demo``."""
    parser = argparse.ArgumentParser(
        prog="stashlet-cluster demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kubeconfig",
        action="store_true",
        help="use the cluster in $KUBECONFIG instead of an embedded control plane",
    )
    args = parser.parse_args(argv)
    if args.kubeconfig:
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            print("stashlet demo: --kubeconfig given but KUBECONFIG is not set", file=sys.stderr)
            return 2
        on_cluster(Path(kubeconfig))
        return 0
    with tempfile.TemporaryDirectory(prefix="stashlet-demo-", dir="/var/tmp") as tmp:
        asyncio.run(Walkthrough(Path(tmp)).run())
    print("\ndone.")
    return 0
