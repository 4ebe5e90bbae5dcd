"""``driver: VolumeSnapshotter`` on the real node with the CSI add-on: the operator (in-process) takes
VolumeSnapshots of a Deployment's csi-hostpath claim for each BackupSession, keeps what
``retentionPolicy`` says, and a RestoreSession's claim is restored from one and read back by a pod;
a missing class or claim fails the session naming the field.

Until the field-support table carries ``spec.target.snapshotClassName`` and ``volumeClaimTemplates``
out, the configuration through the operator uses the cluster's default VolumeSnapshotClass, and the
restore and the missing-class case call the package's step functions directly (with no table check).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from tests.csi_volumes import claim, csi_addon
from tests.polling import eventually

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.sessions import build_session
from stashlet.localcluster import images
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.csi import CsiAddon, diagnostics
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.events import Events
from stashlet.operator.volumesnapshot.backup import SnapshotBackups

pytestmark = [pytest.mark.cluster, pytest.mark.images]

__all__ = ["csi_addon"]  # the fixture, from tests.csi_volumes

TIMEOUT = 120.0


def deployment(name: str, claim_name: str, script: str) -> dict[str, Any]:
    """Stash's guide Deployment: one container writing into its claim, then sleeping."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "busybox",
                            "image": images.BUSYBOX_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", f"{script} && sleep 3000"],
                            "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
                        }
                    ],
                    "volumes": [{"name": "source-data", "persistentVolumeClaim": {"claimName": claim_name}}],
                },
            },
        },
    }


def reader(name: str, claim_name: str) -> dict[str, Any]:
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
                    "command": ["cat", "/restore/data/data.txt"],
                    "volumeMounts": [{"name": "data", "mountPath": "/restore/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def volume_snapshot_config(
    name: str, target_kind: str, target: str, keep_last: int, **target_fields: Any
) -> dict[str, Any]:
    """Stash's guide configuration (``driver: VolumeSnapshotter``), scheduled once a year."""
    api_version = "v1" if target_kind == "PersistentVolumeClaim" else "apps/v1"
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 0 1 1 *",
            "driver": "VolumeSnapshotter",
            "target": {
                "ref": {"apiVersion": api_version, "kind": target_kind, "name": target},
                **target_fields,
            },
            "retentionPolicy": {"name": f"keep-last-{keep_last}", "keepLast": keep_last, "prune": True},
        },
    }


async def new_session(akubectl: Any, namespace: str, bc_name: str, unix: int) -> str:
    bc = BackupConfiguration.from_dict(
        await akubectl.json("get", "backupconfiguration", bc_name, "-n", namespace)
    )
    session = build_session(bc, unix).to_dict()
    await akubectl("create", "-n", namespace, "-f", "-", input_obj=session)
    return str(session["metadata"]["name"])


async def finished(akubectl: Any, namespace: str, name: str, local_cluster: LocalCluster) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await akubectl.get("backupsession", namespace, name)
        phase = ((found or {}).get("status") or {}).get("phase")
        return found if phase in ("Succeeded", "Failed") else None

    done: dict[str, Any] = await eventually(
        probe, timeout=TIMEOUT, what=f"BackupSession {name} to finish", log=lambda: diagnostics(local_cluster)
    )
    return done


async def restore_ended(
    akubectl: Any, namespace: str, name: str, local_cluster: LocalCluster
) -> dict[str, Any]:
    """RestoreSession ``name`` once it has ended (Succeeded, Failed or Unknown)."""

    async def probe() -> dict[str, Any] | None:
        found = await akubectl.get("restoresession", namespace, name)
        done = ((found or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
        return found if done else None

    ended: dict[str, Any] = await eventually(
        probe, timeout=TIMEOUT, what=f"RestoreSession {name} to end", log=lambda: diagnostics(local_cluster)
    )
    return ended


async def read_back(akubectl: Any, namespace: str, pod_name: str, claim_name: str) -> str:
    """What a pod mounting ``claim_name`` prints of the restored file."""
    await akubectl("apply", "-n", namespace, "-f", "-", input_obj=reader(pod_name, claim_name))

    async def printed() -> str | None:
        pod = await akubectl.get("pod", namespace, pod_name)
        if ((pod or {}).get("status") or {}).get("phase") != "Succeeded":
            return None
        return str(await akubectl("logs", pod_name, "-n", namespace))

    text: str = await eventually(printed, timeout=TIMEOUT, what=f"{pod_name} to print the file")
    return text.strip()


async def test_a_deployments_claim_is_snapshotted_per_session_kept_by_keep_last_and_restored(
    csi_addon: CsiAddon,
    local_cluster: LocalCluster,
    operator: Any,
    akubectl: Any,
    api: ApiClient,
    namespace: str,
) -> None:
    payload = f"sample_data-{uuid.uuid4().hex[:8]}"
    await akubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=[
            claim("source-data", csi_addon.storage_class),
            deployment("stash-demo", "source-data", f"echo {payload} > /source/data/data.txt && sync"),
        ],
    )

    async def written() -> bool:
        pods = await akubectl.items("pods", namespace, "-l", "app=stash-demo")
        return any(p.get("status", {}).get("phase") == "Running" for p in pods)

    await eventually(
        written, timeout=TIMEOUT, what="the writer to run", log=lambda: diagnostics(local_cluster)
    )
    await akubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=volume_snapshot_config(
            "dvs", "Deployment", "stash-demo", 1, snapshotClassName=csi_addon.snapshot_class
        ),
    )
    await operator.start(namespace)
    bc = await akubectl.wait_phase(namespace, "dvs", "Ready")
    types = {c["type"]: c["status"] for c in bc["status"]["conditions"]}
    assert types["BackupTargetFound"] == "True" and types["CronJobCreated"] == "True"
    assert "RepositoryFound" not in types
    deployed = await akubectl.json("get", "deployment", "stash-demo", "-n", namespace)
    assert [c["name"] for c in deployed["spec"]["template"]["spec"]["containers"]] == [
        "busybox"
    ]  # no sidecar

    unix = int(time.time())
    first = await new_session(akubectl, namespace, "dvs", unix)
    done = await finished(akubectl, namespace, first, local_cluster)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    [target] = status["targets"]
    assert target["totalHosts"] == 1 and target["phase"] == "Succeeded"
    assert [(s["hostname"], s["phase"]) for s in target["stats"]] == [("source-data", "Succeeded")]
    assert status["sessionDuration"]
    snap = await akubectl.json("get", "volumesnapshot", f"source-data-{unix}", "-n", namespace)
    assert snap["status"]["readyToUse"] is True
    assert snap["spec"]["source"] == {"persistentVolumeClaimName": "source-data"}
    await akubectl.event(
        namespace, first, lambda e: e["reason"] == "Host Backup Succeeded", what="Host Backup Succeeded"
    )

    second = await new_session(akubectl, namespace, "dvs", unix + 1)
    done = await finished(akubectl, namespace, second, local_cluster)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    retained = {c["type"]: c for c in done["status"]["conditions"]}["RetentionPolicyApplied"]
    assert retained["status"] == "True" and f"source-data-{unix}" in retained["message"]

    async def one_left() -> list[str] | None:
        items = await akubectl.items("volumesnapshots", namespace)
        left = sorted(i["metadata"]["name"] for i in items)
        return left if left == [f"source-data-{unix + 1}"] else None

    await eventually(one_left, timeout=TIMEOUT, what="keepLast 1 to leave the newest snapshot alone")

    # The snapshots are the backups: deleting the configuration leaves them.
    await operator.stop()
    assert [i["metadata"]["name"] for i in await akubectl.items("volumesnapshots", namespace)] == [
        f"source-data-{unix + 1}"
    ]

    restore_session = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore-pvc"},
        "spec": {
            "driver": "VolumeSnapshotter",
            "target": {
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "restore-data"},
                        "spec": claim("x", csi_addon.storage_class, snapshot=f"source-data-{unix + 1}")[
                            "spec"
                        ],
                    }
                ]
            },
        },
    }
    await operator.start(namespace)  # the RestoreSession goes through the operator, as a user's would
    await akubectl("apply", "-n", namespace, "-f", "-", input_obj=restore_session)

    rs = await restore_ended(akubectl, namespace, "restore-pvc", local_cluster)
    assert rs["status"]["phase"] == "Succeeded", rs["status"]
    assert rs["status"]["totalHosts"] == 1
    assert [(s["hostname"], s["phase"]) for s in rs["status"]["stats"]] == [("restore-data", "Succeeded")]
    pvc = await akubectl.json("get", "pvc", "restore-data", "-n", namespace)
    assert pvc["status"]["phase"] == "Bound" and "ownerReferences" not in pvc["metadata"]

    assert await read_back(akubectl, namespace, "reader", "restore-data") == payload


async def test_a_missing_class_or_claim_fails_the_session_naming_the_field(
    csi_addon: CsiAddon, local_cluster: LocalCluster, akubectl: Any, api: ApiClient, namespace: str
) -> None:
    await akubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=[
            claim("source-data", csi_addon.storage_class),
            volume_snapshot_config(
                "no-class", "PersistentVolumeClaim", "source-data", 5, snapshotClassName="no-such-class"
            ),
            volume_snapshot_config("no-claim", "PersistentVolumeClaim", "missing-claim", 5),
        ],
    )
    backups = SnapshotBackups(api, Events(api))
    unix = int(time.time())
    for bc_name, field, words in [
        ("no-class", "spec.target.snapshotClassName", "VolumeSnapshotClass no-such-class does not exist"),
        ("no-claim", "spec.target.ref", f"PersistentVolumeClaim {namespace}/missing-claim does not exist"),
    ]:
        name = await new_session(akubectl, namespace, bc_name, unix)
        assert await backups.step(namespace, name) is None  # decided at once: no waiting
        session = BackupSession.from_dict(await akubectl.json("get", "backupsession", name, "-n", namespace))
        assert session.status is not None and session.status.phase == "Failed"
        assert session.status.targets is not None
        [condition] = session.status.targets[0].conditions or []
        assert condition.type == "BackupExecutorEnsured" and condition.status == "False"
        assert f"{field}: {words}" in (condition.message or "")
        events = await akubectl.events(namespace, name)
        assert any(e["type"] == "Warning" and field in e["message"] for e in events)
    assert await akubectl.items("volumesnapshots", namespace) == []


def statefulset(name: str, storage_class: str, replicas: int) -> dict[str, Any]:
    """Stash's StatefulSet guide: each replica writes its own name into its claim from the template."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "busybox",
                            "image": images.BUSYBOX_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": [
                                "sh",
                                "-c",
                                "echo $HOSTNAME > /source/data/data.txt && sync && sleep 3000",
                            ],
                            "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "source-data"}, "spec": claim("source-data", storage_class)["spec"]}
            ],
        },
    }


async def test_a_statefulsets_and_a_claims_volumes_are_snapshotted_and_restored_per_ordinal(
    csi_addon: CsiAddon, local_cluster: LocalCluster, operator: Any, akubectl: Any, namespace: str
) -> None:
    """A StatefulSet of two replicas: one VolumeSnapshot per replica's claim (hosts named after the claims);
    a stand-alone claim as the target: its own snapshot; a RestoreSession with ``replicas: 2`` and
    ``${POD_ORDINAL}`` makes a claim per ordinal from its ordinal's snapshot, and each holds what that
    replica wrote."""
    await akubectl(
        "apply", "-n", namespace, "-f", "-", input_obj=statefulset("db", csi_addon.storage_class, 2)
    )

    async def both_written() -> bool:
        pods = await akubectl.items("pods", namespace, "-l", "app=db")
        return len([p for p in pods if p.get("status", {}).get("phase") == "Running"]) == 2

    await eventually(
        both_written, timeout=TIMEOUT, what="both replicas to run", log=lambda: diagnostics(local_cluster)
    )
    await akubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_obj=[
            volume_snapshot_config("sts", "StatefulSet", "db", 3, snapshotClassName=csi_addon.snapshot_class),
            volume_snapshot_config("one-claim", "PersistentVolumeClaim", "source-data-db-0", 3),
        ],
    )
    await operator.start(namespace)
    for name in ("sts", "one-claim"):
        await akubectl.wait_phase(namespace, name, "Ready")
    unix = int(time.time())
    sts_session = await new_session(akubectl, namespace, "sts", unix)
    claim_session = await new_session(akubectl, namespace, "one-claim", unix + 7)
    done = await finished(akubectl, namespace, sts_session, local_cluster)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    [target] = done["status"]["targets"]
    assert sorted((s["hostname"], s["phase"]) for s in target["stats"]) == [
        ("source-data-db-0", "Succeeded"),
        ("source-data-db-1", "Succeeded"),
    ]
    done = await finished(akubectl, namespace, claim_session, local_cluster)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert [s["hostname"] for s in done["status"]["targets"][0]["stats"]] == ["source-data-db-0"]
    snapshots = {i["metadata"]["name"] for i in await akubectl.items("volumesnapshots", namespace)}
    assert {
        f"source-data-db-0-{unix}",
        f"source-data-db-1-{unix}",
        f"source-data-db-0-{unix + 7}",
    } <= snapshots

    restore_session = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore-db"},
        "spec": {
            "driver": "VolumeSnapshotter",
            "target": {
                "replicas": 2,
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "restored-db-${POD_ORDINAL}"},
                        "spec": claim(
                            "x", csi_addon.storage_class, snapshot=f"source-data-db-${{POD_ORDINAL}}-{unix}"
                        )["spec"],
                    }
                ],
            },
        },
    }
    await akubectl("apply", "-n", namespace, "-f", "-", input_obj=restore_session)

    rs = await restore_ended(akubectl, namespace, "restore-db", local_cluster)
    assert rs["status"]["phase"] == "Succeeded", rs["status"]
    for ordinal in (0, 1):
        assert (
            await read_back(akubectl, namespace, f"read-{ordinal}", f"restored-db-{ordinal}")
            == f"db-{ordinal}"
        )
