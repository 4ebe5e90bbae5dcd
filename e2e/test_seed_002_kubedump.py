"""Seed 002 (backup of resource YAMLs), end to end with every part real.

stashlet is installed with its Helm chart. A kubedump BackupConfiguration (task
``kubedump-backup-0.1.0``) gets no sidecar: for each BackupSession the operator creates a Job running
``stashlet-agent job`` as the configuration's own ServiceAccount, bound read-only to what it dumps;
kube-controller-manager's Job controller makes the Job's pod and the real node runs it from the agent
image with that account's token. The dump goes into a restic REST server pod (standing in for the cloud
bucket). The three scopes of the seed: one
namespace, one application (a Deployment and, with ``includeDependants``, what it owns) and the whole
cluster.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from e2e.rest_repository import rest_storage, restic_output

pytestmark = [pytest.mark.cluster, pytest.mark.restic, pytest.mark.usefixtures("api_discovery")]

PASSWORD = "kubedump-e2e-password"
BC = "resources-backup"


@pytest.fixture
def app_namespace(kubectl: Callable[..., Any]) -> Iterator[str]:
    """The namespace of the application whose resources are dumped."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    labels = {"app": "web"}
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "web-config", "namespace": name, "labels": labels},
                "data": {"nginx.conf": "server { listen 80; }\n"},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "unrelated", "namespace": name},
                "data": {"note": "not part of the app"},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": name, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "busybox",
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["sleep", "3600"],
                                }
                            ]
                        },
                    },
                },
            },
        ],
    )
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def storage(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    return rest_storage(namespace, f"{rest_url}/{namespace}", PASSWORD)


def configuration(
    namespace: str, target: dict[str, Any] | None, params: dict[str, str], account: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": "0 0 1 1 *",
        "task": {
            "name": "kubedump-backup-0.1.0",
            "params": [{"name": k, "value": v} for k, v in params.items()],
        },
        "repository": {"name": "rest-repo"},
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    }
    if target is not None:
        spec["target"] = {"ref": target}
    if account is not None:  # as Stash's kubedump guide writes it
        spec["runtimeSettings"] = {"pod": {"serviceAccountName": account}}
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": BC, "namespace": namespace},
        "spec": spec,
    }


def restic(url: str, *args: str) -> str:
    """Plain restic against the REST server, as the host reaches it."""
    return restic_output(url, PASSWORD, *args)


def snapshot_files(url: str) -> set[str]:
    listed = [
        json.loads(line)
        for line in restic(url, "ls", "--json", "latest").splitlines()
        if line.startswith("{")
    ]
    return {n["path"] for n in listed if n.get("struct_type") == "node" and n.get("type") == "file"}


async def test_seed_002_each_session_runs_as_a_job_for_namespace_application_and_cluster_scope(
    kubectl: Any,
    namespace: str,
    app_namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
) -> None:
    """A kubedump configuration is Ready with no sidecar; each BackupSession gets Job
    ``stash-backup-<session>`` (owned by the session, its configuration's own ServiceAccount, no retries,
    a TTL), condition BackupExecutorEnsured; the Job's pod, run with that account's token, ends the
    session Succeeded; the snapshot holds exactly the scope's YAMLs, sanitized: a namespace, one
    Deployment with its ReplicaSet (includeDependants), the cluster; the label selector narrows the dump;
    deleting the configuration removes the read access it was granted."""
    get = helpers.get
    install = operator_for(f"{namespace},{app_namespace}")
    read_all_role = f"{install.release}-kubedump"  # the chart's read-only ClusterRole for kubedump Jobs
    kubectl("apply", "-f", "-", input_obj=storage(namespace, rest_server))
    host_url = f"{rest_backend.host_url}/{namespace}"
    dump = "/stash-tmp/kubedump"

    async def back_up(
        target: dict[str, Any] | None, params: dict[str, str], n: int, account: str | None = None
    ) -> set[str]:
        kubectl("apply", "-f", "-", input_obj=configuration(namespace, target, params, account))

        def ready() -> bool:
            bc = get(kubectl, "backupconfiguration", BC, "-n", namespace)
            status = bc.get("status") or {}
            return (
                status.get("phase") == "Ready"
                and status.get("observedGeneration") == bc["metadata"]["generation"]
            )

        await helpers.until(ready, timeout=60, what="the configuration Ready")
        session = f"{BC}-{n}"
        kubectl(
            "apply",
            "-f",
            "-",
            input_obj={
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupSession",
                "metadata": {
                    "name": session,
                    "namespace": namespace,
                    "labels": {"stash.appscode.com/backup-configuration": BC},
                },
                "spec": {
                    "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": BC}
                },
            },
        )
        job_name = f"stash-backup-{session}"

        def job() -> dict[str, Any] | None:
            out = kubectl("get", "job", job_name, "-n", namespace, "-o", "json", "--ignore-not-found").stdout
            return json.loads(out) if out.strip() else None

        created = await helpers.until(job, timeout=60, what=f"Job {job_name}")
        owners = created["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"]) for o in owners] == [("BackupSession", session)]
        assert created["spec"]["backoffLimit"] == 0
        assert created["spec"]["ttlSecondsAfterFinished"] > 0
        pod_spec = created["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == (account or f"stashlet-kubedump-{BC}")
        assert pod_spec["containers"][0]["command"] == ["stashlet-agent"]
        assert pod_spec["containers"][0]["args"][0] == "job"

        def finished_pod() -> dict[str, Any] | None:
            pods = get(kubectl, "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job_name}")
            done = [p for p in pods["items"] if p["status"].get("phase") in ("Succeeded", "Failed")]
            return done[0] if done else None

        pod = await helpers.until(finished_pod, timeout=240, what=f"the pod of Job {job_name} finished")
        logs = kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "stash").stdout
        assert pod["status"]["phase"] == "Succeeded", logs[-4000:]
        assert PASSWORD not in logs
        status = get(kubectl, "backupsession", session, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded", json.dumps(status)
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["BackupExecutorEnsured"] == "True"
        assert conditions["ResourcesDumped"] == "True"
        done = await helpers.until(
            lambda: (job() or {}).get("status", {}).get("succeeded") == 1, timeout=60, what="the Job Complete"
        )
        assert done
        return snapshot_files(host_url)

    base = f"{dump}/namespaces/{app_namespace}"

    # One namespace.
    files = await back_up({"apiVersion": "v1", "kind": "Namespace", "name": app_namespace}, {}, 1)
    assert {
        f"{dump}/cluster/core/v1/Namespace/{app_namespace}.yaml",
        f"{base}/core/v1/ConfigMap/web-config.yaml",
        f"{base}/core/v1/ConfigMap/unrelated.yaml",
        f"{base}/apps/v1/Deployment/web.yaml",
    } <= files
    assert not any(f"/namespaces/{namespace}/" in f for f in files)
    dumped = yaml.safe_load(restic(host_url, "dump", "latest", f"{base}/apps/v1/Deployment/web.yaml"))
    assert "status" not in dumped
    assert not {"managedFields", "resourceVersion", "uid", "creationTimestamp"} & set(dumped["metadata"])
    assert dumped["spec"]["replicas"] == 1

    # The namespace, narrowed by a label selector.
    files = await back_up(
        {"apiVersion": "v1", "kind": "Namespace", "name": app_namespace}, {"labelSelector": "app=web"}, 2
    )
    assert f"{base}/core/v1/ConfigMap/web-config.yaml" in files
    assert f"{base}/core/v1/ConfigMap/unrelated.yaml" not in files

    # One application and what it owns.
    files = await back_up(
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": app_namespace},
        {"includeDependants": "true"},
        3,
    )
    assert f"{base}/apps/v1/Deployment/web.yaml" in files
    assert any(f.startswith(f"{base}/apps/v1/ReplicaSet/web-") for f in files), sorted(files)
    assert not any("/ConfigMap/" in f for f in files)

    # The whole cluster: a ClusterRoleBinding replaces the namespace's RoleBinding.
    files = await back_up(None, {}, 4)
    assert f"{dump}/cluster/core/v1/Namespace/{namespace}.yaml" in files
    assert f"{dump}/cluster/rbac.authorization.k8s.io/v1/ClusterRole/{read_all_role}.yaml" in files
    assert f"{base}/core/v1/ConfigMap/web-config.yaml" in files
    binding = f"stashlet-kubedump-read-{namespace}-{BC}"
    assert get(kubectl, "clusterrolebinding", binding)["roleRef"]["name"] == read_all_role
    assert not kubectl(
        "get", "rolebinding", binding, "-n", app_namespace, "--ignore-not-found"
    ).stdout.strip()

    snapshots = json.loads(restic(host_url, "snapshots", "--json"))
    assert len(snapshots) == 4

    # Deleting the configuration takes its read access away.
    kubectl("delete", "backupconfiguration", BC, "-n", namespace, "--wait=false")

    def unbound() -> bool:
        return not kubectl("get", "clusterrolebinding", binding, "--ignore-not-found").stdout.strip()

    await helpers.until(unbound, timeout=60, what="the ClusterRoleBinding removed")

    # The configuration's own ServiceAccount, as Stash's kubedump guide names it: a missing one makes the
    # configuration Invalid, naming the field, until it is created; then it runs the Job, bound by the
    # user to what it may read, and stashlet binds it no read access of its own.
    namespace_target = {"apiVersion": "v1", "kind": "Namespace", "name": app_namespace}
    kubectl("apply", "-f", "-", input_obj=configuration(namespace, namespace_target, {}, "dump-reader"))

    def invalid() -> str | None:
        bc = get(kubectl, "backupconfiguration", BC, "-n", namespace)
        status = bc.get("status") or {}
        passed = [c for c in status.get("conditions", []) if c["type"] == "ValidationPassed"]
        return passed[0]["message"] if status.get("phase") == "Invalid" and passed else None

    message = await helpers.until(invalid, timeout=60, what="the configuration Invalid")
    assert (
        f"spec.runtimeSettings.pod.serviceAccountName: ServiceAccount {namespace}/dump-reader does not exist"
        in (message)
    )
    kubectl("create", "serviceaccount", "dump-reader", "-n", namespace)
    kubectl("create", "rolebinding", "dump-reader-reads", f"--clusterrole={read_all_role}",
            f"--serviceaccount={namespace}:dump-reader", "-n", app_namespace)  # fmt: skip
    files = await back_up(namespace_target, {}, 5, "dump-reader")
    assert f"{base}/core/v1/ConfigMap/web-config.yaml" in files
    assert not kubectl(
        "get",
        "rolebinding",
        f"stashlet-kubedump-read-{namespace}-{BC}",
        "-n",
        app_namespace,
        "--ignore-not-found",
    ).stdout.strip()
    assert not kubectl(
        "get", "serviceaccount", f"stashlet-kubedump-{BC}", "-n", namespace, "--ignore-not-found"
    ).stdout.strip()
