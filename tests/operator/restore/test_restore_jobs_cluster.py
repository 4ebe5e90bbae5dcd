"""Restores through Jobs on the real control plane: a pvc-restore session waits for its claim, then gets
its Job and RBAC; volumeClaimTemplates make the claims (kept when the session goes) and one Job per
ordinal; a template the API server refuses makes the session Invalid, one naming a missing StorageClass
ends it Failed, both naming ``spec.target.volumeClaimTemplates[i]`` and making nothing."""

from __future__ import annotations

from typing import Any

import pytest
from tests.polling import eventually

pytestmark = pytest.mark.cluster

RS = "clone"


def session(namespace: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": RS, "namespace": namespace},
        "spec": {"repository": {"name": "gcs-repo"}, "target": target, **spec},
    }


def template(name: str, storage_class: str | None = None, storage: str = "1Gi") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def clone_target(*templates: dict[str, Any], replicas: int | None = 2) -> dict[str, Any]:
    target: dict[str, Any] = {
        "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
        "volumeClaimTemplates": list(templates),
        "rules": [{"paths": ["/source/data"]}],
    }
    if replicas is not None:
        target["replicas"] = replicas
    return target


async def setup(akubectl: Any, make: Any, operator: Any, namespace: str) -> None:
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[make.seed_storage_secret(namespace), make.repository(namespace=namespace)],
    )
    await operator.start(namespace)


async def status_when(akubectl: Any, namespace: str, ok: Any, what: str) -> dict[str, Any]:
    async def look() -> dict[str, Any] | None:
        rs = await akubectl.get("restoresession", namespace, RS)
        status: dict[str, Any] = (rs or {}).get("status") or {}
        return status if ok(status) else None

    found: dict[str, Any] = await eventually(look, timeout=30, what=what)
    return found


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def ensured(status: dict[str, Any]) -> bool:
    return conditions(status).get("RestoreExecutorEnsured", {}).get("status") == "True"


async def claim_names(akubectl: Any, namespace: str) -> list[str]:
    out = await akubectl("get", "pvc", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}")
    return sorted(out.split())


async def test_pvc_restore_waits_for_its_claim_then_gets_its_job(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """Stash's stand-alone PVC RestoreSession: without the claim RestoreTargetFound is False and no Job is
    made; once the claim exists, ServiceAccount/Role/RoleBinding stashlet-restore-<rs> and Job
    stash-restore-<rs> (restore-job, the claim at /stash-data) are made, RestoreExecutorEnsured True with
    a Normal event; the phase stays Pending for the agent. Deleting the session keeps the claim."""
    await setup(akubectl, make, operator, namespace)
    ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}
    body = session(
        namespace, {"ref": ref, "rules": [{"snapshots": ["latest"]}]}, task={"name": "pvc-restore"}
    )
    await akubectl("apply", "-f", "-", input_obj=body)

    status = await status_when(
        akubectl, namespace, lambda s: "RestoreTargetFound" in conditions(s), "RestoreTargetFound"
    )
    assert conditions(status)["RestoreTargetFound"]["status"] == "False"
    assert conditions(status)["ValidationPassed"]["status"] == "True", status
    assert await akubectl.get("job", namespace, f"stash-restore-{RS}") is None

    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "nfs-pvc", "namespace": namespace},
        "spec": template("x")["spec"],
    }
    await akubectl("apply", "-f", "-", input_obj=claim)
    status = await status_when(akubectl, namespace, ensured, "RestoreExecutorEnsured")
    assert status["phase"] == "Pending"
    assert conditions(status)["RestoreExecutorEnsured"]["reason"] == "SuccessfullyEnsuredRestoreExecutor"
    job = await akubectl.get("job", namespace, f"stash-restore-{RS}")
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"stashlet-restore-{RS}"
    assert pod["containers"][0]["args"][0] == "restore-job"
    assert {"name": "stash-volume", "mountPath": "/stash-data"} in pod["containers"][0]["volumeMounts"]
    for kind in ("serviceaccount", "role", "rolebinding"):
        assert await akubectl.get(kind, namespace, f"stashlet-restore-{RS}") is not None, kind
    await akubectl.event(
        namespace,
        RS,
        lambda e: e["type"] == "Normal" and e["reason"] == "SuccessfullyEnsuredRestoreExecutor",
        what="the SuccessfullyEnsuredRestoreExecutor event",
    )

    await akubectl("delete", "restoresession", RS, "-n", namespace, "--wait=false")
    await akubectl.wait_gone("restoresession", namespace, RS)
    assert await akubectl.get("role", namespace, f"stashlet-restore-{RS}") is None
    assert await claim_names(akubectl, namespace) == ["nfs-pvc"]


async def test_volume_claim_templates_make_each_ordinals_claims_and_job(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """replicas 2 and ``data-${POD_ORDINAL}`` with a StorageClass that exists: claims data-0 and data-1
    (labelled with the session, not owned by it) and Jobs stash-restore-<rs>-0/-1 with POD_ORDINAL; the
    claims stay when the session is deleted."""
    storage_class = f"sc-{namespace}"
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": storage_class},
            "provisioner": "example.com/none",
        },
    )
    try:
        await setup(akubectl, make, operator, namespace)
        body = session(namespace, clone_target(template("data-${POD_ORDINAL}", storage_class)))
        await akubectl("apply", "-f", "-", input_obj=body)
        status = await status_when(akubectl, namespace, ensured, "RestoreExecutorEnsured")
        assert status["phase"] == "Pending"
        assert await claim_names(akubectl, namespace) == ["data-0", "data-1"]
        claim = await akubectl.get("pvc", namespace, "data-1")
        assert claim is not None
        assert claim["metadata"]["labels"]["stash.appscode.com/restore-session"] == RS
        assert not claim["metadata"].get("ownerReferences")
        for ordinal in (0, 1):
            job = await akubectl.get("job", namespace, f"stash-restore-{RS}-{ordinal}")
            assert job is not None
            pod = job["spec"]["template"]["spec"]
            assert {"name": "POD_ORDINAL", "value": str(ordinal)} in pod["containers"][0]["env"]
            assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{ordinal}"}} in pod[
                "volumes"
            ]

        await akubectl("delete", "restoresession", RS, "-n", namespace, "--wait=false")
        await akubectl.wait_gone("restoresession", namespace, RS)
        assert await claim_names(akubectl, namespace) == ["data-0", "data-1"]
    finally:
        await akubectl("delete", "storageclass", storage_class, "--ignore-not-found")


async def test_claim_templates_that_cannot_be_made_end_the_session_naming_them(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A template the API server refuses (a storage size it cannot read) makes the session Invalid, naming
    ``spec.target.volumeClaimTemplates[1]`` and the server's reason; one naming a StorageClass that does
    not exist ends it Failed (RestoreExecutorEnsured False, FailedToEnsureRestoreExecutor, a Warning
    event) naming ``spec.target.volumeClaimTemplates[0].spec.storageClassName``. No claim and no Job is
    made either way."""
    await setup(akubectl, make, operator, namespace)
    refused = clone_target(template("data-${POD_ORDINAL}"), template("logs-${POD_ORDINAL}", storage="lots"))
    await akubectl("apply", "-f", "-", input_obj=session(namespace, refused))
    status = await status_when(akubectl, namespace, lambda s: s.get("phase") == "Invalid", "Invalid")
    message = conditions(status)["ValidationPassed"]["message"]
    assert "spec.target.volumeClaimTemplates[1]: the API server refuses PersistentVolumeClaim" in message
    assert f"{namespace}/logs-0" in message
    assert "spec.target.volumeClaimTemplates[0]" not in message
    assert await claim_names(akubectl, namespace) == []

    await akubectl("delete", "restoresession", RS, "-n", namespace)
    missing = clone_target(template("data-${POD_ORDINAL}", "no-such-class"))
    await akubectl("apply", "-f", "-", input_obj=session(namespace, missing))
    status = await status_when(akubectl, namespace, lambda s: s.get("phase") == "Failed", "Failed")
    cond = conditions(status)["RestoreExecutorEnsured"]
    assert (cond["status"], cond["reason"]) == ("False", "FailedToEnsureRestoreExecutor")
    assert cond["message"].startswith(
        "spec.target.volumeClaimTemplates[0].spec.storageClassName: StorageClass no-such-class does not exist"
    )
    await akubectl.event(
        namespace,
        RS,
        lambda e: e["type"] == "Warning" and e["reason"] == "FailedToEnsureRestoreExecutor",
        what="the FailedToEnsureRestoreExecutor event",
    )
    assert await claim_names(akubectl, namespace) == []
    assert await akubectl.get("job", namespace, f"stash-restore-{RS}-0") is None
