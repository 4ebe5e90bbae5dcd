"""The Snapshot API server as a host process behind the real control plane's aggregation layer.

The server runs as ``python -m stashlet.agent.snapshots_api`` with a ServiceAccount of its own (the
chart's rights: read Repositories and Secrets, create SubjectAccessReviews, read the front proxy's
ConfigMap), on this host's non-loopback address (an endpoint may not be loopback): a selectorless
Service with an Endpoints object and an EndpointSlice names it, and the APIService
``v1alpha1.repositories.stash.appscode.com`` trusts its certificate (signed by the cluster's CA for
``<service>.<namespace>.svc``). The API server dials the endpoint itself (``--enable-aggregator-routing``).
Repositories live on the real REST server (with an htpasswd user), written by the real restic.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests import polling
from tests.kubeconfigs import token_kubeconfig

from stashlet.localcluster import pki, tools
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.localcluster.processes import ManagedProcess, free_port

APISERVICE = "v1alpha1.repositories.stash.appscode.com"
SERVICE = "stashlet-snapshots"
REST_USER = "stash"
REST_PASSWORD = "rest-pass-5190"
RESTIC_PASSWORD = "snapshots-api-password-77"


def host_address(plane: ControlPlane) -> str:
    """An address of this host that the API server reaches and an endpoint may hold (not loopback):
    the API server's own when it is not loopback (a node's bridge), else the first global IPv4 one."""
    if not ipaddress.ip_address(plane.address).is_loopback:
        return plane.address
    shown = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True, check=True
    )
    for link in json.loads(shown.stdout):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and info.get("local"):
                return str(info["local"])
    raise AssertionError(f"this host has no global IPv4 address: {shown.stdout}")


@dataclass
class RestServer:
    """The pinned rest-server on 127.0.0.1 with one htpasswd user; stoppable."""

    root: Path
    port: int = 0
    process: ManagedProcess | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        digest = base64.b64encode(hashlib.sha1(REST_PASSWORD.encode()).digest()).decode()  # noqa: S324 - htpasswd's {SHA}
        (self.root / ".htpasswd").write_text(f"{REST_USER}:{{SHA}}{digest}\n")
        self.port = self.port or free_port()
        binary = tools.tool_dir(tools.REST_SERVER) / "rest-server"
        self.process = ManagedProcess.start(
            "rest-server",
            [str(binary), "--path", str(self.root), "--listen", f"127.0.0.1:{self.port}"],
            self.root.parent / "rest-server.log",
        )
        polling.wait_until(
            lambda: (
                "start server on" in self.process.log.read_text(errors="replace") if self.process else False
            ),
            what="the REST server to listen",
            timeout=20,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    server = RestServer(tmp_path_factory.mktemp("rest") / "data")
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class RestRepo:
    """A Repository on the REST server, its Secret, and restic to write into it."""

    namespace: str
    name: str
    url: str
    restic: Path

    def restic_run(self, *args: str, password: str = RESTIC_PASSWORD, check: bool = True) -> Any:
        env = {
            "RESTIC_REPOSITORY": f"rest:{self.url}",
            "RESTIC_PASSWORD": password,
            "RESTIC_REST_USERNAME": REST_USER,
            "RESTIC_REST_PASSWORD": REST_PASSWORD,
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(
            [str(self.restic), "--no-cache", *args],
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def backup(self, folder: Path, host: str) -> dict[str, Any]:
        """Back ``folder`` up as ``host``; restic's snapshot of it."""
        self.restic_run("backup", "--host", host, str(folder))
        found = json.loads(self.restic_run("snapshots", "--json", "--host", host, "--latest", "1").stdout)
        return dict(found[-1])


def rest_repository(
    kubectl: Any,
    namespace: str,
    name: str,
    url: str,
    restic: Path,
    *,
    password: str = RESTIC_PASSWORD,
    secret: str | None = None,
    create_secret: bool = True,
    labels: dict[str, str] | None = None,
) -> RestRepo:
    """A Repository ``name`` on ``url`` with Secret ``<name>-secret`` (RESTIC_PASSWORD and the REST user)."""
    secret = secret or f"{name}-secret"
    if create_secret:
        kubectl(
            "create",
            "secret",
            "generic",
            secret,
            "-n",
            namespace,
            f"--from-literal=RESTIC_PASSWORD={password}",
            f"--from-literal=REST_SERVER_USERNAME={REST_USER}",
            f"--from-literal=REST_SERVER_PASSWORD={REST_PASSWORD}",
        )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        **({"labels": labels} if labels else {}),
    }
    repository = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": metadata,
        "spec": {"backend": {"rest": {"url": url}, "storageSecretName": secret}},
    }
    kubectl("apply", "-f", "-", input_obj=repository)
    return RestRepo(namespace, name, url, restic)


SERVER_RULES = [
    {"apiGroups": ["stash.appscode.com"], "resources": ["repositories"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
]


@dataclass(frozen=True)
class SnapshotsServer:
    """The running server: its process, where it listens, its namespace."""

    process: ManagedProcess
    address: str
    port: int
    namespace: str


def _objects(namespace: str, address: str, port: int, ca_bundle: str) -> list[dict[str, Any]]:
    subject = {"kind": "ServiceAccount", "name": SERVICE, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-{SERVICE}"},
            "rules": SERVER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{namespace}-{SERVICE}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{namespace}-{SERVICE}",
            },
            "subjects": [subject],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{namespace}-{SERVICE}-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [subject],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": SERVICE,
                "namespace": namespace,
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port}]}],
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-host",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "repositories.stash.appscode.com",
                "version": "v1alpha1",
                "service": {"namespace": namespace, "name": SERVICE, "port": 443},
                "caBundle": ca_bundle,
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    ]


def _available(kubectl: Any) -> bool:
    shown = kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
    if shown.returncode != 0:
        return False
    conditions = json.loads(shown.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def snapshots_server(
    control_plane: ControlPlane, kubectl: Any, tmp_path_factory: pytest.TempPathFactory, restic_binary: Path
) -> Iterator[SnapshotsServer]:
    """The server, registered as the APIService; removed (APIService, rights, namespace) afterwards."""
    namespace = f"snapshots-api-{uuid.uuid4().hex[:6]}"
    folder = tmp_path_factory.mktemp("snapshots-api")
    kubectl("create", "namespace", namespace)
    address, port = host_address(control_plane), free_port()
    cert, key = pki.serving_certificate(
        control_plane.pki,
        SERVICE,
        [f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc.cluster.local"],
        folder,
    )
    ca_bundle = base64.b64encode(control_plane.pki.ca_cert.read_bytes()).decode()
    objects = _objects(namespace, address, port, ca_bundle)
    kubectl("apply", "-f", "-", input_obj=objects[:4])
    token = kubectl("create", "token", SERVICE, "-n", namespace, "--duration=2h").stdout.strip()
    kubeconfig = token_kubeconfig(control_plane, token, folder / "kubeconfig", namespace)
    tmp = folder / "tmp"
    tmp.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "STASHLET_RESTIC": str(restic_binary),
        "TMPDIR": str(tmp),
    }
    process = ManagedProcess.start(
        "snapshots-api",
        [
            sys.executable,
            "-m",
            "stashlet.agent.snapshots_api",
            f"--bind-address={address}",
            f"--secure-port={port}",
            f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}",
            f"--kubeconfig={kubeconfig}",
            f"--tmp-dir={tmp}",
            "--restic-timeout=20",
        ],
        folder / "snapshots-api.log",
        env=env,
    )
    try:
        polling.wait_until(
            lambda: (
                "serving the Snapshot API" in process.log.read_text(errors="replace") or not process.alive()
            ),
            what="the snapshots API server to listen",
            timeout=30,
            log=process.log_tail,
        )
        assert process.alive(), process.log_tail()
        kubectl("apply", "-f", "-", input_obj=objects[4:])
        began = time.monotonic()
        polling.wait_until(
            lambda: _available(kubectl),
            what=f"APIService {APISERVICE} Available",
            timeout=60,
            log=lambda: (
                kubectl("get", "apiservice", APISERVICE, "-o", "yaml", check=False).stdout
                + process.log_tail()
            ),
        )
        print(f"APIService available {time.monotonic() - began:.1f}s after it was applied")
        yield SnapshotsServer(process, address, port, namespace)
    finally:
        kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        process.stop()
        kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            f"{namespace}-{SERVICE}",
            "--ignore-not-found",
            check=False,
        )
        kubectl(
            "delete", "rolebinding", f"{namespace}-{SERVICE}-auth-reader", "-n", "kube-system", check=False
        )
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def as_account(control_plane: ControlPlane, kubectl: Any, tmp_path: Path) -> Any:
    """A kubeconfig for a new ServiceAccount ``name`` of ``namespace`` (no rights but those granted)."""

    def make(namespace: str, name: str) -> Path:
        kubectl("create", "serviceaccount", name, "-n", namespace)
        token = kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        return token_kubeconfig(control_plane, token, tmp_path / f"kubeconfig-{name}", namespace)

    return make


def kubectl_as(control_plane: ControlPlane, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The pinned kubectl with ``kubeconfig``, whatever its exit status."""
    return subprocess.run(
        [str(tools.ensure("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
