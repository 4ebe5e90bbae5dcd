"""Seed 003 (pause backup) on the real control plane, kube-controller-manager firing the CronJob.

The seed's manifests are applied as written (moved to the test's namespace, the schedule ``*/1`` so the
test does not wait five minutes). The trigger Job's pod runs on the real node from the operator image,
with its own service account.
"""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.api import agent_contract, names

pytestmark = pytest.mark.cluster


def _template(deployment: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


async def _apply_seed(akubectl: Any, make: Any, namespace: str, schedule: str) -> dict[str, Any]:
    """Apply the seed's Secret, PVC, Deployment and Repository; return the BackupConfiguration to apply."""
    objects = {o["kind"]: make.in_namespace(o, namespace) for o in make.seed_003_objects()}
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    for kind in ("PersistentVolumeClaim", "Deployment", "Repository"):
        await akubectl("apply", "-f", "-", input_obj=objects[kind])
    config: dict[str, Any] = objects["BackupConfiguration"]
    config["spec"]["schedule"] = schedule
    return config


async def test_seed_003_ready_injected_fired_paused_and_deleted(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """The whole seed: Ready with the sidecar once; the CronJob fires and its trigger creates a labelled
    BackupSession; paused, the next firing records "Backup Skipped" and creates nothing; deleting the
    configuration leaves the Deployment as it was before injection, and no CronJob, Role or session.
    """
    config = await _apply_seed(akubectl, make, namespace, "*/1 * * * *")
    before = await akubectl.get("deployment", namespace, "stash-demo")
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=config)
    bc = await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    assert {c["type"]: c["status"] for c in bc["status"]["conditions"]} == {
        "RepositoryFound": "True",
        "BackendSecretFound": "True",
        "BackupTargetFound": "True",
        "ValidationPassed": "True",
        "CronJobCreated": "True",
        "StashSidecarInjected": "True",
    }
    assert bc["metadata"]["finalizers"] == [names.FINALIZER]

    # The Deployment: one rollout, the sidecar exactly once, as the contract says.
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert deployment["metadata"]["generation"] == before["metadata"]["generation"] + 1
    sidecars = [c for c in _template(deployment)["spec"]["containers"] if c["name"] == "stash"]
    assert len(sidecars) == 1
    assert sidecars[0]["command"] == ["stashlet-agent"]
    assert sidecars[0]["args"][:5] == [
        "sidecar",
        "--invoker-kind=BackupConfiguration",
        "--invoker-name=pause-backup",
        "--target-kind=Deployment",
        "--target-name=stash-demo",
    ]
    assert {e["name"] for e in sidecars[0]["env"]} >= {e["name"] for e in agent_contract.downward_env()}
    assert {"name": "source-data", "mountPath": "/source/data", "readOnly": True} in sidecars[0][
        "volumeMounts"
    ]

    # The CronJob, owned by the configuration; the RBAC for the sidecar and the trigger.
    cron = await akubectl.get("cronjob", namespace, "stash-trigger-pause-backup")
    assert cron["spec"]["schedule"] == "*/1 * * * *"
    assert cron["metadata"]["ownerReferences"][0]["uid"] == bc["metadata"]["uid"]
    roles = {r["metadata"]["name"] for r in await akubectl.items("roles", namespace)}
    assert roles == {"stashlet-sidecar-pause-backup", "stashlet-trigger-pause-backup"}

    # kube-controller-manager fires the CronJob; the trigger runs as the trigger's service account.
    selector = f"{names.LABEL_BACKUP_CONFIGURATION}=pause-backup"
    pod = await akubectl.finished_pod(namespace, selector)
    job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
    assert pod["spec"]["serviceAccountName"] == "stashlet-trigger"
    logs = await akubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "trigger")
    assert pod["status"]["phase"] == "Succeeded", logs
    unix = int(job_name.rsplit("-", 1)[1]) * 60
    session = await akubectl.get("backupsession", namespace, f"pause-backup-{unix}")
    assert session is not None
    assert session["metadata"]["labels"][names.LABEL_BACKUP_CONFIGURATION] == "pause-backup"
    assert session["metadata"]["ownerReferences"][0]["uid"] == bc["metadata"]["uid"]
    assert session["spec"]["invoker"] == {
        "apiGroup": "stash.appscode.com",
        "kind": "BackupConfiguration",
        "name": "pause-backup",
    }

    # Paused: no rollout, the next firing records "Backup Skipped" and creates nothing.
    generation = deployment["metadata"]["generation"]
    await akubectl("patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge",
                   "-p", '{"spec": {"paused": true}}')  # fmt: skip
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    next_pod = await akubectl.finished_pod(namespace, selector, not_named=(pod["metadata"]["name"],))
    assert next_pod["status"]["phase"] == "Succeeded"
    skipped = [e for e in await akubectl.events(namespace, "pause-backup") if e["reason"] == "Backup Skipped"]
    assert len(skipped) == 1
    assert skipped[0]["type"] == "Normal"
    assert skipped[0]["source"]["component"] == "Backup Triggering CronJob"
    assert skipped[0]["message"] == (
        f"Skipping creating BackupSession. Reason: Backup Configuration {namespace}/pause-backup is paused."
    )
    described = await akubectl("describe", "backupconfiguration", "pause-backup", "-n", namespace)
    assert "Backup Skipped" in described
    assert "Backup Triggering CronJob" in described
    assert [s["metadata"]["name"] for s in await akubectl.items("backupsessions", namespace)] == [
        f"pause-backup-{unix}"
    ]
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert deployment["metadata"]["generation"] == generation

    # Deleted: the finalizer takes the sidecar out; garbage collection takes the CronJob and sessions.
    await akubectl(
        "delete", "backupconfiguration", "pause-backup", "-n", namespace, "--wait=true", "--timeout=30s"
    )
    after = await akubectl.get("deployment", namespace, "stash-demo")
    assert _template(after) == _template(before)
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    revision = "deployment.kubernetes.io/revision"  # the Deployment controller's count of rollouts
    assert {k: v for k, v in after["metadata"]["annotations"].items() if k != revision} == {
        k: v for k, v in before["metadata"]["annotations"].items() if k != revision
    }
    assert not [
        r for r in await akubectl.items("roles", namespace) if r["metadata"]["name"].startswith("stashlet")
    ]
    await akubectl.wait_gone("cronjob", namespace, "stash-trigger-pause-backup")
    await akubectl.wait_gone("backupsession", namespace, f"pause-backup-{unix}")
