"""A ``pvc-backup`` configuration on the real control plane: Ready once its claim exists; a session's Job
where the claim can be mounted, or a session failed at once saying why it cannot."""

from __future__ import annotations

from typing import Any

import pytest
from tests.operator.conftest import Kubectl, OperatorRunner
from tests.polling import eventually

pytestmark = pytest.mark.cluster

NODE = "node-a"
"""A node name the claim's user pod is bound to (no kubelet runs it: it stays Pending, bound there)."""


def claim(namespace: str, name: str, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": [mode],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
        },
    }


def user_pod(namespace: str, name: str, claim_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": NODE,
            "containers": [
                {"name": "app", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}
            ],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def pvc_config(make: Any, name: str, claim_name: str) -> dict[str, Any]:
    obj: dict[str, Any] = make.backup_configuration(name=name, task={"name": "pvc-backup"})
    obj["spec"]["target"] = {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim_name}}
    return obj


def session(namespace: str, bc: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"stash.appscode.com/backup-configuration": bc},
        },
        "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": bc}},
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return None


async def test_a_claims_configuration_follows_its_claim_and_its_job_goes_where_the_claim_is(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str
) -> None:
    """Without its claim the configuration is NotReady (BackupTargetFound False naming it); the claim made,
    it is Ready with no sidecar and the Job's own account and Role (no read binding). A session of a
    ReadWriteOnce claim a pod holds on a node gets Job ``stash-backup-<session>`` mounting the claim at
    /stash-data, pinned to that node; BackupExecutorEnsured True."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[make.seed_storage_secret(namespace), make.in_namespace(make.repository(), namespace)],
    )
    await akubectl(
        "apply", "-f", "-", input_obj=make.in_namespace(pvc_config(make, "data-backup", "data"), namespace)
    )
    await operator.start(namespace)
    bc = await akubectl.wait_phase(namespace, "data-backup", "NotReady")
    target = condition(bc, "BackupTargetFound")
    assert target is not None
    assert (target["status"], target["reason"]) == ("False", "TargetNotAvailable")
    assert "Backup target v1 persistentvolumeclaim/data does not exist" in target["message"]

    await akubectl("apply", "-f", "-", input_obj=claim(namespace, "data", "ReadWriteOnce"))
    bc = await akubectl.wait_phase(namespace, "data-backup", "Ready")
    assert condition(bc, "StashSidecarInjected") is None
    assert await akubectl.get("serviceaccount", namespace, "stashlet-pvc-backup-data-backup") is not None
    assert await akubectl.get("role", namespace, "stashlet-pvc-backup-data-backup") is not None
    bindings = await akubectl.items("rolebindings", namespace)
    assert [b["metadata"]["name"] for b in bindings if "read" in b["metadata"]["name"]] == []

    await akubectl("apply", "-f", "-", input_obj=user_pod(namespace, "writer", "data"))
    await akubectl("apply", "-f", "-", input_obj=session(namespace, "data-backup", "data-backup-1"))

    async def job() -> dict[str, Any] | None:
        return await akubectl.get("job", namespace, "stash-backup-data-backup-1")

    made: dict[str, Any] = await eventually(job, timeout=30, what="the session's Job")
    spec = made["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "stashlet-pvc-backup-data-backup"
    assert {"name": "stash-volume", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}} in spec[
        "volumes"
    ]
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": "stash-volume", "mountPath": "/stash-data", "readOnly": True} in mounts
    assert spec["containers"][0]["securityContext"]["runAsUser"] == 0
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}]

    async def ensured() -> dict[str, Any] | None:
        return condition(
            await akubectl.get("backupsession", namespace, "data-backup-1"), "BackupExecutorEnsured"
        )

    found = await eventually(ensured, timeout=30, what="BackupExecutorEnsured")
    assert (found["status"], found["reason"]) == ("True", "SuccessfullyEnsuredBackupExecutor")


async def test_a_claim_held_by_one_pod_fails_the_session_at_once_saying_why(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str
) -> None:
    """A ReadWriteOncePod claim a running pod holds: no Job (it could never mount the claim); the session
    ends Failed with BackupExecutorEnsured False (FailedToEnsureBackupExecutor) and a Warning event, both
    naming the claim, its access mode and the pod."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.seed_storage_secret(namespace),
            make.in_namespace(make.repository(), namespace),
            claim(namespace, "solo", "ReadWriteOncePod"),
            user_pod(namespace, "db-0", "solo"),
            make.in_namespace(pvc_config(make, "solo-backup", "solo"), namespace),
        ],
    )
    await operator.start(namespace)
    await akubectl.wait_phase(namespace, "solo-backup", "Ready")
    await akubectl("apply", "-f", "-", input_obj=session(namespace, "solo-backup", "solo-backup-1"))

    async def failed() -> dict[str, Any] | None:
        obj = await akubectl.get("backupsession", namespace, "solo-backup-1")
        return obj if ((obj or {}).get("status") or {}).get("phase") == "Failed" else None

    obj = await eventually(failed, timeout=30, what="the session to fail")
    found = condition(obj, "BackupExecutorEnsured")
    assert found is not None
    assert (found["status"], found["reason"]) == ("False", "FailedToEnsureBackupExecutor")
    expected = (
        f"PersistentVolumeClaim {namespace}/solo is ReadWriteOncePod and mounted by pod db-0 on node {NODE}"
    )
    assert expected in found["message"]
    await akubectl.event(
        namespace,
        "solo-backup-1",
        lambda e: e["type"] == "Warning" and expected in e["message"],
        what="the Warning event naming the claim",
    )
    assert await akubectl.get("job", namespace, "stash-backup-solo-backup-1") is None
