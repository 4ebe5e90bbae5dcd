"""Two BackupConfigurations share one Repository, end to end: real API server, real restic, two sidecar
processes, each with its own service account and exactly the RBAC the operator grants."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.polling import wait_until

from stashlet.api import agent_identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess, agent_account, sidecar_rbac

from .test_sidecar import get, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "not-a-real-password-2"
REPOSITORY = "shared-repo"
SECRET = "shared-secret"


def objects(namespace: str, repo_dir: Path, data: Path) -> list[dict[str, Any]]:
    """The storage Secret and the Repository both configurations use."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": namespace},
            "data": {"RESTIC_PASSWORD": base64.b64encode(PASSWORD.encode()).decode()},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": REPOSITORY, "namespace": namespace},
            "spec": {
                "backend": {
                    "local": {"mountPath": str(repo_dir), "hostPath": {"path": str(repo_dir)}},
                    "storageSecretName": SECRET,
                }
            },
        },
    ]


def configuration(
    namespace: str, workload: str, data: Path, keep_last: int, alias: str | None
) -> list[dict[str, Any]]:
    """A Deployment (no replicas: the test runs its sidecar itself) and its BackupConfiguration."""
    target: dict[str, Any] = {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
        "paths": [str(data)],
        "volumeMounts": [{"name": "data", "mountPath": str(data)}],
    }
    if alias:
        target["alias"] = alias
    labels = {"app": workload}
    container = {"name": "app", "image": "busybox", "command": ["sleep", "3600"]}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": workload, "namespace": namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": f"{workload}-backup", "namespace": namespace},
            "spec": {
                "repository": {"name": REPOSITORY},
                "schedule": "0 0 1 1 *",
                "target": target,
                "retentionPolicy": {"name": f"keep-last-{keep_last}", "keepLast": keep_last, "prune": True},
            },
        },
    ]


def grant(kubectl: Callable[..., Any], namespace: str, workload: str) -> str:
    """The RBAC the operator gives the sidecar of ``workload``'s configuration; the account it binds."""
    bc = BackupConfiguration.from_dict(
        get(kubectl, "backupconfiguration", f"{workload}-backup", "-n", namespace)
    )
    rbac = sidecar_rbac(
        bc, WORKLOAD_KINDS["Deployment"], workload, repository=RepositoryAccess(namespace, REPOSITORY, SECRET)
    )
    kubectl("apply", "-f", "-", input_obj=rbac)
    return agent_account(bc)


def session(kubectl: Callable[..., Any], namespace: str, invoker: str, name: str) -> str:
    """Create BackupSession ``name`` of configuration ``invoker`` (as the trigger does)."""
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"stash.appscode.com/backup-configuration": invoker},
            },
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": invoker}
            },
        },
    )
    return name


def snapshots(repo_dir: Path, restic_binary: str) -> list[dict[str, Any]]:
    """The repository's snapshots, as restic itself lists them."""
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo_dir), "RESTIC_PASSWORD": PASSWORD}
    out = subprocess.run(
        [restic_binary, "--no-cache", "snapshots", "--no-lock", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    found: list[dict[str, Any]] = json.loads(out.stdout)
    return found


def test_two_configurations_sharing_a_repository_keep_each_others_snapshots(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """``app-backup`` (no alias: host-0, keepLast 1) and ``db-backup`` (alias ``db``, keepLast 2) back up
    the same path into one Repository. db's two snapshots survive app's retention (an unscoped forget,
    or db as host-0, would have removed them), app's own policy still removes app's older snapshot, and
    the Repository's status counts every snapshot in the repository."""
    repo_dir, data = tmp_path / "backend", tmp_path / "data"
    repo_dir.mkdir()
    data.mkdir()
    (data / "a.txt").write_text("shared data\n")
    kubectl("apply", "-f", "-", input_obj=objects(namespace, repo_dir, data))
    mounted = tmp_path / "secrets"  # the storage Secret as the kubelet mounts it into each stash container
    (mounted / SECRET).mkdir(parents=True)
    (mounted / SECRET / "RESTIC_PASSWORD").write_text(PASSWORD)
    for workload, keep_last, alias in (("app", 1, None), ("db", 2, "db")):
        kubectl("apply", "-f", "-", input_obj=configuration(namespace, workload, data, keep_last, alias))
        account = grant(kubectl, namespace, workload)
        start_agent(
            namespace=namespace,
            invoker=f"{workload}-backup",
            target_kind="Deployment",
            target_name=workload,
            pod_name=f"{workload}-5f6d-x",
            kubeconfig=service_account_kubeconfig(namespace, account),
            extra_env={agent_identity.ENV_STORAGE_SECRETS_DIR: str(mounted)},
        )
    ended = {}
    for invoker, name in (("db", "db-1"), ("db", "db-2"), ("app", "app-1"), ("app", "app-2")):
        (data / "a.txt").write_text(f"shared data, before {name}\n")
        done = wait_phase(
            kubectl,
            namespace,
            session(kubectl, namespace, f"{invoker}-backup", name),
            {"Succeeded", "Failed"},
        )
        assert done["status"]["phase"] == "Succeeded", done["status"]
        ended[name] = done["status"]
    host_of = {name: status["targets"][0]["stats"][0]["hostname"] for name, status in ended.items()}
    assert host_of == {"db-1": "db", "db-2": "db", "app-1": "host-0", "app-2": "host-0"}
    kept = sorted((s["hostname"], s["short_id"]) for s in snapshots(repo_dir, restic_binary))
    ids = {name: status["targets"][0]["stats"][0]["snapshots"][0]["name"] for name, status in ended.items()}
    assert kept == sorted([("db", ids["db-1"]), ("db", ids["db-2"]), ("host-0", ids["app-2"])])
    retention = {c["type"]: c for c in ended["app-2"]["conditions"]}["RetentionPolicyApplied"]
    assert retention["status"] == "True"
    assert "hosts host-0," in retention["message"]
    assert "removed 1" in retention["message"]

    # The Repository's status is written by app-2's upkeep, a moment after the session has ended.
    def counted() -> tuple[int, int] | None:
        repo = get(kubectl, "repository", REPOSITORY, "-n", namespace).get("status", {})
        found = (repo.get("snapshotCount"), repo.get("snapshotsRemovedOnLastCleanup"))
        return found if found == (3, 1) else None

    assert wait_until(counted, timeout=30, what="the Repository's status after app-2") == (3, 1)
