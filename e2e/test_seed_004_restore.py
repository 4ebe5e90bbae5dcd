"""Seed 004's restore, end to end with every part real.

A Deployment with a PVC is backed up the way seeds 003/004 do it (stashlet installed with its chart,
the operator injects the ``stash`` sidecar, the real node runs it from the agent image with its service
account's token, a BackupSession made by hand is backed up into a restic REST server pod standing in for
GCS). The volume is wiped, a RestoreSession is applied (as in
``examples/pause-backup/restoresession.yaml``), the operator prepends ``stash-init`` to the Deployment's
pod template beside the sidecar, the Deployment rolls, and the kubelet runs the new pod's init-container
before the application. The volume's files are read on the node (this machine) where the host-path
provisioner put them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e.seed import (
    APP,
    RESTORE,
    columns,
    init_exit_codes,
    manifest,
    restore_session,
    seed_objects,
    wipe,
    write_data,
)

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


async def test_seed_004_restore_through_the_injected_init_container(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    helpers: Any,
) -> None:
    """Backed up by the sidecar, wiped, restored by ``stash-init``: the operator injects the
    init-container beside the sidecar (conditions, event), the Deployment rolls, the new pod's
    init-container (run as written, with the pod's own token) puts every file back byte for byte with
    its mode, the RestoreSession Succeeds with host-0's stats; the next pod start restores nothing;
    deleting the RestoreSession takes the init-container (and its Role) out again and leaves the
    sidecar."""
    get = helpers.get
    operator_for(namespace)
    kubectl(
        "apply", "-f", "-", input_obj=seed_objects(namespace, {"rest": {"url": f"{rest_server}/{namespace}"}})
    )
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)
    before = manifest(volume)

    def phase(kind: str, name: str) -> str | None:
        obj = get(kubectl, kind, name, "-n", namespace)
        return (obj.get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", "pause-backup") == "Ready", timeout=60, what="Ready"
    )

    def live_pods(container: str, *, init: bool = False) -> list[dict[str, Any]]:
        items = get(kubectl, "pods", "-n", namespace, "-l", f"app={APP}")["items"]
        key = "initContainers" if init else "containers"
        return [
            p
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and any(c["name"] == container for c in p["spec"].get(key) or [])
        ]

    await helpers.rolled_out(kubectl, namespace, APP)
    session = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {
            "name": "before-the-wipe",
            "namespace": namespace,
            "labels": {"stash.appscode.com/backup-configuration": "pause-backup"},
        },
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": "pause-backup",
            }
        },
    }
    kubectl("apply", "-f", "-", input_obj=session)
    await helpers.until(
        lambda: phase("backupsession", "before-the-wipe") in ("Succeeded", "Failed"),
        timeout=120,
        what="backup",
    )
    backed_up = get(kubectl, "backupsession", "before-the-wipe", "-n", namespace)
    assert backed_up["status"]["phase"] == "Succeeded", json.dumps(backed_up["status"])

    wipe(volume)
    assert manifest(volume) == {}
    kubectl("apply", "-f", "-", input_obj=restore_session(namespace))

    def injected() -> dict[str, Any] | None:
        rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
        found = {c["type"]: c["status"] for c in (rs.get("status") or {}).get("conditions") or []}
        return rs if found.get("StashInitContainerInjected") == "True" else None

    rs = await helpers.until(injected, timeout=60, what="the init-container injected")
    conditions = {c["type"]: (c["status"], c["reason"]) for c in rs["status"]["conditions"]}
    assert conditions == {
        "RepositoryFound": ("True", "RepositoryAvailable"),
        "BackendSecretFound": ("True", "BackendSecretAvailable"),
        "RestoreTargetFound": ("True", "TargetAvailable"),
        "ValidationPassed": ("True", "ResourceValidationPassed"),
        "StashInitContainerInjected": ("True", "InitContainerInjectionSucceeded"),
    }
    assert rs["status"]["phase"] == "Pending"
    events = [
        (e["type"], e["reason"], e["source"]["component"])
        for e in get(kubectl, "events", "-n", namespace)["items"]
        if e["involvedObject"]["name"] == RESTORE
    ]
    assert ("Normal", "Init-Container Injection Succeeded", "Workload Controller") in events
    template = get(kubectl, "deployment", APP, "-n", namespace)["spec"]["template"]["spec"]
    assert template["initContainers"][0]["name"] == "stash-init"
    assert [c["name"] for c in template["containers"]] == ["busybox", "stash"]

    [new_pod] = await helpers.rolled_out(kubectl, namespace, APP, container="stash-init")
    init_log = kubectl("logs", "-n", namespace, new_pod, "-c", "stash-init").stdout
    assert init_exit_codes(get(kubectl, "pod", new_pod, "-n", namespace)) == {"stash-init": 0}, init_log
    assert manifest(volume) == before

    rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
    status = rs["status"]
    assert status["phase"] == "Succeeded", json.dumps(status)
    assert status["totalHosts"] == 1
    assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [("host-0", "Succeeded")]
    rows = columns(kubectl("get", "restoresession", "-n", namespace).stdout)
    assert rows[0] == ["NAME", "REPOSITORY", "PHASE", "DURATION", "AGE"]
    assert rows[1][:3] == [RESTORE, "gcs-repo", "Succeeded"]

    # The next start of a pod: the init-container finds its host done and restores nothing.
    kubectl("delete", "pod", new_pod, "-n", namespace, "--wait=false")

    def another_pod() -> list[dict[str, Any]]:
        return [p for p in live_pods("stash-init", init=True) if p["metadata"]["name"] != new_pod]

    again = (await helpers.until(another_pod, timeout=90, what="a replacement pod"))[0]["metadata"]["name"]
    await helpers.until(
        lambda: init_exit_codes(get(kubectl, "pod", again, "-n", namespace)),
        timeout=120,
        what="the replacement's init-container finished",
    )
    assert init_exit_codes(get(kubectl, "pod", again, "-n", namespace)) == {"stash-init": 0}
    assert "nothing to do" in kubectl("logs", "-n", namespace, again, "-c", "stash-init").stdout
    assert manifest(volume) == before
    after = get(kubectl, "restoresession", RESTORE, "-n", namespace)["status"]
    assert after["stats"] == status["stats"]

    # Deleting the RestoreSession takes the init-container and its Role out; the sidecar stays.
    kubectl("delete", "restoresession", RESTORE, "-n", namespace, "--wait=false")

    def cleaned() -> bool:
        spec = get(kubectl, "deployment", APP, "-n", namespace)["spec"]["template"]["spec"]
        return not spec.get("initContainers") and [c["name"] for c in spec["containers"]] == [
            "busybox",
            "stash",
        ]

    await helpers.until(cleaned, timeout=60, what="the init-container removed")

    def gone(kind: str, name: str) -> bool:
        return not kubectl("get", kind, name, "-n", namespace, "--ignore-not-found").stdout.strip()

    await helpers.until(lambda: gone("restoresession", RESTORE), timeout=30, what="the finalizer released")
    assert gone("role", f"stashlet-restore-{RESTORE}")
    assert gone("rolebinding", f"stashlet-restore-{RESTORE}")
