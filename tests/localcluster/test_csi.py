"""The CSI snapshot add-on on the real node: claims of its class bind, snapshots are taken and restored.

The add-on (``LocalCluster.ensure_csi()``) is installed once into the session's cluster by the first test
that asks; its images are built once into the cache. Every pod here is the real thing: the kubelet mounts
the driver's volumes through its CSI plugin, the external-provisioner and csi-snapshotter sidecars call
the driver, and the snapshot controller binds VolumeSnapshots to their contents.
"""

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.csi_volumes import claim, csi_addon
from tests.polling import wait_until

from stashlet.localcluster import images
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.csi import CsiAddon, diagnostics

pytestmark = [pytest.mark.cluster, pytest.mark.images]

TIMEOUT = 120

__all__ = ["csi_addon"]  # the fixture, from tests.csi_volumes

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def pod(name: str, claim_name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": images.BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def snapshot(name: str, claim_name: str, snapshot_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {
            "volumeSnapshotClassName": snapshot_class,
            "source": {"persistentVolumeClaimName": claim_name},
        },
    }


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
    return found


def wait_bound(kubectl: Kubectl, namespace: str, name: str, local_cluster: LocalCluster) -> dict[str, Any]:
    def bound() -> dict[str, Any]:
        found = get(kubectl, namespace, "persistentvolumeclaim", name)
        return found if found.get("status", {}).get("phase") == "Bound" else {}

    found: dict[str, Any] = wait_until(
        bound, what=f"claim {name} Bound", timeout=TIMEOUT, log=lambda: diagnostics(local_cluster)
    )
    return found


def wait_succeeded(kubectl: Kubectl, namespace: str, name: str, local_cluster: LocalCluster) -> str:
    """Wait for a pod to succeed (failing at once if it fails); return its log."""

    def done() -> bool:
        phase = get(kubectl, namespace, "pod", name).get("status", {}).get("phase")
        if phase == "Failed":
            logs = kubectl("logs", name, "-n", namespace, check=False)
            pytest.fail(f"pod {name} failed: {logs.stdout}{logs.stderr}")
        return bool(phase == "Succeeded")

    def log() -> str:
        described = kubectl("describe", "pod", name, "-n", namespace, check=False).stdout
        return f"{described}\n{diagnostics(local_cluster)}"

    wait_until(done, what=f"pod {name} Succeeded", timeout=TIMEOUT, log=log)
    return kubectl("logs", name, "-n", namespace).stdout


def test_a_snapshot_of_a_csi_claim_restores_its_files_into_a_new_claim(
    csi_addon: CsiAddon, local_cluster: LocalCluster, kubectl: Kubectl, namespace: str
) -> None:
    """A claim of ``csi-hostpath-sc`` is bound to a volume of the CSI driver and a pod writes a file into
    it; a VolumeSnapshot of it (``csi-hostpath-snapclass``) becomes readyToUse, backed by the driver's
    snapshot on the node; a new claim whose ``dataSource`` is that snapshot binds, and a pod reads the
    same file back from it."""
    payload = f"written-{uuid.uuid4().hex}"
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=[
            claim("source", csi_addon.storage_class),
            pod("writer", "source", f"mkdir -p /data/dir && echo {payload} > /data/dir/file && sync"),
        ],
    )
    source = wait_bound(kubectl, namespace, "source", local_cluster)
    volume = get(kubectl, "", "persistentvolume", source["spec"]["volumeName"])
    assert volume["spec"]["csi"]["driver"] == csi_addon.driver
    wait_succeeded(kubectl, namespace, "writer", local_cluster)

    kubectl(
        "apply", "-n", namespace, "-f", "-", input_obj=snapshot("snap", "source", csi_addon.snapshot_class)
    )

    def ready() -> dict[str, Any]:
        found = get(kubectl, namespace, "volumesnapshot", "snap")
        return found if found.get("status", {}).get("readyToUse") is True else {}

    taken = wait_until(
        ready, what="VolumeSnapshot snap readyToUse", timeout=TIMEOUT, log=lambda: diagnostics(local_cluster)
    )
    content = get(kubectl, "", "volumesnapshotcontent", taken["status"]["boundVolumeSnapshotContentName"])
    assert content["spec"]["driver"] == csi_addon.driver
    handle = content["status"]["snapshotHandle"]
    assert (csi_addon.data_dir / "snapshots" / f"{handle}.tar.gz").is_file()

    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=[
            claim("restored", csi_addon.storage_class, snapshot="snap"),
            pod("reader", "restored", "cat /data/dir/file"),
        ],
    )
    restored = wait_bound(kubectl, namespace, "restored", local_cluster)
    assert restored["spec"]["volumeName"] != source["spec"]["volumeName"]
    assert wait_succeeded(kubectl, namespace, "reader", local_cluster).strip() == payload


def test_a_snapshot_naming_a_missing_class_is_never_ready_and_says_why(
    csi_addon: CsiAddon, local_cluster: LocalCluster, kubectl: Kubectl, namespace: str
) -> None:
    """A VolumeSnapshot of a bound claim that names a VolumeSnapshotClass that does not exist gets no
    content: the snapshot controller sets its status error and a ``GetSnapshotClassFailed`` warning
    that name the class, and it is not readyToUse."""
    missing = f"no-such-class-{uuid.uuid4().hex[:8]}"
    kubectl("apply", "-n", namespace, "-f", "-", input_obj=claim("source", csi_addon.storage_class))
    wait_bound(kubectl, namespace, "source", local_cluster)
    kubectl("apply", "-n", namespace, "-f", "-", input_obj=snapshot("snap", "source", missing))

    def refused() -> dict[str, Any]:
        found = get(kubectl, namespace, "volumesnapshot", "snap")
        message = found.get("status", {}).get("error", {}).get("message", "")
        return found if missing in message and "not found" in message else {}

    found = wait_until(
        refused,
        what="the VolumeSnapshot's status error naming the missing class",
        timeout=TIMEOUT,
        log=lambda: diagnostics(local_cluster),
    )
    assert found["status"].get("readyToUse") is not True
    assert "boundVolumeSnapshotContentName" not in found["status"]

    def warned() -> list[dict[str, Any]]:
        events = kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector=involvedObject.kind=VolumeSnapshot,involvedObject.name=snap",
            "-o",
            "json",
        )
        items: list[dict[str, Any]] = json.loads(events.stdout)["items"]
        return [e for e in items if e["reason"] == "GetSnapshotClassFailed" and missing in e["message"]]

    [event] = wait_until(warned, what="a GetSnapshotClassFailed event", timeout=TIMEOUT)[:1]
    assert event["type"] == "Warning"
    contents = json.loads(kubectl("get", "volumesnapshotcontents", "-o", "json").stdout)["items"]
    assert not [c for c in contents if c["spec"]["volumeSnapshotRef"].get("uid") == found["metadata"]["uid"]]
