"""The resource dump on the real control plane, as a service account with read-only RBAC made here.

Every dump runs in-process through :func:`stashlet.agent.kubedump.dump` with an ApiClient holding a
service account's token (never the admin's): what it may not read shows up in the report.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.polling import wait_until

from stashlet.agent.kubedump.dump import DumpOptions, DumpReport, DumpScope, dump
from stashlet.agent.kubedump.sanitize import SERVER_SET_METADATA
from stashlet.api.common import TargetRef
from stashlet.kube.client import new_api_client
from stashlet.kube.rest import RestClient
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("api_discovery")]

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
READ_ALL = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]


@asynccontextmanager
async def sa_api(kubeconfig: Path) -> AsyncIterator[RestClient]:
    api = await new_api_client(str(kubeconfig))
    try:
        yield api
    finally:
        await api.close()


def grant(kubectl: Kubectl, namespace: str, sa_namespace: str, sa: str, rules: list[dict[str, Any]]) -> None:
    """A Role with ``rules`` in ``namespace`` bound to ``sa_namespace/sa``."""
    name = f"dump-{sa}"
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}],
            },
        ],
    )


@pytest.fixture
def cluster_reader(kubectl: Kubectl, namespace: str) -> Iterator[tuple[str, str]]:
    """A ClusterRole reading everything (get, list) bound to ServiceAccount ``<namespace>/reader``."""
    name = f"dump-reader-{namespace}"
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": READ_ALL,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        ],
    )
    try:
        yield name, "reader"
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", name, "--wait=false", check=False)


def app_objects(namespace: str) -> list[dict[str, Any]]:
    """ConfigMaps, a Secret, a Deployment, a Service and a Stash Repository (a custom resource)."""
    labels = {"app": "web"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config", "namespace": namespace, "labels": labels},
            "data": {"nginx.conf": "server {\n  listen 80;\n}\n", "mode": "prod"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "other-config", "namespace": namespace},
            "data": {"k": "v"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-secret", "namespace": namespace, "labels": labels},
            "type": "Opaque",
            "data": {"password": base64.b64encode(b"s3cr3t").decode()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "busybox",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 80}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "local-repo", "namespace": namespace},
            "spec": {
                "backend": {
                    "local": {"mountPath": "/repo", "hostPath": {"path": "/repo"}},
                    "storageSecretName": "s",
                }
            },
        },
    ]


def wait_for_pods(kubectl: Kubectl, namespace: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The Deployment's Pods, once kube-controller-manager made ``count`` of them."""

    def made() -> list[dict[str, Any]] | None:
        out = kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout
        pods: list[dict[str, Any]] = json.loads(out)["items"]
        return pods if len(pods) == count else None

    found = wait_until(made, timeout=timeout, interval=0.3, what=f"{count} pods of deployment web")
    assert found is not None  # wait_until returns the probe's first truthy value
    return found


@pytest.fixture
def app(kubectl: Kubectl, namespace: str) -> str:
    """The application objects applied in the test's namespace, with its ReplicaSet and 2 Pods made."""
    kubectl("apply", "-f", "-", input_obj=app_objects(namespace))
    wait_for_pods(kubectl, namespace, 2)
    return namespace


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def load(root: Path, relative: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((root / relative).read_text())
    return data


def assert_sanitized(root: Path) -> None:
    for path in root.rglob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        assert "status" not in obj, path
        assert not set(SERVER_SET_METADATA) & set(obj["metadata"]), path
        assert "kubectl.kubernetes.io/last-applied-configuration" not in obj["metadata"].get(
            "annotations", {}
        )


def backup_and_list(restic_binary: str, repo: Path, folder: Path) -> str:
    """``restic init``, ``backup`` of ``folder`` and ``ls latest --json``: restic's own view."""
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": "pw"}
    for args in (["init"], ["backup", "--host=host-0", str(folder)]):
        subprocess.run(
            [restic_binary, "--no-cache", *args], env=env, check=True, capture_output=True, timeout=120
        )
    listed = subprocess.run(
        [restic_binary, "--no-cache", "ls", "latest", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return listed.stdout


async def run_dump(kubeconfig: Path, scope: DumpScope, root: Path, **options: Any) -> DumpReport:
    async with sa_api(kubeconfig) as api:
        return await dump(api, scope, DumpOptions(**options), root)


async def test_namespace_dump_is_a_sanitized_tree_of_every_kind(
    kubectl: Kubectl, app: str, tmp_path: Path, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """A namespace dump holds one YAML per object (ConfigMaps, Secret, Deployment, its ReplicaSet and
    Pods, Service, the Repository custom resource, the Namespace itself) under
    namespaces/<ns>/<group>/<version>/<Kind>/, without server-set fields, Events or derived objects."""
    ns = app
    grant(kubectl, ns, ns, "dumper", READ_ALL)
    root = tmp_path / "dump"
    report = await run_dump(
        service_account_kubeconfig(ns, "dumper"), DumpScope("namespace", namespace=ns), root
    )

    tree = files(root)
    base = f"namespaces/{ns}"
    rs = json.loads(kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"][0]["metadata"]["name"]
    pods = {p["metadata"]["name"] for p in wait_for_pods(kubectl, ns, 2)}
    expected = {
        f"cluster/core/v1/Namespace/{ns}.yaml",
        f"{base}/core/v1/ConfigMap/web-config.yaml",
        f"{base}/core/v1/ConfigMap/other-config.yaml",
        f"{base}/core/v1/Secret/web-secret.yaml",
        f"{base}/core/v1/Service/web.yaml",
        f"{base}/core/v1/ServiceAccount/default.yaml",
        f"{base}/core/v1/ServiceAccount/dumper.yaml",
        f"{base}/apps/v1/Deployment/web.yaml",
        f"{base}/apps/v1/ReplicaSet/{rs}.yaml",
        f"{base}/stash.appscode.com/v1alpha1/Repository/local-repo.yaml",
        f"{base}/rbac.authorization.k8s.io/v1/Role/dump-dumper.yaml",
        f"{base}/rbac.authorization.k8s.io/v1/RoleBinding/dump-dumper.yaml",
        *(f"{base}/core/v1/Pod/{pod}.yaml" for pod in pods),
    }
    assert tree == expected
    assert report.complete, report.summary()
    assert report.objects == len(expected)
    assert report.omitted >= 1  # kube-root-ca.crt (and the Service's Endpoints/EndpointSlice)
    assert_sanitized(root)

    config = load(root, f"{base}/core/v1/ConfigMap/web-config.yaml")
    assert config == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": ns, "labels": {"app": "web"}},
        "data": {"nginx.conf": "server {\n  listen 80;\n}\n", "mode": "prod"},
    }
    secret = load(root, f"{base}/core/v1/Secret/web-secret.yaml")
    assert base64.b64decode(secret["data"]["password"]) == b"s3cr3t"
    service = load(root, f"{base}/core/v1/Service/web.yaml")
    assert "clusterIP" not in service["spec"]
    assert service["spec"]["selector"] == {"app": "web"}
    repository = load(root, f"{base}/stash.appscode.com/v1alpha1/Repository/local-repo.yaml")
    assert repository["spec"]["backend"]["storageSecretName"] == "s"
    pod = load(root, f"{base}/core/v1/Pod/{sorted(pods)[0]}.yaml")
    assert "ownerReferences" not in pod["metadata"]
    assert pod["metadata"]["labels"]["app"] == "web"
    assert os.stat(root / f"{base}/core/v1/Secret/web-secret.yaml").st_mode & 0o077 == 0


async def test_cluster_scope_dumps_cluster_objects_and_every_namespace(
    kubectl: Kubectl,
    app: str,
    tmp_path: Path,
    cluster_reader: tuple[str, str],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """No target: cluster-scoped objects (Namespaces, CRDs, ClusterRoles) under cluster/, and the
    objects of every namespace under namespaces/<ns>/."""
    ns = app
    role, sa = cluster_reader
    root = tmp_path / "dump"
    report = await run_dump(service_account_kubeconfig(ns, sa), DumpScope("cluster"), root)
    tree = files(root)
    assert {
        f"cluster/core/v1/Namespace/{ns}.yaml",
        "cluster/core/v1/Namespace/kube-system.yaml",
        f"cluster/rbac.authorization.k8s.io/v1/ClusterRole/{role}.yaml",
        "cluster/apiextensions.k8s.io/v1/CustomResourceDefinition/repositories.stash.appscode.com.yaml",
        f"namespaces/{ns}/apps/v1/Deployment/web.yaml",
        f"namespaces/{ns}/stash.appscode.com/v1alpha1/Repository/local-repo.yaml",
        "namespaces/default/core/v1/Service/kubernetes.yaml",
    } <= tree
    assert not any("/Event/" in f for f in tree)
    assert not any("/ComponentStatus/" in f for f in tree)  # served, listable, but nothing to re-apply
    assert report.complete, report.summary()
    assert_sanitized(root)


async def test_application_scope_follows_owner_references_down(
    kubectl: Kubectl, app: str, tmp_path: Path, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """A Deployment target alone is one file; with includeDependants its ReplicaSet and Pods follow
    (found through ownerReferences), and nothing the Deployment does not own."""
    ns = app
    grant(kubectl, ns, ns, "dumper", READ_ALL)
    kubeconfig = service_account_kubeconfig(ns, "dumper")
    scope = DumpScope(
        "application", namespace=ns, target=TargetRef(api_version="apps/v1", kind="Deployment", name="web")
    )

    alone = await run_dump(kubeconfig, scope, tmp_path / "alone")
    assert files(tmp_path / "alone") == {f"namespaces/{ns}/apps/v1/Deployment/web.yaml"}
    assert alone.objects == 1

    await run_dump(kubeconfig, scope, tmp_path / "tree", include_dependants=True)
    rs = json.loads(kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"][0]["metadata"]["name"]
    pods = {p["metadata"]["name"] for p in wait_for_pods(kubectl, ns, 2)}
    assert files(tmp_path / "tree") == {
        f"namespaces/{ns}/apps/v1/Deployment/web.yaml",
        f"namespaces/{ns}/apps/v1/ReplicaSet/{rs}.yaml",
        *(f"namespaces/{ns}/core/v1/Pod/{pod}.yaml" for pod in pods),
    }


@pytest.mark.restic
async def test_label_selector_narrows_the_dump_and_may_match_nothing(
    kubectl: Kubectl,
    app: str,
    tmp_path: Path,
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """labelSelector keeps only matching objects (and leaves the Namespace object out); a selector that
    matches nothing gives an empty folder, which restic backs up as a valid, empty snapshot."""
    ns = app
    grant(kubectl, ns, ns, "dumper", READ_ALL)
    kubeconfig = service_account_kubeconfig(ns, "dumper")
    scope = DumpScope("namespace", namespace=ns)

    await run_dump(kubeconfig, scope, tmp_path / "web", label_selector="app=web")
    kinds = {Path(f).parent.name for f in files(tmp_path / "web")}
    assert kinds == {"ConfigMap", "Secret", "Deployment", "ReplicaSet", "Pod", "Service"}
    assert not (
        tmp_path / "web" / "namespaces" / ns / "core" / "v1" / "ConfigMap" / "other-config.yaml"
    ).exists()

    empty = tmp_path / "none"
    report = await run_dump(kubeconfig, scope, empty, label_selector="app=nothing-has-this")
    assert (empty.is_dir(), files(empty), report.objects, report.complete) == (True, set(), 0, True)
    listed = await asyncio.to_thread(backup_and_list, restic_binary, tmp_path / "repo", empty)
    nodes = [json.loads(line) for line in listed.splitlines() if '"node"' in line]
    assert [n["path"] for n in nodes if n["path"].startswith(str(empty))] == [str(empty)]


async def test_forbidden_resources_are_reported_and_skipped(
    kubectl: Kubectl, app: str, tmp_path: Path, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """A service account that may list only ConfigMaps and Deployments gets those dumped; every other
    kind (Secrets among them) is reported with its 403 and skipped, and the dump goes on."""
    ns = app
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    ]
    grant(kubectl, ns, ns, "narrow", rules)
    root = tmp_path / "dump"
    report = await run_dump(
        service_account_kubeconfig(ns, "narrow"), DumpScope("namespace", namespace=ns), root
    )
    assert files(root) == {
        f"namespaces/{ns}/core/v1/ConfigMap/web-config.yaml",
        f"namespaces/{ns}/core/v1/ConfigMap/other-config.yaml",
        f"namespaces/{ns}/apps/v1/Deployment/web.yaml",
    }
    skipped = {s.resource: s for s in report.skipped_resources}
    assert skipped["secrets"].status == 403
    assert skipped["secrets"].namespace == ns
    assert "forbidden" in skipped["secrets"].message
    assert skipped["namespaces"].status == 403  # the Namespace object itself: not granted either
    assert {"pods", "replicasets.apps", "repositories.stash.appscode.com"} <= skipped.keys()
    assert "configmaps" not in skipped
    assert not report.complete
    assert "secrets" in report.summary()


async def test_an_undiscoverable_api_group_is_reported_and_skipped(
    kubectl: Kubectl,
    app: str,
    tmp_path: Path,
    broken_api_group: str,
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """An aggregated API whose backend is down (503 on its discovery) is reported with the server's
    answer; every other group is dumped as usual."""
    ns = app
    grant(kubectl, ns, ns, "dumper", READ_ALL)
    root = tmp_path / "dump"
    report = await run_dump(
        service_account_kubeconfig(ns, "dumper"), DumpScope("namespace", namespace=ns), root
    )
    assert [(f.group_version, f.status) for f in report.skipped_groups] == [(broken_api_group, 503)]
    assert broken_api_group in report.summary()
    assert report.skipped_resources == []
    assert f"namespaces/{ns}/apps/v1/Deployment/web.yaml" in files(root)
    assert f"namespaces/{ns}/stash.appscode.com/v1alpha1/Repository/local-repo.yaml" in files(root)


async def test_an_empty_namespace_gives_a_valid_near_empty_dump(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    cluster_reader: tuple[str, str],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """A namespace holding nothing of its own dumps as its Namespace object and the default
    ServiceAccount the control plane made; the namespace's kube-root-ca.crt is left out."""
    _, sa = cluster_reader
    empty = f"e-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", empty)
    try:
        wait_for_default_service_account(control_plane, empty)
        root = tmp_path / "dump"
        report = await run_dump(
            service_account_kubeconfig(namespace, sa), DumpScope("namespace", namespace=empty), root
        )
        assert files(root) == {
            f"cluster/core/v1/Namespace/{empty}.yaml",
            f"namespaces/{empty}/core/v1/ServiceAccount/default.yaml",
        }
        assert (report.objects, report.omitted, report.complete) == (2, 1, True)
        namespace_obj = load(root, f"cluster/core/v1/Namespace/{empty}.yaml")
        assert namespace_obj["metadata"] == {"name": empty}
    finally:
        kubectl("delete", "namespace", empty, "--wait=false", check=False)
