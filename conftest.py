"""Fixtures shared by every test: the real local control plane, one per test session.

The control plane is etcd + kube-apiserver + kube-controller-manager from ``stashlet.localcluster``,
the same code as ``stashlet-cluster up``; its binaries come from KUBEBUILDER_ASSETS or are built once
into the cache. Each test that needs the cluster gets a namespace of its own.
"""

import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _pytest.mark.expression import Expression
from tests import polling
from tests.namespaces import create_namespace, seed_namespaces_held

from stashlet.localcluster import node, tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane, http_ok
from stashlet.localcluster.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parent
CRDS = REPO_ROOT / "charts" / "stashlet" / "crds"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


SHARED_CLUSTER = "STASHLET_TEST_CLUSTER"
"""Under pytest-xdist: the folder of the cluster the controller brought up for its workers."""
SHARED_NODE_UNAVAILABLE = "STASHLET_TEST_NODE_UNAVAILABLE"


def _start_cluster(directory: Path) -> LocalCluster:
    """The control plane and a real node with the CRDs; the plane alone (and why) where no node can run
    (no root, no containerd, or another run holds this machine's one node)."""
    try:
        cluster = LocalCluster(directory)
        cluster.up(crds=CRDS)
    except node.NodeUnavailable as exc:
        cluster = LocalCluster(directory, node=False)
        cluster.node_unavailable = str(exc)
        cluster.up(crds=CRDS)
    return cluster


def _wants_cluster(config: pytest.Config) -> bool:
    """False when ``-m`` leaves out every test marked ``cluster`` (whatever else those carry)."""
    if not config.option.markexpr:
        return True
    expression = Expression.compile(config.option.markexpr)
    others = ("restic", "images")
    combinations = [{"cluster", *extra} for n in range(3) for extra in itertools.combinations(others, n)]
    return any(expression.evaluate(lambda name, marks=marks: name in marks) for marks in combinations)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller brings the one cluster up before the workers start (this
    machine has one node): they attach to it, and it is stopped when the controller is done with the
    workers (a cleanup of the configuration, so also when starting them fails)."""
    config = session.config
    if not config.pluginmanager.has_plugin("dsession") or not _wants_cluster(config):
        return
    folder = Path(tempfile.mkdtemp(prefix="stashlet-test-cluster-"))
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    cluster = _start_cluster(folder / "c")
    config.add_cleanup(cluster.down)
    os.environ[SHARED_CLUSTER] = str(cluster.directory)
    os.environ[SHARED_NODE_UNAVAILABLE] = cluster.node_unavailable or ""


@pytest.fixture(scope="session")
def local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """The session's cluster: the control plane and a real node, with the stashlet CRDs installed;
    stopped after the session, with every host change undone. A pytest-xdist worker attaches to its
    controller's cluster instead (see :func:`pytest_sessionstart`); each test works in namespaces of
    its own, so workers do not meet.

    Where a real node cannot run (no root, no containerd), the control plane runs alone and
    ``node_unavailable`` says why; the tests that need the node then fail with that line.
    """
    shared = os.environ.get(SHARED_CLUSTER)
    if shared and hasattr(request.config, "workerinput"):
        attached = LocalCluster.attach(Path(shared))
        attached.node_unavailable = os.environ.get(SHARED_NODE_UNAVAILABLE) or None
        yield attached
        return
    cluster = _start_cluster(tmp_path_factory.mktemp("cluster") / "c")
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def api_discovery(request: pytest.FixtureRequest, local_cluster: LocalCluster) -> Iterator[None]:
    """API discovery of the whole cluster, shared between pytest-xdist workers: a test that dumps
    resources (it lists every API group) holds it shared, a test that breaks a group's discovery
    (``broken_api_group``) holds it alone, so no dump ever meets another test's broken group."""
    alone = "broken_api_group" in request.fixturenames
    with (local_cluster.directory / "discovery.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


@pytest.fixture(scope="session")
def control_plane(local_cluster: LocalCluster) -> ControlPlane:
    """The session cluster's control plane (its API server, kubeconfig and kubectl)."""
    return local_cluster.plane


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """Run the pinned kubectl as the cluster admin; ``input_obj`` sends objects as YAML on stdin."""

    def run(*args: str, input_obj: Any = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = None
        if input_obj is not None:
            objs = input_obj if isinstance(input_obj, list) else [input_obj]
            text = yaml.safe_dump_all(objs, sort_keys=False)
        return control_plane.kubectl(*args, input_text=text, check=check)

    return run


@pytest.fixture
def namespace(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def named_namespace(
    control_plane: ControlPlane, local_cluster: LocalCluster, kubectl: Kubectl
) -> Iterator[Callable[[str], str]]:
    """Create namespaces with exact names (the seeds use `demo`, `backup`, `user1` ...), holding those
    names alone for the test (:func:`seed_namespaces_held`); deleted (without waiting) afterwards."""
    created: list[str] = []

    def make(name: str) -> str:
        create_namespace(control_plane, kubectl, name)
        created.append(name)
        return name

    with seed_namespaces_held(local_cluster):
        yield make
        for name in created:
            kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def restic_binary() -> Path:
    """The pinned restic, built into the cache when missing."""
    return tools.ensure("restic")


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway (the pinned build) on a free loopback port; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    process = ManagedProcess.start(
        "pushgateway", [str(tools.ensure("pushgateway")), f"--web.listen-address=127.0.0.1:{port}"], log
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.alive(), f"the Pushgateway exited; its log:\n{process.log_tail()}"
            return http_ok(f"{url}/-/ready")

        polling.wait_until(ready, what="the Pushgateway's /-/ready", timeout=30, log=process.log_tail)
        yield url
    finally:
        process.stop()
