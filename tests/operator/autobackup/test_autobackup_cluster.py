"""Auto-backup on the real control plane: the BackupConfiguration controller and the auto-backup controller
run in-process (the operator's identity), workloads and blueprints applied with kubectl, access checked
by the API server's own authorizer (``kubectl auth can-i``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from tests.polling import eventually

from stashlet.api import agent_identity
from stashlet.kube.watch import WatchSettings
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.autobackup.controller import AutoBackupController
from stashlet.operator.controller import Controller
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.loop import ControlLoop
from stashlet.operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster

CREATED_BY = "app.kubernetes.io/created-by=stash-auto-backup"


class Operator:
    """Both controllers of the operator, in-process, over chosen namespaces."""

    def __init__(self, api: ApiClient, kubectl: Any) -> None:
        self.api = api
        self.kubectl = kubectl
        self.controllers: list[ControlLoop] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.namespaces: tuple[str, ...] = ()

    async def start(self, *namespaces: str) -> None:
        settings = OperatorSettings(namespaces=namespaces, retry_base_delay=0.2)
        watch_settings = WatchSettings(server_timeout=60)
        main = Controller(self.api, settings, watch_settings=watch_settings)
        auto = AutoBackupController(self.api, settings, watch_settings=watch_settings)
        self.controllers += [main, auto]
        self.tasks += [asyncio.create_task(main.run()), asyncio.create_task(auto.run())]
        self.namespaces = namespaces
        await asyncio.wait_for(asyncio.gather(main.all_synced.wait(), auto.all_synced.wait()), 30)

    async def idle(self) -> None:
        """Wait until the auto-backup controller has nothing waiting, running or due for a retry: what it
        would make of the objects as they are, it has made (its refusals are final, never retried)."""
        auto = self.controllers[-1]
        await eventually(
            lambda: auto.queue.pending() == 0,
            timeout=30,
            what="the auto-backup controller's queue to be empty",
        )

    async def stop(self) -> None:
        """Delete the configurations while the controllers still run (their finalizers), then stop."""
        try:
            if self.tasks:
                for ns in self.namespaces:
                    await self.kubectl(
                        "delete", "backupconfigurations", "--all", "-n", ns, "--wait=false", check=False
                    )

                async def finalized() -> bool:
                    return not any(
                        [await self.kubectl.items("backupconfigurations", ns) for ns in self.namespaces]
                    )

                await eventually(finalized, timeout=20, what="the configurations to be finalized")
        finally:
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 30)


@pytest.fixture
async def operator(api: ApiClient, akubectl: Any, namespace: str) -> AsyncIterator[Operator]:
    """The operator's two controllers; stopped (configurations finalized) after the test."""
    running = Operator(api, akubectl)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def third_namespace(control_plane: ControlPlane, kubectl: Callable[..., Any]) -> Iterator[str]:
    """Yet another fresh namespace."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def blueprint_name(kubectl: Callable[..., Any]) -> Iterator[str]:
    """A name for this test's (cluster-scoped) BackupBlueprint, deleted afterwards."""
    name = f"bp-{uuid.uuid4().hex[:8]}"
    yield name
    kubectl("delete", "backupblueprint", name, "--ignore-not-found", check=False)


def blueprint(name: str, repo_ns: str | None, **spec: Any) -> dict[str, Any]:
    """Seed 000's blueprint (``from: All``), its Repositories in ``repo_ns``; ``spec`` overrides."""
    body: dict[str, Any] = {
        "backend": {
            "gcs": {
                "bucket": "stash-testing",
                "prefix": "stash-auto-backup/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
            },
            "storageSecretName": "gcs-secret",
        },
        "usagePolicy": {"allowedNamespaces": {"from": "All"}},
        "schedule": "*/5 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    }
    if repo_ns:
        body["repoNamespace"] = repo_ns
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": body,
    }


def annotated(make: Any, namespace: str, blueprint_: str, **extra: str) -> dict[str, Any]:
    """Seed 000's Deployment shape: two volumes, annotated for ``blueprint_``."""
    workload: dict[str, Any] = make.deployment(
        namespace=namespace, volumes=("source-data-1", "source-data-2")
    )
    workload["metadata"]["annotations"] = {
        "stash.appscode.com/backup-blueprint": blueprint_,
        "stash.appscode.com/target-paths": "/source/source-data-1,/source/source-data-2",
        "stash.appscode.com/volume-mounts": ",".join(
            f"{v}:/source/{v}" for v in ("source-data-1", "source-data-2")
        ),
        **extra,
    }
    return workload


async def can(akubectl: Any, namespace: str, who: str, verb: str, what: str) -> bool:
    out = await akubectl("auth", "can-i", verb, what, "-n", namespace, f"--as={who}", check=False)
    return bool(out.strip() == "yes")


def agent(namespace: str) -> str:
    """The sidecar's own account for auto-backup's configuration ``deploy-stash-demo`` (the workload's own
    account, ``default`` here, is granted nothing)."""
    return f"system:serviceaccount:{namespace}:{agent_identity.agent_account('deploy-stash-demo')}"


async def event(akubectl: Any, namespace: str, reason: str, *words: str) -> dict[str, Any]:
    """Wait for an event about Deployment stash-demo with ``reason`` whose message holds every word."""

    async def probe() -> dict[str, Any] | None:
        for item in await akubectl.events(namespace, "stash-demo"):
            if item["reason"] == reason and all(w in item["message"] for w in words):
                return dict(item)
        return None

    found: dict[str, Any] = await eventually(probe, timeout=30, what=f"event {reason} {words}")
    assert found["source"]["component"] == "Auto Backup Controller"
    assert found["involvedObject"]["kind"] == "Deployment"
    return found


async def sidecar_count(akubectl: Any, namespace: str) -> int:
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    return sum(c["name"] == "stash" for c in deployment["spec"]["template"]["spec"]["containers"])


async def test_blueprint_makes_ready_configurations_and_same_named_workloads_do_not_collide(
    operator: Operator,
    akubectl: Any,
    make: Any,
    namespace: str,
    second_namespace: str,
    third_namespace: str,
    blueprint_name: str,
) -> None:
    """Deployment ``stash-demo`` in two namespaces: two Repositories in the repository namespace, named
    ``<namespace>-deploy-stash-demo`` with their own substituted prefixes, two Ready configurations
    ``deploy-stash-demo`` owned by their Deployments; each service account may read only its own
    Repository and the one Secret, by name; the Secret is not copied into the workloads' namespaces."""
    repo_ns, users = second_namespace, (namespace, third_namespace)
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, repo_ns))
    await operator.start(repo_ns, *users)
    for ns in users:
        await akubectl("apply", "-f", "-", input_obj=annotated(make, ns, blueprint_name))
    for ns in users:
        bc = await akubectl.wait_phase(ns, "deploy-stash-demo", "Ready", within=60)
        assert bc["spec"]["repository"] == {"name": f"{ns}-deploy-stash-demo", "namespace": repo_ns}
        deployment = await akubectl.get("deployment", ns, "stash-demo")
        assert [o["uid"] for o in bc["metadata"]["ownerReferences"]] == [deployment["metadata"]["uid"]]
        repo = await akubectl.get("repository", repo_ns, f"{ns}-deploy-stash-demo")
        assert repo["spec"]["backend"]["gcs"]["prefix"] == f"stash-auto-backup/{ns}/deployment/stash-demo"
        assert "ownerReferences" not in repo["metadata"]
        assert repo["metadata"]["labels"]["app.kubernetes.io/created-by"] == "stash-auto-backup"
        await event(akubectl, ns, "AutoBackupResourcesCreationSucceeded", f"{ns}-deploy-stash-demo")
        assert await akubectl.items("secrets", ns, "--field-selector=metadata.name=gcs-secret") == []
    one, two = users
    assert await can(akubectl, repo_ns, agent(one), "get", "secrets/gcs-secret")
    assert await can(
        akubectl, repo_ns, agent(one), "get", f"repositories.stash.appscode.com/{one}-deploy-stash-demo"
    )
    assert not await can(
        akubectl, repo_ns, agent(one), "get", f"repositories.stash.appscode.com/{two}-deploy-stash-demo"
    )
    assert not await can(akubectl, repo_ns, agent(one), "list", "secrets")
    workload_account = f"system:serviceaccount:{one}:default"
    assert not await can(akubectl, repo_ns, workload_account, "get", "secrets/gcs-secret")
    assert len(await akubectl.items("repositories", repo_ns, "-l", CREATED_BY)) == 2


async def test_same_policy_refuses_another_namespace_and_grants_nothing(
    operator: Operator,
    akubectl: Any,
    make: Any,
    namespace: str,
    second_namespace: str,
    blueprint_name: str,
) -> None:
    """A blueprint without usagePolicy (``Same``) keeping Repositories in another namespace: a Warning event
    on the workload naming the policy; no Repository, no configuration, no access to the Secret."""
    repo_ns = second_namespace
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, repo_ns, usagePolicy=None))
    await operator.start(namespace, repo_ns)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    found = await event(akubectl, namespace, "AutoBackupResourcesCreationFailed", "usagePolicy")
    assert f"Namespace {namespace!r} is not allowed to refer Repository" in found["message"]
    assert "(from: Same)" in found["message"]
    assert found["type"] == "Warning"
    await operator.idle()  # the refusal is final: nothing is made after it
    assert await akubectl.items("repositories", repo_ns) == []
    assert await akubectl.items("backupconfigurations", namespace) == []
    assert not await can(akubectl, repo_ns, agent(namespace), "get", "secrets/gcs-secret")


async def test_selector_policy_admits_by_namespace_labels_and_withdraws_access_when_they_change(
    operator: Operator,
    akubectl: Any,
    make: Any,
    namespace: str,
    second_namespace: str,
    blueprint_name: str,
) -> None:
    """``from: Selector`` (matchLabels and matchExpressions): refused while the namespace lacks the label;
    labelled, the configuration is made and Ready and the agent may read the Secret; the label removed, the
    configuration and the sidecar go, the access is withdrawn, the Repository stays."""
    repo_ns = second_namespace
    policy = {
        "allowedNamespaces": {
            "from": "Selector",
            "selector": {
                "matchLabels": {"backup": "allowed"},
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}
                ],
            },
        }
    }
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, repo_ns, usagePolicy=policy))
    await operator.start(namespace, repo_ns)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await event(akubectl, namespace, "AutoBackupResourcesCreationFailed", "(from: Selector)")
    await operator.idle()
    assert await akubectl.items("backupconfigurations", namespace) == []

    await akubectl("label", "namespace", namespace, "backup=allowed")
    await akubectl.wait_phase(namespace, "deploy-stash-demo", "Ready", within=60)
    assert await can(akubectl, repo_ns, agent(namespace), "get", "secrets/gcs-secret")
    assert await sidecar_count(akubectl, namespace) == 1

    await akubectl("label", "namespace", namespace, "backup-")
    await akubectl.wait_gone("backupconfiguration", namespace, "deploy-stash-demo")
    assert not await can(akubectl, repo_ns, agent(namespace), "get", "secrets/gcs-secret")
    await eventually(lambda: _no_sidecar(akubectl, namespace), timeout=30, what="the sidecar removed")
    assert await akubectl.get("repository", repo_ns, f"{namespace}-deploy-stash-demo") is not None


async def _no_sidecar(akubectl: Any, namespace: str) -> bool:
    return await sidecar_count(akubectl, namespace) == 0


async def test_unknown_variable_and_missing_blueprint_are_events_and_nothing_is_made(
    operator: Operator, akubectl: Any, make: Any, namespace: str, blueprint_name: str
) -> None:
    """A blueprint that does not exist: a Warning event naming it; once it exists but uses
    ``${TARGET_FOO}``: a Warning event naming the variable and the field; nothing is made either way;
    put right, the objects are made without touching the workload."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await event(
        akubectl,
        namespace,
        "AutoBackupResourcesCreationFailed",
        f"BackupBlueprint {blueprint_name!r}",
        "not found",
    )

    bad = blueprint(
        blueprint_name,
        None,
        backend={"gcs": {"bucket": "b", "prefix": "p/${TARGET_FOO}"}, "storageSecretName": "gcs-secret"},
    )
    await akubectl("apply", "-f", "-", input_obj=bad)
    await event(
        akubectl,
        namespace,
        "AutoBackupResourcesCreationFailed",
        "spec.backend.gcs.prefix: unknown variable ${TARGET_FOO}",
    )
    await operator.idle()
    assert await akubectl.items("repositories", namespace) == []
    assert await akubectl.items("backupconfigurations", namespace) == []

    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, None))
    bc = await akubectl.wait_phase(namespace, "deploy-stash-demo", "Ready", within=60)
    assert bc["spec"]["repository"] == {"name": "deploy-stash-demo", "namespace": namespace}
    repo = await akubectl.get("repository", namespace, "deploy-stash-demo")
    assert repo["spec"]["backend"]["gcs"]["prefix"] == f"stash-auto-backup/{namespace}/deployment/stash-demo"


async def test_blueprint_and_annotation_edits_update_the_objects_and_keep_what_the_user_set(
    operator: Operator,
    akubectl: Any,
    make: Any,
    namespace: str,
    second_namespace: str,
    blueprint_name: str,
) -> None:
    """Editing the blueprint (schedule, prefix, retention) after the fact updates the Repository and the
    configuration; the schedule and paths annotations update the configuration; ``spec.paused`` set by
    the user survives both."""
    repo_ns = second_namespace
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, repo_ns))
    await operator.start(namespace, repo_ns)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await akubectl.wait_phase(namespace, "deploy-stash-demo", "Ready", within=60)
    patch = json.dumps({"spec": {"paused": True}})
    await akubectl(
        "patch", "backupconfiguration", "deploy-stash-demo", "-n", namespace, "--type=merge", "-p", patch
    )

    edited = blueprint(
        blueprint_name,
        repo_ns,
        schedule="0 3 * * *",
        backend={
            "gcs": {"bucket": "other", "prefix": "v2/${TARGET_NAMESPACE}/${TARGET_NAME}"},
            "storageSecretName": "gcs-secret",
        },
        retentionPolicy={"name": "keep-last-2", "keepLast": 2, "prune": False},
    )
    await akubectl("apply", "-f", "-", input_obj=edited)

    async def updated() -> bool:
        bc = await akubectl.get("backupconfiguration", namespace, "deploy-stash-demo")
        repo = await akubectl.get("repository", repo_ns, f"{namespace}-deploy-stash-demo")
        return bool(
            bc["spec"]["schedule"] == "0 3 * * *"
            and bc["spec"]["retentionPolicy"] == {"name": "keep-last-2", "keepLast": 2, "prune": False}
            and repo["spec"]["backend"]["gcs"] == {"bucket": "other", "prefix": f"v2/{namespace}/stash-demo"}
        )

    await eventually(updated, timeout=30, what="the blueprint's edit applied")
    await akubectl(
        "annotate",
        "deployment",
        "stash-demo",
        "-n",
        namespace,
        "--overwrite",
        "stash.appscode.com/schedule=*/1 * * * *",
        "stash.appscode.com/target-paths=/source/source-data-1",
        "stash.appscode.com/volume-mounts=source-data-1:/source/source-data-1",
    )

    async def annotations_applied() -> bool:
        bc = await akubectl.get("backupconfiguration", namespace, "deploy-stash-demo")
        return bool(
            bc["spec"]["schedule"] == "*/1 * * * *"
            and bc["spec"]["target"]["paths"] == ["/source/source-data-1"]
            and bc["spec"]["target"]["volumeMounts"]
            == [{"name": "source-data-1", "mountPath": "/source/source-data-1"}]
        )

    await eventually(annotations_applied, timeout=30, what="the annotations' edit applied")
    bc = await akubectl.get("backupconfiguration", namespace, "deploy-stash-demo")
    assert bc["spec"]["paused"] is True


async def test_removing_the_annotation_deletes_the_configuration_and_sidecar_and_keeps_the_repository(
    operator: Operator,
    akubectl: Any,
    make: Any,
    namespace: str,
    second_namespace: str,
    blueprint_name: str,
) -> None:
    """The annotation removed: the configuration is deleted, its finalizer takes the sidecar out and
    withdraws the access to the Secret, a Normal event says so; the Repository stays. Deleting the workload
    later collects nothing more, and re-annotating a new workload of that name re-uses the Repository."""
    repo_ns = second_namespace
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, repo_ns))
    await operator.start(namespace, repo_ns)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await akubectl.wait_phase(namespace, "deploy-stash-demo", "Ready", within=60)
    repo_uid = (await akubectl.get("repository", repo_ns, f"{namespace}-deploy-stash-demo"))["metadata"][
        "uid"
    ]

    await akubectl(
        "annotate", "deployment", "stash-demo", "-n", namespace, "stash.appscode.com/backup-blueprint-"
    )
    await akubectl.wait_gone("backupconfiguration", namespace, "deploy-stash-demo")
    await event(
        akubectl,
        namespace,
        "AutoBackupResourcesDeletionSucceeded",
        "Repositories and their data are kept",
    )
    await eventually(lambda: _no_sidecar(akubectl, namespace), timeout=30, what="the sidecar removed")
    assert not await can(akubectl, repo_ns, agent(namespace), "get", "secrets/gcs-secret")
    repo = await akubectl.get("repository", repo_ns, f"{namespace}-deploy-stash-demo")
    assert repo["metadata"]["uid"] == repo_uid

    # A workload deleted with its annotation: its configuration is garbage-collected, the Repository kept
    # and taken up again by the next workload of that name.
    await akubectl("delete", "deployment", "stash-demo", "-n", namespace)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await akubectl.wait_phase(namespace, "deploy-stash-demo", "Ready", within=60)
    await akubectl("delete", "deployment", "stash-demo", "-n", namespace)
    await akubectl.wait_gone("backupconfiguration", namespace, "deploy-stash-demo")
    repo = await akubectl.get("repository", repo_ns, f"{namespace}-deploy-stash-demo")
    assert repo["metadata"]["uid"] == repo_uid


async def test_an_object_auto_backup_did_not_make_is_left_alone(
    operator: Operator, akubectl: Any, make: Any, namespace: str, blueprint_name: str
) -> None:
    """A hand-written configuration already called ``deploy-stash-demo``: a Warning event says the name is
    taken, and the configuration keeps its spec."""
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=blueprint(blueprint_name, None, repoNamespace=None))
    mine = make.backup_configuration(name="deploy-stash-demo", namespace=namespace, schedule="0 1 * * *")
    del mine["metadata"]["uid"], mine["metadata"]["generation"]
    await akubectl("apply", "-f", "-", input_obj=mine)
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=annotated(make, namespace, blueprint_name))
    await event(akubectl, namespace, "AutoBackupResourcesCreationFailed", "was not created by auto-backup")
    await operator.idle()
    bc = await akubectl.get("backupconfiguration", namespace, "deploy-stash-demo")
    assert bc["spec"]["schedule"] == "0 1 * * *"
    assert bc["spec"]["repository"] == {"name": "gcs-repo"}
