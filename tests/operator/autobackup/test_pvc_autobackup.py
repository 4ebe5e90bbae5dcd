"""A PersistentVolumeClaim + BackupBlueprint -> Repository + a ``pvc-backup`` BackupConfiguration, as
Stash's auto-backup PVC guide writes them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.resolution import AutoBackupError, Target
from stashlet.operator.core.workloads import CLAIM_KIND, WORKLOAD_KINDS


def guide_blueprint(**spec: Any) -> BackupBlueprint:
    """The guide's ``pvc-backup-blueprint``."""
    body: dict[str, Any] = {
        "backend": {
            "gcs": {
                "bucket": "appscode-qa",
                "prefix": "stash-backup/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
            },
            "storageSecretName": "gcs-secret",
        },
        "task": {"name": "pvc-backup"},
        "schedule": "*/5 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    }
    body.update(spec)
    return BackupBlueprint.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": "pvc-backup-blueprint"},
            "spec": {k: v for k, v in body.items() if v is not None},
        }
    )


CLAIM = Target(CLAIM_KIND, "demo", "nfs-pvc", uid="uid-c")
GUIDE_ANNOTATIONS = {
    "stash.appscode.com/backup-blueprint": "pvc-backup-blueprint",
    "stash.appscode.com/schedule": "*/15 * * * *",
}


def test_the_guides_annotated_claim_gets_its_repository_and_pvc_backup_configuration() -> None:
    """As in Stash's guide: Repository and BackupConfiguration ``persistentvolumeclaim-nfs-pvc``, the
    prefix's variables substituted (kind ``persistentvolumeclaim``), task pvc-backup kept, the claim as
    the target (no paths, no mounts), the schedule annotation over the blueprint's, owned by the claim."""
    request = resolution.parse_request(GUIDE_ANNOTATIONS, claim=True)
    assert request is not None
    plan = resolution.build(guide_blueprint(), CLAIM, request)
    assert plan.repository_key == ("demo", "persistentvolumeclaim-nfs-pvc")
    assert (
        plan.repository["spec"]["backend"]["gcs"]["prefix"]
        == "stash-backup/demo/persistentvolumeclaim/nfs-pvc"
    )
    config = plan.config
    assert config["metadata"]["name"] == "persistentvolumeclaim-nfs-pvc"
    assert config["spec"]["task"] == {"name": "pvc-backup"}
    assert config["spec"]["target"] == {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}
    }
    assert config["spec"]["schedule"] == "*/15 * * * *"
    assert config["spec"]["repository"] == {"name": "persistentvolumeclaim-nfs-pvc", "namespace": "demo"}
    assert config["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": "nfs-pvc",
            "uid": "uid-c",
            "controller": True,
        }
    ]
    assert config["metadata"]["annotations"]["stash.appscode.com/auto-backup-target"] == (
        "PersistentVolumeClaim/demo/nfs-pvc"
    )
    assert resolution.parse_key("PersistentVolumeClaim/demo/nfs-pvc") == Target(CLAIM_KIND, "demo", "nfs-pvc")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            None,
            "spec.task.name: a PersistentVolumeClaim is backed up by the Task 'pvc-backup'; the blueprint",
        ),
        (
            {"name": "kubedump-backup-0.1.0"},
            "'kubedump-backup-0.1.0' is not supported for a PersistentVolumeClaim",
        ),
    ],
)
def test_a_claims_blueprint_must_name_pvc_backup(task: dict[str, str] | None, expected: str) -> None:
    """A claim's blueprint without a Task, or with another one: refused, naming the field."""
    request = resolution.parse_request(GUIDE_ANNOTATIONS, claim=True)
    assert request is not None
    with pytest.raises(AutoBackupError) as raised:
        resolution.build(guide_blueprint(task=task), CLAIM, request)
    assert expected in raised.value.message


def test_a_workloads_blueprint_still_names_no_task() -> None:
    """Only a claim takes a Task: a Deployment annotated for the pvc-backup blueprint is refused."""
    request = resolution.parse_request(
        {
            **GUIDE_ANNOTATIONS,
            "stash.appscode.com/target-paths": "/data",
            "stash.appscode.com/volume-mounts": "data:/data",
        }
    )
    assert request is not None
    deployment = Target(WORKLOAD_KINDS["Deployment"], "demo", "web", uid="u")
    with pytest.raises(
        AutoBackupError, match="not supported for a Deployment: workloads are backed up by the sidecar"
    ):
        resolution.build(guide_blueprint(), deployment, request)


def test_workload_annotations_on_a_claim_are_refused_by_name() -> None:
    """``target-paths`` and ``volume-mounts`` mean nothing for a claim (its Job backs up all of it):
    refused, naming each annotation, rather than ignored."""
    with pytest.raises(AutoBackupError) as raised:
        resolution.parse_request(
            {**GUIDE_ANNOTATIONS, "stash.appscode.com/target-paths": "/data"}, claim=True
        )
    assert "annotation stash.appscode.com/target-paths is not read for a PersistentVolumeClaim" in (
        raised.value.message
    )
