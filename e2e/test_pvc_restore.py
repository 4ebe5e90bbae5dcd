"""Stand-alone PVC restore (Stash's ``pvc-restore``) and restoring into new claims (``volumeClaimTemplates``),
end to end with every part real: stashlet installed with its Helm chart, the node's storage, the restic
REST server pod.

A claim's files are backed up by the guide's ``pvc-backup`` configuration (a Job, as in
e2e/test_pvc_backup.py); then the guide's RestoreSession (``task.name: pvc-restore``, a claim as
``target.ref``) restores them into another, empty claim through a Job, and a RestoreSession with
``target.volumeClaimTemplates`` (the clone guide's shape) makes a new claim and restores into it; a pod
reads each restored file back.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.rest_repository import rest_storage

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "pvc-restore-e2e-password"
SOURCE = "source-pvc"
MESSAGE = "hello from the source claim.\n"


def claim(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def pod(namespace: str, name: str, claim_name: str, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "busybox",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c", command],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def storage(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    return rest_storage(namespace, f"{rest_url}/{namespace}", PASSWORD)


def restore_session(namespace: str, name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"repository": {"name": "rest-repo"}, "target": target, **spec},
    }


async def test_a_claims_backup_restores_into_another_claim_and_into_a_new_one(
    kubectl: Any, namespace: str, operator_for: Any, rest_server: str, helpers: Any
) -> None:
    get, until = helpers.get, helpers.until
    operator_for(namespace)
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            *storage(namespace, rest_server),
            claim(namespace, SOURCE),
            pod(namespace, "writer", SOURCE, f"printf '{MESSAGE}' > /data/hello.txt && sleep 3000"),
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "source-backup", "namespace": namespace},
                "spec": {
                    "task": {"name": "pvc-backup"},
                    "repository": {"name": "rest-repo"},
                    "schedule": "0 0 1 1 *",
                    "target": {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": SOURCE}},
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                },
            },
        ],
    )

    def phase(kind: str, name: str) -> str | None:
        status = get(kubectl, kind, name, "-n", namespace).get("status") or {}
        return status.get("phase")

    await until(lambda: phase("pod", "writer") == "Running", timeout=120, what="the writer pod Running")
    await until(lambda: phase("backupconfiguration", "source-backup") == "Ready", timeout=60, what="Ready")
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": "source-backup-1",
                "namespace": namespace,
                "labels": {"stash.appscode.com/backup-configuration": "source-backup"},
            },
            "spec": {
                "invoker": {
                    "apiGroup": "stash.appscode.com",
                    "kind": "BackupConfiguration",
                    "name": "source-backup",
                }
            },
        },
    )
    await until(
        lambda: phase("backupsession", "source-backup-1") in ("Succeeded", "Failed"),
        timeout=300,
        what="the backup session finished",
    )
    assert phase("backupsession", "source-backup-1") == "Succeeded"

    # pvc-restore into an existing, empty claim (Stash's stand-alone PVC guide).
    kubectl("apply", "-f", "-", input_obj=claim(namespace, "restored-pvc"))
    guide = restore_session(
        namespace,
        "restore-pvc",
        {
            "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "restored-pvc"},
            "rules": [{"snapshots": ["latest"]}],
        },
        task={"name": "pvc-restore"},
    )
    # Into new claims made from templates (the clone guide's shape, one replica).
    clone = restore_session(
        namespace,
        "restore-clone",
        {
            "rules": [{"paths": ["/stash-data"]}],
            "volumeMounts": [{"name": "clone-pvc", "mountPath": "/stash-data"}],
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "clone-pvc"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    )
    kubectl("apply", "-f", "-", input_obj=[guide, clone])
    for name in ("restore-pvc", "restore-clone"):
        await until(
            lambda name=name: phase("restoresession", name) in ("Succeeded", "Failed"),
            timeout=300,
            what=f"RestoreSession {name} finished",
        )
        status = get(kubectl, "restoresession", name, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded", status
        assert [(h["hostname"], h["phase"]) for h in status["stats"]] == [("host-0", "Succeeded")], status

    for restored in ("restored-pvc", "clone-pvc"):
        reader = f"read-{restored}"
        kubectl("apply", "-f", "-", input_obj=pod(namespace, reader, restored, "sleep 3000"))
        await until(
            lambda reader=reader: phase("pod", reader) == "Running", timeout=120, what=f"{reader} Running"
        )
        assert helpers.exec_in(kubectl, namespace, reader, "busybox", "cat", "/data/hello.txt") == MESSAGE
    clone_claim = get(kubectl, "persistentvolumeclaim", "clone-pvc", "-n", namespace)
    assert not clone_claim["metadata"].get("ownerReferences")  # the user keeps it after the session
