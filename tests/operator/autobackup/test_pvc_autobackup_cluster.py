"""Auto-backup of an annotated PersistentVolumeClaim on the real control plane, as Stash's guide does it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from tests.operator.autobackup.test_autobackup_cluster import Operator

from stashlet.operator.core.apiclient import ApiClient

pytestmark = pytest.mark.cluster


@pytest.fixture
async def both(api: ApiClient, akubectl: Any, namespace: str) -> AsyncIterator[Operator]:
    """The operator's two controllers; stopped (configurations finalized) after the test."""
    running = Operator(api, akubectl)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def pvc_blueprint(kubectl: Callable[..., Any]) -> Iterator[str]:
    """The guide's blueprint (task pvc-backup), under a name of this test's, deleted afterwards."""
    name = f"pvc-bp-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": {
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
        },
    }
    kubectl("apply", "-f", "-", input_obj=body)
    yield name
    kubectl("delete", "backupblueprint", name, "--ignore-not-found", check=False)


async def test_an_annotated_claim_gets_a_ready_pvc_backup_configuration_and_loses_it_with_the_annotation(
    both: Operator, akubectl: Any, make: Any, namespace: str, pvc_blueprint: str
) -> None:
    """Claim ``nfs-pvc`` annotated with the blueprint and a schedule: Repository and BackupConfiguration
    ``persistentvolumeclaim-nfs-pvc`` (task pvc-backup, the claim as target, the annotation's schedule,
    owned by the claim), Ready; removing the annotation deletes the configuration, keeps the Repository."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await both.start(namespace)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "nfs-pvc",
            "namespace": namespace,
            "annotations": {
                "stash.appscode.com/backup-blueprint": pvc_blueprint,
                "stash.appscode.com/schedule": "*/15 * * * *",
            },
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
        },
    }
    await akubectl("apply", "-f", "-", input_obj=claim)
    name = "persistentvolumeclaim-nfs-pvc"
    bc = await akubectl.wait_phase(namespace, name, "Ready", within=60)
    assert bc["spec"]["task"] == {"name": "pvc-backup"}
    assert bc["spec"]["target"] == {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}
    }
    assert bc["spec"]["schedule"] == "*/15 * * * *"
    found = await akubectl.get("persistentvolumeclaim", namespace, "nfs-pvc")
    assert [o["uid"] for o in bc["metadata"]["ownerReferences"]] == [found["metadata"]["uid"]]
    repo = await akubectl.get("repository", namespace, name)
    assert (
        repo["spec"]["backend"]["gcs"]["prefix"] == f"stash-backup/{namespace}/persistentvolumeclaim/nfs-pvc"
    )

    await akubectl("annotate", "pvc", "nfs-pvc", "-n", namespace, "stash.appscode.com/backup-blueprint-")
    await akubectl.wait_gone("backupconfiguration", namespace, name)
    assert await akubectl.get("repository", namespace, name) is not None
