"""The main job: a walk through the seed 003 manifests on a real control plane, with `kubectl get`.

Without ``--kubeconfig`` it brings up an embedded control plane (etcd, kube-apiserver,
kube-controller-manager) in a temporary folder and stops it at the end; with it, it uses the cluster in
``$KUBECONFIG`` and leaves the objects there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from stashlet.api import names
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples" / "pause-backup"
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"
CRD_PLURALS = (
    names.REPOSITORIES,
    names.BACKUP_CONFIGURATIONS,
    names.BACKUP_SESSIONS,
    names.RESTORE_SESSIONS,
    names.BACKUP_BLUEPRINTS,
)
STEPS = (
    "deployment.yaml",
    "secret.yaml",
    "repository.yaml",
    "backupconfiguration.yaml",
    "backupsession.yaml",
)


class Demo:
    """Runs kubectl against one cluster and prints what a person would type and see."""

    def __init__(self, kubeconfig: Path) -> None:
        """Use the cluster of ``kubeconfig``."""
        self.kubeconfig = kubeconfig
        self.kubectl_path = tools.ensure("kubectl")

    def kubectl(self, *args: str, show: bool = True) -> str:
        """Run kubectl, echoing the command and its output like a terminal session."""
        if show:
            print(f"\n$ kubectl {' '.join(args)}", flush=True)
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
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

    def run(self) -> None:
        """The walk-through."""
        step("the stashlet CRDs")
        self.kubectl("apply", "--server-side", "-f", str(CRDS), show=False)
        self.kubectl("wait", "--for=condition=Established", "-f", str(CRDS), show=False)
        self.kubectl("get", "crd", *(f"{plural}.{names.GROUP}" for plural in CRD_PLURALS))
        step("seed 003: the demo namespace, workload, storage secret, repository and configuration")
        self.kubectl("create", "namespace", "demo")
        for manifest in STEPS:
            self.kubectl("apply", "--validate=strict", "-f", str(EXAMPLES / manifest))
        step("what the API server now shows")
        self.kubectl("get", "repository", "-n", "demo")
        self.kubectl("get", "backupconfiguration", "-n", "demo")
        self.kubectl("get", "backupsession", "-n", "demo")
        step("pause it, as seed 003 does")
        self.kubectl(
            "patch",
            "backupconfiguration",
            "-n",
            "demo",
            "pause-backup",
            "--type=merge",
            "--patch",
            '{"spec": {"paused": true}}',
        )
        self.kubectl("get", "backupconfiguration", "-n", "demo")


def step(title: str) -> None:
    """Print a step heading."""
    print(f"\n=== {title}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stashlet-cluster demo``."""
    parser = argparse.ArgumentParser(prog="stashlet-cluster demo")
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
        Demo(Path(kubeconfig)).run()
        return 0
    with tempfile.TemporaryDirectory(prefix="stashlet-demo-") as tmp:
        step("starting an embedded control plane (etcd, kube-apiserver, kube-controller-manager)")
        started = time.monotonic()
        plane = ControlPlane(Path(tmp) / "cluster")
        try:
            state = plane.start()
            wait_for_default_service_account(plane)
            print(f"up in {time.monotonic() - started:.1f}s at {state.server}", flush=True)
            Demo(plane.kubeconfig).run()
        finally:
            step("stopping the control plane")
            plane.stop()
    print("done.")
    return 0
