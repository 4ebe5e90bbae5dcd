"""The operator's reconciliation on the real control plane: no needless rollouts, GitOps re-applies,
each workload kind, backupHistoryLimit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.polling import eventually

from stashlet.api import names
from stashlet.operator.controller import CONFIG_PREFIX

pytestmark = pytest.mark.cluster


async def setup_valid(
    akubectl: Any, make: Any, namespace: str, workload: dict[str, Any] | None = None
) -> None:
    """The storage Secret, the Repository and a workload (default: seed 003's Deployment shape)."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))
    await akubectl("apply", "-f", "-", input_obj=workload or make.deployment(namespace=namespace))


def sidecar_count(workload: dict[str, Any]) -> int:
    return sum(c["name"] == "stash" for c in workload["spec"]["template"]["spec"]["containers"])


async def test_a_new_configuration_is_reconciled_once(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """The operator's own writes (the finalizer, the sidecar's rollout, the status) do not bring a new
    configuration back: one reconcile makes it Ready, and its workload rolls once."""
    await setup_valid(akubectl, make, namespace)
    controller = await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace))
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    await operator.rested(controller, namespace, "Deployment/stash-demo", "BackupConfiguration/pause-backup")
    assert controller.handled[f"{CONFIG_PREFIX}{namespace}/pause-backup"] == 1
    assert (await akubectl.get("deployment", namespace, "stash-demo"))["metadata"]["generation"] == 2


async def test_unchanged_configuration_causes_no_rollout_and_a_change_exactly_one(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A restarted operator (full re-list) writes nothing; a spec change rolls the workload once; a new
    schedule updates the CronJob without touching the workload.
    """
    await setup_valid(akubectl, make, namespace)
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace))
    bc = await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert deployment["metadata"]["generation"] == 2

    await operator.stop(cleanup=False)
    controller = await operator.start(namespace)
    await operator.rested(controller, namespace, "Deployment/stash-demo", "BackupConfiguration/pause-backup")
    again = await akubectl.get("backupconfiguration", namespace, "pause-backup")
    assert again["metadata"]["resourceVersion"] == bc["metadata"]["resourceVersion"]
    assert (await akubectl.get("deployment", namespace, "stash-demo"))["metadata"]["generation"] == 2

    change = {"spec": {"runtimeSettings": {"container": {"resources": {"limits": {"memory": "300Mi"}}}}}}
    await akubectl(
        "patch",
        "backupconfiguration",
        "pause-backup",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(change),
    )
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    # The operator has seen its own writes (the Deployment's rollout, the configuration's status) and has
    # nothing left to do: a second, unwanted rollout would have happened by now.
    await operator.rested(controller, namespace, "Deployment/stash-demo", "BackupConfiguration/pause-backup")
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert deployment["metadata"]["generation"] == 3
    [sidecar] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]
    assert sidecar["resources"] == {"limits": {"memory": "300Mi"}}

    await akubectl("patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge",
                   "-p", '{"spec": {"schedule": "0 3 * * *"}}')  # fmt: skip
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    await operator.rested(controller, namespace, "Deployment/stash-demo", "BackupConfiguration/pause-backup")
    cron = await akubectl.get("cronjob", namespace, "stash-trigger-pause-backup")
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert (await akubectl.get("deployment", namespace, "stash-demo"))["metadata"]["generation"] == 3


async def test_gitops_reapply_gets_the_sidecar_back_without_a_rollout_loop(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """Re-applying the original manifest as Argo CD or Flux do: ``kubectl apply`` and server-side apply
    keep the sidecar (no new ReplicaSet); a replace drops it, the operator injects it once more (the same
    template, so the same ReplicaSet), and then rests.
    """
    original = make.deployment(namespace=namespace)
    await setup_valid(akubectl, make, namespace, original)
    controller = await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace))
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    injected = await akubectl.get("deployment", namespace, "stash-demo")
    assert injected["metadata"]["generation"] == 2

    async def replica_sets() -> set[str]:
        return {rs["metadata"]["name"] for rs in await akubectl.items("replicasets", namespace)}

    await eventually(lambda: _count(replica_sets, 2), what="the original and the injected ReplicaSet")
    known = await replica_sets()

    await akubectl("apply", "-f", "-", input_obj=original)  # Argo CD's client-side apply
    assert (await akubectl.get("deployment", namespace, "stash-demo"))["metadata"]["generation"] == 2
    # Flux's server-side apply (its first one migrates field ownership, which Kubernetes counts as a
    # new generation without any change to the spec).
    await akubectl(
        "apply", "--server-side", "--field-manager=flux", "--force-conflicts", "-f", "-", input_obj=original
    )
    await operator.rested(controller, namespace, "Deployment/stash-demo")
    kept = await akubectl.get("deployment", namespace, "stash-demo")
    assert kept["spec"]["template"] == injected["spec"]["template"]
    generation = kept["metadata"]["generation"]

    await akubectl("replace", "-f", "-", input_obj=original)  # Argo CD Replace=true, Flux force

    async def reinjected() -> dict[str, Any] | None:
        current = await akubectl.get("deployment", namespace, "stash-demo")
        return current if sidecar_count(current) == 1 else None

    back = await eventually(reinjected, timeout=30, what="the sidecar to come back")
    assert back["metadata"]["generation"] == generation + 2  # the replace, then one injection
    await operator.rested(controller, namespace, "Deployment/stash-demo")
    settled = await akubectl.get("deployment", namespace, "stash-demo")
    assert settled["metadata"]["generation"] == generation + 2
    assert settled["spec"]["template"] == injected["spec"]["template"]
    assert await replica_sets() == known


async def _count(probe: Any, expected: int) -> bool:
    return len(await probe()) == expected


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "ReplicaSet"])
async def test_each_workload_kind_gets_the_sidecar_and_loses_it_on_deletion(
    operator: Any, akubectl: Any, make: Any, namespace: str, kind: str
) -> None:
    """StatefulSet, DaemonSet and ReplicaSet templates get the sidecar once; deletion takes it out again;
    a ReplicaSet's pods from the old template are replaced.
    """
    workload = make.deployment(name="app", namespace=namespace)
    workload["kind"] = kind
    if kind == "StatefulSet":
        workload["spec"]["serviceName"] = "app"
    if kind == "DaemonSet":
        del workload["spec"]["replicas"]
    await setup_valid(akubectl, make, namespace, workload)
    before = await akubectl.get(kind.lower(), namespace, "app")
    await operator.start(namespace)
    config = make.backup_configuration(namespace=namespace, target="app", kind=kind)
    config["spec"]["target"]["ref"]["apiVersion"] = "apps/v1"
    await akubectl("apply", "-f", "-", input_obj=config)
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    injected = await akubectl.get(kind.lower(), namespace, "app")
    assert sidecar_count(injected) == 1
    hash_ = injected["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_INJECTION_HASH]
    if kind == "ReplicaSet":

        async def renewed() -> bool:
            pods = await akubectl.items("pods", namespace, "-l", "app=app")
            alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return bool(alive) and all(
                p["metadata"].get("annotations", {}).get(names.ANNOTATION_INJECTION_HASH) == hash_
                for p in alive
            )

        await eventually(renewed, timeout=30, what="the ReplicaSet's pods to carry the sidecar")
    await akubectl(
        "delete", "backupconfiguration", "pause-backup", "-n", namespace, "--wait=true", "--timeout=30s"
    )
    after = await akubectl.get(kind.lower(), namespace, "app")
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]


async def test_a_configuration_moved_to_another_target_leaves_the_old_one_clean(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """Pointing ``spec.target.ref`` at another workload injects it there and takes it out of the first."""
    await setup_valid(akubectl, make, namespace)
    await akubectl("apply", "-f", "-", input_obj=make.deployment(name="second", namespace=namespace))
    first_before = await akubectl.get("deployment", namespace, "stash-demo")
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace))
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    assert sidecar_count(await akubectl.get("deployment", namespace, "stash-demo")) == 1
    await akubectl("patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge",
                   "-p", '{"spec": {"target": {"ref": {"name": "second"}}}}')  # fmt: skip
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    second = await akubectl.get("deployment", namespace, "second")
    assert sidecar_count(second) == 1
    assert second["metadata"]["labels"][names.LABEL_BACKUP_CONFIGURATION] == "pause-backup"
    first = await akubectl.get("deployment", namespace, "stash-demo")
    assert first["spec"]["template"] == first_before["spec"]["template"]
    assert first["metadata"]["labels"] == first_before["metadata"]["labels"]


async def test_a_workload_labelled_for_a_configuration_it_is_not_the_target_of_loses_the_sidecar(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A workload that turns up labelled for a configuration that targets another one (a copy of an
    injected manifest; or the old target when its watch event came after the configuration moved on) is
    seen by the workload watch: the configuration is reconciled and its sidecar and label taken out of it,
    with its target left injected."""
    await setup_valid(akubectl, make, namespace)
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace))
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    injected = await akubectl.get("deployment", namespace, "stash-demo")
    assert sidecar_count(injected) == 1
    copy = make.deployment(name="copy", namespace=namespace)
    copy["metadata"]["labels"] = dict(injected["metadata"]["labels"])
    template = json.loads(json.dumps(injected["spec"]["template"]))
    template["metadata"]["labels"] = {"app": "copy"}
    copy["spec"]["template"] = template
    copy["spec"]["selector"] = {"matchLabels": {"app": "copy"}}
    await akubectl("apply", "-f", "-", input_obj=copy)

    async def cleaned() -> dict[str, Any] | None:
        found = await akubectl.get("deployment", namespace, "copy")
        return found if found and sidecar_count(found) == 0 else None

    found = await eventually(cleaned, timeout=30, what="the sidecar taken out of the copy")
    assert names.LABEL_BACKUP_CONFIGURATION not in (found["metadata"].get("labels") or {})
    assert sidecar_count(await akubectl.get("deployment", namespace, "stash-demo")) == 1


async def test_backup_history_limit_prunes_old_finished_sessions(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """With ``backupHistoryLimit: 2`` only the two newest finished sessions stay; running ones are kept.

    The Deployment has no replicas: no sidecar runs to act on the hand-made sessions (it would take one
    with no phase, or fail one left Running by no agent of its, and so change what is pruned)."""
    deployment = make.deployment(namespace=namespace)
    deployment["spec"]["replicas"] = 0
    await setup_valid(akubectl, make, namespace, deployment)
    await operator.start(namespace)
    await akubectl(
        "apply", "-f", "-", input_obj=make.backup_configuration(namespace=namespace, backupHistoryLimit=2)
    )
    bc = await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    phases = {"pause-backup-1": "Succeeded", "pause-backup-2": "Failed", "pause-backup-3": "Running",
              "pause-backup-4": "Succeeded", "pause-backup-5": "Skipped"}  # fmt: skip
    owner = {"apiVersion": names.API_VERSION_BETA, "kind": "BackupConfiguration", "name": "pause-backup"}
    owner["uid"] = bc["metadata"]["uid"]
    for name, phase in phases.items():
        session = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {names.LABEL_BACKUP_CONFIGURATION: "pause-backup"},
                "ownerReferences": [
                    {
                        "apiVersion": names.API_VERSION_BETA,
                        "kind": "BackupConfiguration",
                        "name": "pause-backup",
                        "uid": bc["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "invoker": {"apiGroup": names.GROUP, "kind": "BackupConfiguration", "name": "pause-backup"}
            },
        }
        # Created one after the other, so in order of (creationTimestamp, name), the operator's order of
        # age (sessions of the same second go by name): no need for distinct creation seconds.
        await akubectl("create", "-f", "-", input_obj=session)
        status = json.dumps({"status": {"phase": phase}})
        await akubectl(
            "patch",
            "backupsession",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        )

    seen: list[list[tuple[str, str, str]]] = []

    async def pruned() -> list[str] | None:
        items = await akubectl.items("backupsessions", namespace)
        seen.append(
            sorted(
                (
                    s["metadata"]["name"],
                    (s.get("status") or {}).get("phase", ""),
                    s["metadata"]["creationTimestamp"],
                )
                for s in items
            )
        )
        left = [name for name, _, _ in seen[-1]]
        return left if left == ["pause-backup-3", "pause-backup-4", "pause-backup-5"] else None

    await eventually(
        pruned, timeout=30, what="the oldest finished sessions to be pruned", log=lambda: repr(seen[-1:])
    )
