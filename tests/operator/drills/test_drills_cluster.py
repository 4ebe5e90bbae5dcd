"""The operator's restore drills on the real control plane: the annotations in, the CronJob, account and
Roles out, the condition and events on the configuration; a change updates the CronJob, a bad annotation
is named and leaves no CronJob behind, removing the annotations removes everything."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.operator.backup.test_silent_sessions_cluster import pushed_zero
from tests.polling import eventually

from stashlet.operator.controller import DRILL_PREFIX

pytestmark = pytest.mark.cluster

SCHEDULE = "stashlet.dev/restore-drill-schedule"
IMAGE = "stashlet.dev/restore-drill-image"
COMMAND = "stashlet.dev/restore-drill-command"
CRONJOB = "stash-drill-pause-backup"
ACCOUNT = "stashlet-drill-pause-backup"


async def annotate(akubectl: Any, namespace: str, annotations: dict[str, str | None]) -> None:
    patch = json.dumps({"metadata": {"annotations": annotations}})
    await akubectl(
        "patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge", "-p", patch
    )


async def drill_condition(akubectl: Any, namespace: str, status: str, reason: str) -> dict[str, Any]:
    seen: list[Any] = []

    async def probe() -> dict[str, Any] | None:
        bc = await akubectl.get("backupconfiguration", namespace, "pause-backup") or {}
        seen[:] = (bc.get("status") or {}).get("conditions") or []
        found = next((c for c in seen if c["type"] == "RestoreDrillScheduled"), None)
        return found if found and (found["status"], found["reason"]) == (status, reason) else None

    condition: dict[str, Any] = await eventually(
        probe, timeout=30, what=f"RestoreDrillScheduled {status} {reason}", log=lambda: repr(seen)
    )
    return condition


def pod_of(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


async def test_the_drill_follows_its_annotations(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A schedule makes the CronJob (owned by the configuration, one agent container, the drill's own
    account and Role) and RestoreDrillScheduled True with a Normal event; an image and command add the
    verify init-container, the command's container and the report container; a schedule the CronJob
    controller refuses removes the CronJob and says so by annotation (condition False, Warning event);
    removing the annotations removes the CronJob, the account, the Role and the condition."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))
    await akubectl("apply", "-f", "-", input_obj=make.deployment(namespace=namespace))
    bc = make.backup_configuration(namespace=namespace)
    bc["metadata"]["annotations"] = {SCHEDULE: "0 3 * * 0"}
    controller = await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=bc)

    condition = await drill_condition(akubectl, namespace, "True", "RestoreDrillCronJobCreated")
    assert f"{namespace}/{CRONJOB}" in condition["message"] and "'0 3 * * 0'" in condition["message"]
    cronjob = await akubectl.get("cronjob", namespace, CRONJOB)
    assert cronjob is not None
    owner = (await akubectl.get("backupconfiguration", namespace, "pause-backup"))["metadata"]["uid"]
    assert [o["uid"] for o in cronjob["metadata"]["ownerReferences"]] == [owner]
    assert cronjob["spec"]["schedule"] == "0 3 * * 0"
    pod = pod_of(cronjob)
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (ACCOUNT, False)
    assert [c["name"] for c in pod["containers"]] == ["drill"]
    assert "--drill-step=all" in pod["containers"][0]["args"]
    assert await akubectl.get("serviceaccount", namespace, ACCOUNT) is not None
    role = await akubectl.get("role", namespace, ACCOUNT)
    assert role is not None and await akubectl.get("rolebinding", namespace, ACCOUNT) is not None
    assert {"backupconfigurations", "events", "pods", "repositories", "repositories/status", "secrets"} >= {
        resource for rule in role["rules"] for resource in rule["resources"]
    }
    await akubectl.event(
        namespace,
        "pause-backup",
        lambda e: e["reason"] == "RestoreDrillCronJobCreated" and e["type"] == "Normal",
        what="the Normal event of the scheduled drill",
    )

    await annotate(akubectl, namespace, {IMAGE: "busybox:1.36", COMMAND: '["sh", "-c", "ls -R $DRILL_DATA"]'})

    async def with_command() -> dict[str, Any] | None:
        found = await akubectl.get("cronjob", namespace, CRONJOB)
        return found if found and len(pod_of(found).get("containers") or []) == 2 else None

    pod = pod_of(await eventually(with_command, timeout=30, what="the CronJob to run the command"))
    assert [c["name"] for c in pod["initContainers"]] == ["drill"]
    assert [c["name"] for c in pod["containers"]] == ["drill-command", "drill-report"]
    assert pod["containers"][0]["command"] == ["sh", "-c", "ls -R $DRILL_DATA"]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/restore-drill"]

    await annotate(akubectl, namespace, {COMMAND: "exit 3"})

    async def new_command() -> dict[str, Any] | None:
        found = await akubectl.get("cronjob", namespace, CRONJOB)
        return found if found and pod_of(found)["containers"][0].get("command") == ["exit", "3"] else None

    await eventually(new_command, timeout=30, what="the CronJob to carry the new command")

    await annotate(akubectl, namespace, {SCHEDULE: "61 * * * *"})
    condition = await drill_condition(akubectl, namespace, "False", "InvalidRestoreDrill")
    assert f"annotation {SCHEDULE}: '61 * * * *' is not a schedule" in condition["message"]
    await akubectl.wait_gone("cronjob", namespace, CRONJOB)
    await akubectl.event(
        namespace,
        "pause-backup",
        lambda e: (
            e["reason"] == "InvalidRestoreDrill" and e["type"] == "Warning" and SCHEDULE in e["message"]
        ),
        what="the Warning event naming the annotation",
    )

    await annotate(akubectl, namespace, {SCHEDULE: None, IMAGE: None, COMMAND: None})

    async def no_condition() -> bool:
        bc = await akubectl.get("backupconfiguration", namespace, "pause-backup") or {}
        conditions = (bc.get("status") or {}).get("conditions") or []
        return not any(c["type"] == "RestoreDrillScheduled" for c in conditions)

    await eventually(no_condition, timeout=30, what="the drill's condition to go")
    await akubectl.wait_gone("role", namespace, ACCOUNT)
    await akubectl.wait_gone("serviceaccount", namespace, ACCOUNT)
    assert await akubectl.get("cronjob", namespace, CRONJOB) is None
    assert (await akubectl.get("backupconfiguration", namespace, "pause-backup"))["status"][
        "phase"
    ] == "Ready"
    await operator.rested(controller, namespace, "BackupConfiguration/pause-backup")
    handled = controller.handled[f"{DRILL_PREFIX}{namespace}/pause-backup"]
    assert handled <= 5, handled  # once per annotation change, not once per status write


async def test_a_command_without_an_image_is_refused_by_name(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A command without an image never makes a CronJob: condition False naming both annotations."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))
    await akubectl("apply", "-f", "-", input_obj=make.deployment(namespace=namespace))
    bc = make.backup_configuration(namespace=namespace)
    bc["metadata"]["annotations"] = {SCHEDULE: "@daily", COMMAND: "pg_verifybackup /restore-drill"}
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=bc)

    condition = await drill_condition(akubectl, namespace, "False", "InvalidRestoreDrill")
    assert f"annotation {COMMAND} needs annotation {IMAGE}" in condition["message"]
    assert f"BackupConfiguration {namespace}/pause-backup" in condition["message"]
    assert await akubectl.get("cronjob", namespace, CRONJOB) is None


async def test_a_repository_elsewhere_needs_its_usage_policy_and_its_role_goes_with_the_configuration(
    operator: Any, akubectl: Any, make: Any, namespace: str, second_namespace: str
) -> None:
    """A Repository in another namespace that does not admit the configuration's gets no Role there
    (RepositoryUsageDenied, naming spec.usagePolicy); once it admits every namespace the drill's second
    Role (the storage Secret by name) is made there, and deleting the configuration deletes it (it has no
    owner to go with)."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(second_namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=second_namespace))
    bc = make.backup_configuration(
        namespace=namespace, repository={"name": "gcs-repo", "namespace": second_namespace}
    )
    bc["metadata"]["annotations"] = {SCHEDULE: "@daily"}
    await operator.start(namespace, second_namespace)
    await akubectl("apply", "-f", "-", input_obj=bc)

    condition = await drill_condition(akubectl, namespace, "False", "RepositoryUsageDenied")
    assert "spec.usagePolicy.allowedNamespaces" in condition["message"]
    elsewhere = f"stashlet-drill-{namespace}-pause-backup"
    assert await akubectl.get("role", second_namespace, elsewhere) is None
    assert await akubectl.get("cronjob", namespace, CRONJOB) is None

    policy = {"usagePolicy": {"allowedNamespaces": {"from": "All"}}}
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=second_namespace, **policy))
    await annotate(akubectl, namespace, {SCHEDULE: "@weekly"})  # a Repository's change is seen at resync
    await drill_condition(akubectl, namespace, "True", "RestoreDrillCronJobCreated")
    role = await akubectl.get("role", second_namespace, elsewhere)
    assert role is not None
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["gcs-secret"],
    } in (role["rules"])

    await akubectl("delete", "backupconfiguration", "pause-backup", "-n", namespace, "--wait=false")
    await akubectl.wait_gone("role", second_namespace, elsewhere, within=30)
    await akubectl.wait_gone("rolebinding", second_namespace, elsewhere, within=30)


async def test_a_drill_job_ending_without_a_verdict_fails_the_drill_on_the_repository(
    operator: Any, akubectl: Any, make: Any, namespace: str, pushgateway: str
) -> None:
    """A drill Job whose pod never runs (its image is never pulled) ends at its deadline without the
    agent's verdict: the operator turns the Repository's RestoreDrillSucceeded (True from an earlier drill)
    False with reason RestoreDrillJobFailed, naming the configuration, the Job and DeadlineExceeded, sets
    lastDrillTime, puts a Warning RestoreDrillFailed event on the configuration and pushes
    stash_restore_drill_success 0 under the configuration's job, as the drill's agent would have."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))
    await akubectl("apply", "-f", "-", input_obj=make.deployment(namespace=namespace))
    bc = make.backup_configuration(namespace=namespace)
    bc["metadata"]["annotations"] = {SCHEDULE: "@weekly"}
    await operator.start(namespace, pushgateway_url=pushgateway)
    await akubectl("apply", "-f", "-", input_obj=bc)
    await drill_condition(akubectl, namespace, "True", "RestoreDrillCronJobCreated")
    earlier = "2026-11-28T03:00:00Z"
    passed = {
        "type": "RestoreDrillSucceeded",
        "status": "True",
        "reason": "RestoreDrillPassed",
        "message": "an earlier drill passed",
        "lastTransitionTime": earlier,
    }
    patch = json.dumps({"status": {"conditions": [passed], "lastDrillTime": earlier}})
    status = ["--subresource=status", "--type=merge", "-p", patch]
    await akubectl("patch", "repository", "gcs-repo", "-n", namespace, *status)
    template = (await akubectl.get("cronjob", namespace, CRONJOB))["spec"]["jobTemplate"]
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "stash-drill-now", "namespace": namespace, **template["metadata"]},
        "spec": {**copy.deepcopy(template["spec"]), "activeDeadlineSeconds": 5},
    }
    for container in job["spec"]["template"]["spec"]["containers"]:
        container.update(image="stashlet-agent:never-pulled", imagePullPolicy="Never")
    await akubectl("apply", "-f", "-", input_obj=job)

    async def failed() -> dict[str, Any] | None:
        repo = await akubectl.get("repository", namespace, "gcs-repo") or {}
        conditions = (repo.get("status") or {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "RestoreDrillSucceeded"), None)
        return repo if found is not None and found["status"] == "False" else None

    repo = await eventually(failed, timeout=90, what="the drill recorded Failed on the Repository")
    [condition] = [c for c in repo["status"]["conditions"] if c["type"] == "RestoreDrillSucceeded"]
    assert condition["reason"] == "RestoreDrillJobFailed"
    assert condition["message"].startswith(
        f"restore drill of BackupConfiguration {namespace}/pause-backup ended without a verdict: "
        f"Job {namespace}/stash-drill-now failed: DeadlineExceeded"
    ), condition
    assert repo["status"]["lastDrillTime"] > earlier
    await akubectl.event(
        namespace,
        "pause-backup",
        lambda e: (
            (e["type"], e["reason"], "stash-drill-now" in e["message"])
            == ("Warning", "RestoreDrillFailed", True)
        ),
        what="the Warning event of the failed drill",
    )
    job_name = f"backupconfiguration-{namespace}-pause-backup"
    labels = ('invoker_kind="BackupConfiguration"', 'invoker_name="pause-backup"', 'repository="gcs-repo"')
    for line in await pushed_zero(pushgateway, job_name, "restore_drill_success"):
        assert all(label in line for label in labels), line
