"""The main job: seeds 003 and 004 walked through on an embedded control plane, every part real.

It starts etcd, kube-apiserver and kube-controller-manager, a Pushgateway and a restic REST server
(standing in for the seed's GCS bucket, which cannot run here), the operator as a process, and the
process kubelet that runs the pods' containers (the busybox writer and the injected ``stash``
sidecar) as they are written. Then, as the seeds do: create the demo Deployment and objects, take a
backup (an instant one, through a sidecar's ``POST /backup``), show ``kubectl get backupsession`` and
``curl`` of the sidecar's ``/status``, pause and show the skipped session, resume, wipe the volume,
restore it through a RestoreSession and show the files are back. Everything stops at the end.

``--kubeconfig`` uses the cluster in ``$KUBECONFIG`` instead: the CRDs and the seed objects are
applied and shown there (the operator and agents must then be installed with the Helm chart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, http_ok, wait_for_default_service_account
from stashlet.localcluster.kubelet import ProcessKubelet
from stashlet.localcluster.processes import ManagedProcess, free_port, port_open, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples" / "pause-backup"
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"
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
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def curl(url: str, method: str = "GET") -> str:
    """What ``curl`` would print."""
    print(f"\n$ curl -s {'-X POST ' if method == 'POST' else ''}{url}", flush=True)
    request = urllib.request.Request(url, method=method)  # noqa: S310 - our own local server
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
        body: str = response.read().decode()
    print(json.dumps(json.loads(body), indent=2), flush=True)
    return body


class Walkthrough:
    """The embedded demo: servers, operator, kubelet, and the seeds' steps."""

    def __init__(self, work: Path) -> None:
        """Work in ``work`` (a temporary folder)."""
        self.work = work
        self.plane = ControlPlane(work / "cluster")
        self.processes: list[ManagedProcess] = []
        self.kubelet: ProcessKubelet | None = None
        self.started_pods: set[str] = set()
        self.host = ""
        self.ports: dict[str, int] = {}

    def _serve(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        process = ManagedProcess.start(name, argv, self.work / "logs" / f"{name}.log")
        self.processes.append(process)
        wait_until(ready, timeout=60, what=name, process=process)

    async def run(self) -> None:
        """All steps, then a clean stop."""
        runner: asyncio.Task[None] | None = None
        try:
            kubectl, kubelet = await self._start()
            runner = asyncio.create_task(self._run_new_pods(kubectl, kubelet), name="kubelet-loop")
            await self._backup_steps(kubectl, kubelet)
            await self._restore_steps(kubectl, kubelet)
        finally:
            step("stopping everything")
            if runner is not None:
                runner.cancel()
            if self.kubelet is not None:
                await self.kubelet.close()
            for process in reversed(self.processes):
                process.stop()
            self.plane.stop()

    async def _start(self) -> tuple[Kubectl, ProcessKubelet]:
        step("starting an embedded control plane: etcd, kube-apiserver, kube-controller-manager")
        started = time.monotonic()
        state = self.plane.start(crds=CRDS)
        wait_for_default_service_account(self.plane)
        note(f"up in {time.monotonic() - started:.1f}s at {state.server}")
        kubectl = Kubectl(self.plane.kubeconfig)
        kubectl("get", "crd", *(f"{plural}.{names.GROUP}" for plural in CRD_PLURALS))

        step("starting a Pushgateway, a restic REST server (for the seed's GCS bucket), the process kubelet")
        gateway, rest = free_port(), free_port()
        self.ports = {"pushgateway": gateway, "rest": rest}
        self._serve(
            "pushgateway",
            [str(tools.ensure("pushgateway")), f"--web.listen-address=127.0.0.1:{gateway}"],
            lambda: http_ok(f"http://127.0.0.1:{gateway}/-/ready"),
        )
        (self.work / "rest").mkdir()
        self._serve(
            "rest-server",
            [
                str(tools.ensure("rest-server")),
                "--path",
                str(self.work / "rest"),
                "--listen",
                f"127.0.0.1:{rest}",
                "--no-auth",
            ],
            lambda: port_open(rest),
        )
        restic = tools.ensure("restic")
        venv_bin = Path(sys.executable).parent
        self.kubelet = kubelet = ProcessKubelet(
            self.plane,
            self.work / "kubelet",
            node_name="demo-node",
            extra_path=[venv_bin, restic.parent],
            extra_env={"STASHLET_RESTIC": str(restic)},
        )
        await kubelet.start()
        self.host = kubelet.expose_loopback_port(gateway)
        kubelet.expose_loopback_port(rest)
        note(
            f"pods reach the Pushgateway at http://{self.host}:{gateway}, the REST server at "
            f"http://{self.host}:{rest}"
        )

        step("starting the operator (stashlet-operator run)")
        self.processes.append(
            ManagedProcess.start(
                "stashlet-operator",
                [
                    str(venv_bin / "stashlet-operator"),
                    "run",
                    f"--namespaces={NAMESPACE}",
                    f"--pushgateway-url=http://{self.host}:{gateway}",
                    "--resync-seconds=30",
                ],
                self.work / "logs" / "operator.log",
                env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
            )
        )
        return kubectl, kubelet

    async def _run_new_pods(self, kubectl: Kubectl, kubelet: ProcessKubelet) -> None:
        """Play the kubelet: start every pod of the demo Deployment as it appears (as a node would)."""
        while True:
            items = await asyncio.to_thread(kubectl.json, "pods", "-n", NAMESPACE, "-l", "app=stash-demo")
            for pod in items["items"]:
                name = pod["metadata"]["name"]
                if name in self.started_pods or pod["metadata"].get("deletionTimestamp"):
                    continue
                self.started_pods.add(name)
                try:
                    await kubelet.run_pod(NAMESPACE, name)
                except Exception as exc:  # a node reports a pod it cannot run and goes on with the rest
                    note(f"pod {name} could not start: {exc}")
            await asyncio.sleep(1.0)

    async def _backup_steps(self, kubectl: Kubectl, kubelet: ProcessKubelet) -> None:
        step(
            "seed 003: the demo namespace, the Deployment writing sample data, Secret, Repository, "
            "BackupConfiguration"
        )
        kubectl("create", "namespace", NAMESPACE)
        wait_for_default_service_account(self.plane, NAMESPACE)
        kubectl("apply", "-f", str(EXAMPLES / "deployment.yaml"))
        await until(lambda: self._running(kubectl) >= 3, "the three busybox replicas to run")
        data = kubelet.pvc_path(NAMESPACE, "source-pvc")
        await until((data / "data.txt").is_file, "busybox to write /source/data/data.txt")
        note(f"data.txt: {(data / 'data.txt').read_text().strip()}")
        secret = load("secret.yaml")[0]
        secret["stringData"] = {"RESTIC_PASSWORD": "changeit"}
        kubectl("apply", "-f", "-", input_obj=secret)
        repository = load("repository.yaml")[0]
        repository["spec"]["backend"] = {
            "rest": {"url": f"http://{self.host}:{self.ports['rest']}/sample-data"},
            "storageSecretName": "gcs-secret",
        }
        note("the Repository gcs-repo is applied with a REST-server backend instead of GCS")
        kubectl("apply", "-f", "-", input_obj=repository)
        kubectl("apply", "-f", str(EXAMPLES / "backupconfiguration.yaml"))
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

        step("the operator injected the stash sidecar: a rollout, each new pod's containers run")
        await until(lambda: self._running(kubectl, injected=True) >= 3, "three running pods with the sidecar")
        kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-o",
            "custom-columns=NAME:.metadata.name,"
            "CONTAINERS:.spec.containers[*].name,PHASE:.status.phase,IP:.status.podIP",
        )
        (data / "report.txt").write_text(
            f"written by the demo at {time.strftime('%H:%M:%S')}, before the backup\n"
        )
        note(f"and report.txt: {(data / 'report.txt').read_text().strip()}")

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
        leader = await until(lambda: self._lease_holder(kubectl), "a sidecar to hold the Lease")
        status_url = f"http://{kubelet.pod_ip(NAMESPACE, leader)}:{names.DEFAULT_STATUS_PORT}"
        await until(lambda: self._phase(kubectl, session) in ("Succeeded", "Failed"), f"{session} to finish")
        if self._phase(kubectl, session) == "Failed":
            status = kubectl.json("backupsession", session, "-n", NAMESPACE)["status"]
            raise RuntimeError(f"the backup failed: {json.dumps(status, indent=2)}")
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
        kubectl("apply", "-f", str(EXAMPLES / "backupsession.yaml"))
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

    async def _restore_steps(self, kubectl: Kubectl, kubelet: ProcessKubelet) -> None:
        step("seed 004: wipe the volume, then restore it through a RestoreSession")
        data = kubelet.pvc_path(NAMESPACE, "source-pvc")
        for child in data.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        note(f"the volume holds {sorted(p.name for p in data.iterdir())}")
        kubectl("apply", "-f", str(EXAMPLES / "restoresession.yaml"))
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
        note(f"report.txt is back: {(data / 'report.txt').read_text().strip()!r}")

    def _running(self, kubectl: Kubectl, *, injected: bool = False) -> int:
        """How many pods of the demo Deployment run (with ``injected``: those with the sidecar)."""
        items = kubectl.json("pods", "-n", NAMESPACE, "-l", "app=stash-demo")["items"]
        return sum(
            1
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") == "Running"
            and (not injected or any(c["name"] == names.SIDECAR_CONTAINER for c in p["spec"]["containers"]))
        )

    def _lease_holder(self, kubectl: Kubectl) -> str | None:
        try:
            lease = kubectl.json("lease", "lock-deployment-stash-demo-backup", "-n", NAMESPACE)
        except RuntimeError:
            return None
        holder = lease["spec"].get("holderIdentity")
        return str(holder) if holder else None

    def _phase(self, kubectl: Kubectl, session: str) -> str | None:
        phase = kubectl.json("backupsession", session, "-n", NAMESPACE).get("status", {}).get("phase")
        return str(phase) if phase else None


def on_cluster(kubeconfig: Path) -> None:
    """``--kubeconfig``: apply the CRDs and the seed 003 objects to an existing cluster and show them."""
    kubectl = Kubectl(kubeconfig)
    step("the stashlet CRDs")
    kubectl("apply", "--server-side", "-f", str(CRDS))
    kubectl("create", "namespace", NAMESPACE)
    for manifest in ("deployment.yaml", "secret.yaml", "repository.yaml", "backupconfiguration.yaml"):
        kubectl("apply", "--validate=strict", "-f", str(EXAMPLES / manifest))
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
