"""Namespaces with the seeds' fixed names (`demo`, `backup`, `user1` ...) on the cluster the pytest-xdist
workers share: held by one test at a time, and created again only once an earlier test's is gone."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Callable, Iterator

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@contextlib.contextmanager
def seed_namespaces_held(local_cluster: LocalCluster) -> Iterator[None]:
    """Hold the seeds' fixed namespace names (`demo`, `backup`, `user1` ...) alone: the workers share one
    cluster, and two tests using those names at once would meet. Held across processes (a file lock in
    the cluster's folder)."""
    with (local_cluster.directory / "seed-namespaces.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_namespace(control_plane: ControlPlane, kubectl: Kubectl, name: str) -> None:
    """Create namespace ``name``; one an earlier test is still deleting is waited for first."""
    made = kubectl("create", "namespace", name, check=False)
    if made.returncode != 0 and "being deleted" in made.stderr:
        kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=300s", check=False)
        made = kubectl("create", "namespace", name, check=False)
    if made.returncode != 0:
        raise RuntimeError(f"kubectl create namespace {name} failed: {made.stderr.strip()}")
    wait_for_default_service_account(control_plane, name)
