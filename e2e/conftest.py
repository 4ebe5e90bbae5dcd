"""End-to-end fixtures: the real node, stashlet installed with its Helm chart, real backends in pods.

The session's cluster has a real node (containerd, kubelet, kube-proxy, CoreDNS) running stashlet's
own images. Each test installs the chart (``helm install``) for the namespaces it uses: the operator
runs from its image in its Deployment, and agents push to the chart's Pushgateway by its Service name.
The restic REST server (standing in for the seeds' cloud buckets, which cannot run here) is a pod too.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.polling import eventually, in_thread

from stashlet.localcluster import nodeobjects, tools
from stashlet.localcluster.cluster import LocalCluster

CHART = Path(__file__).resolve().parents[1] / "charts" / "stashlet"
BACKENDS = "stashlet-e2e-backends"


@pytest.fixture(scope="session")
def node(local_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, which must have a real node (a test never runs without one)."""
    if local_cluster.node is None:
        pytest.fail(f"end-to-end tests need a real node: {local_cluster.node_unavailable}")
    return local_cluster


@dataclass(frozen=True)
class RestServer:
    """The REST server as pods reach it (Service DNS name) and as this host reaches it (ClusterIP)."""

    pod_url: str
    host_url: str


@pytest.fixture(scope="session")
def rest_backend(node: LocalCluster, request: pytest.FixtureRequest) -> RestServer:
    """A restic REST server pod (the pinned rest-server image) behind a Service, for the session (one
    per pytest-xdist worker, in a namespace of its own)."""
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    namespace = f"{BACKENDS}-{worker}"
    objects = nodeobjects.rest_server(namespace)
    node.kubectl("apply", "-f", "-", input_text="\n---\n".join(json.dumps(o) for o in objects))
    node.kubectl("rollout", "status", "-n", namespace, "deployment/rest-server", "--timeout=120s")
    ip = node.kubectl(
        "get", "service", "rest-server", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    return RestServer(
        pod_url=f"http://rest-server.{namespace}.svc.cluster.local:{nodeobjects.REST_SERVER_PORT}",
        host_url=f"http://{ip.strip()}:{nodeobjects.REST_SERVER_PORT}",
    )


@pytest.fixture(scope="session")
def rest_server(rest_backend: RestServer) -> str:
    """The REST server's URL as pods reach it."""
    return rest_backend.pod_url


@dataclass(frozen=True)
class Install:
    """One ``helm install`` of the chart: its release, namespace, and the Pushgateway as this host sees it."""

    release: str
    namespace: str
    pushgateway: str


@pytest.fixture
def operator_for(node: LocalCluster) -> Iterator[Callable[[str], Install]]:
    """``helm install`` the chart (default images, probes) watching the given namespaces, comma-separated;
    it goes into the first one. Waits until the operator Deployment is Ready; uninstalled afterwards."""
    installed: list[Install] = []
    helm = str(tools.ensure("helm"))

    def install(namespaces: str) -> Install:
        watched = namespaces.split(",")
        release = f"stashlet-{uuid.uuid4().hex[:6]}"
        argv = [
            helm,
            f"--kubeconfig={node.kubeconfig}",
            "install",
            release,
            str(CHART),
            "-n",
            watched[0],
            "--skip-crds",
            "--set",
            f"watchNamespaces={{{','.join(watched)}}}",
            "--set",
            "operator.resyncSeconds=30",
            "--set",
            "agent.logLevel=debug",
            "--wait",
            "--timeout=180s",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
        if result.returncode != 0:
            pytest.fail(f"helm install failed: {result.stderr}")
        service = json.loads(
            node.kubectl(
                "get",
                "service",
                "-n",
                watched[0],
                "-l",
                f"app.kubernetes.io/instance={release}",
                "-o",
                "json",
            ).stdout
        )
        [gateway] = [s for s in service["items"] if "pushgateway" in s["metadata"]["name"]]
        port = gateway["spec"]["ports"][0]["port"]
        done = Install(release, watched[0], f"http://{gateway['spec']['clusterIP']}:{port}")
        installed.append(done)
        return done

    yield install
    for done in installed:
        subprocess.run(
            [
                helm,
                f"--kubeconfig={node.kubeconfig}",
                "uninstall",
                done.release,
                "-n",
                done.namespace,
                "--wait",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )


def kubectl_json(kubectl: Callable[..., Any], *args: str) -> Any:
    """``kubectl get ... -o json``, parsed."""
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


async def until(
    check: Callable[[], Any],
    *,
    timeout: float,  # noqa: ASYNC109
    what: str,
    interval: float = 0.5,
    log: Callable[[], str] | None = None,
) -> Any:
    """:func:`tests.polling.eventually` for a blocking ``check`` (kubectl), run in a thread; ``log`` tells
    what was there when it timed out."""
    return await eventually(in_thread(check), what=what, timeout=timeout, interval=interval, log=log)


async def rolled_out(
    kubectl: Callable[..., Any],
    namespace: str,
    app: str,
    *,
    container: str = "stash",
    timeout: float = 180,  # noqa: ASYNC109
) -> list[str]:
    """Wait until Deployment ``app``'s template carries ``container`` and the rollout finished with every
    replica Ready; return the names of its live pods."""

    def done() -> list[str] | None:
        deployment = kubectl_json(kubectl, "deployment", app, "-n", namespace)
        status = deployment.get("status") or {}
        spec = deployment["spec"]
        names = [c["name"] for c in spec["template"]["spec"]["containers"]] + [
            c["name"] for c in spec["template"]["spec"].get("initContainers") or []
        ]
        if container not in names or status.get("observedGeneration") != deployment["metadata"]["generation"]:
            return None
        replicas = spec.get("replicas", 1)
        if not (
            status.get("updatedReplicas") == replicas
            and status.get("readyReplicas") == replicas
            and status.get("replicas") == replicas
        ):
            return None
        pods = kubectl_json(kubectl, "pods", "-n", namespace, "-l", f"app={app}")["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return [p["metadata"]["name"] for p in live] if len(live) == replicas else None

    names: list[str] = await until(done, timeout=timeout, what=f"the rollout of {namespace}/{app}")
    return names


async def pvc_path(kubectl: Callable[..., Any], namespace: str, claim: str) -> Path:
    """The folder on this machine (the node) that holds a bound claim's host-path volume."""

    def bound() -> str | None:
        pvc = kubectl_json(kubectl, "pvc", claim, "-n", namespace)
        return pvc["spec"].get("volumeName") if pvc.get("status", {}).get("phase") == "Bound" else None

    volume = await until(bound, timeout=60, what=f"PVC {namespace}/{claim} bound")
    return Path(kubectl_json(kubectl, "pv", volume)["spec"]["hostPath"]["path"])


def pod_ip(kubectl: Callable[..., Any], namespace: str, pod: str) -> str:
    """A pod's IP on the node's bridge (this host reaches it directly)."""
    return str(kubectl_json(kubectl, "pod", pod, "-n", namespace)["status"]["podIP"])


def exec_in(kubectl: Callable[..., Any], namespace: str, pod: str, container: str, *command: str) -> str:
    """``kubectl exec`` a command in a container; its stdout."""
    return str(kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command).stdout)


def port_forwarder(node: LocalCluster) -> Callable[[str, str, int], contextlib.AbstractContextManager[int]]:
    """``kubectl port-forward pod/<pod> :<port>`` for as long as the context lasts; yields the local port."""

    @contextlib.contextmanager
    def forward(namespace: str, pod: str, port: int) -> Iterator[int]:
        argv = [
            str(tools.ensure("kubectl")),
            f"--kubeconfig={node.kubeconfig}",
            "port-forward",
            "-n",
            namespace,
        ]
        with subprocess.Popen(
            [*argv, f"pod/{pod}", f":{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            try:
                assert process.stdout is not None
                line = process.stdout.readline()
                match = re.search(r"127\.0\.0\.1:(\d+) -> ", line)
                if match is None:
                    pytest.fail(f"kubectl port-forward said {line!r}")
                yield int(match.group(1))
            finally:
                process.terminate()
                process.communicate(timeout=10)

    return forward


@pytest.fixture
def helpers(node: LocalCluster) -> Any:
    """The small helpers above, for the e2e tests (they cannot import each other's modules)."""

    class Helpers:
        get = staticmethod(kubectl_json)
        until = staticmethod(until)
        rolled_out = staticmethod(rolled_out)
        pod_ip = staticmethod(pod_ip)
        pvc_path = staticmethod(pvc_path)
        exec_in = staticmethod(exec_in)
        port_forward = staticmethod(port_forwarder(node))

    return Helpers
