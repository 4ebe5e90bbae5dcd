"""End-to-end fixtures: the operator as a process, pods run by the process kubelet, real backends.

Everything runs as it would in a cluster: the operator with its own kubeconfig (as its Deployment
would, with broad rights), the pods' containers (sidecar, trigger, init-container) with exactly the
command, args, env and service-account token the operator wrote into their specs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, http_ok
from stashlet.localcluster.kubelet import ProcessKubelet
from stashlet.localcluster.processes import ManagedProcess, free_port, wait_until

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
async def kubelet(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProcessKubelet]:
    """A process kubelet for the session's control plane; the agent image's restic is on its PATH."""
    restic = tools.ensure("restic")
    node = ProcessKubelet(
        control_plane,
        tmp_path_factory.mktemp("kubelet"),
        node_name="e2e-node",
        extra_path=[VENV_BIN, restic.parent],
        extra_env={"STASHLET_RESTIC": str(restic)},
    )
    await node.start()
    try:
        yield node
    finally:
        await node.close()


@pytest.fixture(scope="session")
def pod_pushgateway(pushgateway: str, kubelet: ProcessKubelet) -> str:
    """The session's Pushgateway as pods reach it."""
    port = int(pushgateway.rsplit(":", 1)[1])
    return f"http://{kubelet.expose_loopback_port(port)}:{port}"


@pytest.fixture(scope="session")
def rest_server(kubelet: ProcessKubelet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real restic REST server (the pinned build); yields its URL as pods reach it.

    It stands in for the cloud object stores the seeds use (GCS cannot run on this machine).
    """
    data = tmp_path_factory.mktemp("rest-server")
    port = free_port()
    process = ManagedProcess.start(
        "rest-server",
        [str(tools.ensure("rest-server")), "--path", str(data), "--listen", f"127.0.0.1:{port}", "--no-auth"],
        data / "rest-server.log",
    )
    try:
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/") or _responds(port),
            timeout=30,
            what="rest-server",
            process=process,
        )
        yield f"http://{kubelet.expose_loopback_port(port)}:{port}"
    finally:
        process.stop()


def _responds(port: int) -> bool:
    from stashlet.localcluster.processes import port_open

    return port_open(port)


@pytest.fixture
def operator_for(
    control_plane: ControlPlane, pod_pushgateway: str, tmp_path: Path
) -> Iterator[Callable[[str], ManagedProcess]]:
    """Start ``stashlet-operator run`` for the given namespaces, as its Deployment would run it."""
    started: list[ManagedProcess] = []

    def start(namespaces: str) -> ManagedProcess:
        env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
        process = ManagedProcess.start(
            "stashlet-operator",
            [
                str(VENV_BIN / "stashlet-operator"),
                "run",
                f"--namespaces={namespaces}",
                f"--pushgateway-url={pod_pushgateway}",
                "--agent-log-level=debug",
                "--resync-seconds=30",
            ],
            tmp_path / f"operator-{len(started)}.log",
            env=env,
        )
        started.append(process)
        time.sleep(1.0)
        if not process.alive():
            pytest.fail(f"operator exited:\n{process.log_tail(40)}")
        return process

    yield start
    for process in started:
        process.stop()


def kubectl_json(kubectl: Callable[..., Any], *args: str) -> Any:
    """``kubectl get ... -o json``, parsed."""
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


async def eventually(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:  # noqa: ASYNC109
    """Poll ``check`` (sync) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"{what} not reached in {timeout:.0f}s (last: {last!r})")


async def roll_out(
    kubelet: ProcessKubelet,
    kubectl: Callable[..., Any],
    namespace: str,
    app: str,
    replicas: int,
    containers: list[str] | None = None,
    *,
    timeout: float = 180,  # noqa: ASYNC109
) -> list[str]:
    """Play the node for Deployment ``app`` while the operator's injection rolls it out: run each pod
    that carries the ``stash`` sidecar as it appears (its ``containers``, default all), until all
    ``replicas`` are updated. A rollout brings one new pod at a time (maxSurge 25%, maxUnavailable 25%
    round to 1 and 0 for three replicas) and waits for it to be Ready, so the pods must run as they come.
    Done once the template carries the sidecar and the controller has rolled it out to every replica.
    Returns the pods run, in order."""
    started: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        pods = (await asyncio.to_thread(kubectl_json, kubectl, "pods", "-n", namespace, "-l", f"app={app}"))[
            "items"
        ]
        for pod in pods:
            name = pod["metadata"]["name"]
            injected = any(c["name"] == "stash" for c in pod["spec"]["containers"])
            if injected and name not in started and not pod["metadata"].get("deletionTimestamp"):
                await kubelet.run_pod(namespace, name, containers)
                started.append(name)
        deployment = await asyncio.to_thread(kubectl_json, kubectl, "deployment", app, "-n", namespace)
        status = deployment.get("status") or {}
        template = deployment["spec"]["template"]["spec"]["containers"]
        if (
            any(c["name"] == "stash" for c in template)
            and status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == replicas
            and status.get("replicas") == replicas
            and len(started) >= replicas
        ):
            return started
        if time.monotonic() > deadline:
            pytest.fail(f"the rollout of {namespace}/{app} did not finish in {timeout:.0f}s: ran {started}")
        await asyncio.sleep(0.5)


@pytest.fixture
def helpers() -> Any:
    """The small helpers above, for the e2e tests (they cannot import each other's modules)."""

    class Helpers:
        get = staticmethod(kubectl_json)
        until = staticmethod(eventually)
        roll_out = staticmethod(roll_out)

    return Helpers


def run(cmd: list[str]) -> str:
    """Run a command, return its stdout."""
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
