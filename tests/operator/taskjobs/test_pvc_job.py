"""A stand-alone PersistentVolumeClaim (task ``pvc-backup``) as Stash's guide writes it: its validation, its
Job, its RBAC, and where the Job may mount the claim (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.operator.conftest import backup_configuration, repository

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import ConditionStatus
from stashlet.api.repository import Repository
from stashlet.operator.backup.validation import Model, validate, with_task_check
from stashlet.operator.core.validation import Lookup, Observed
from stashlet.operator.injection import job_rbac
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job
from stashlet.operator.taskjobs.claim_access import ClaimAccess, claim_access, pin_to_node

SETTINGS = OperatorSettings(agent_image="agent:1")
ACCESS = RepositoryAccess("demo", "gcs-repo", "gcs-secret")
KEYS = frozenset({"RESTIC_PASSWORD", "GOOGLE_PROJECT_ID", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"})


def pvc_config(**target: Any) -> BackupConfiguration:
    """Stash's guide's configuration (``task.name: pvc-backup``, the claim ``nfs-pvc`` as target)."""
    obj = backup_configuration(name="nfs-pvc-backup", task={"name": "pvc-backup"})
    obj["spec"]["target"] = {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}}
    obj["spec"]["target"].update(target)
    return BackupConfiguration.from_dict(obj)


def session() -> BackupSession:
    return BackupSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {"name": "nfs-pvc-backup-1700000000", "namespace": "demo", "uid": "s-1"},
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "x"}
            },
        }
    )


def claim(modes: list[str], phase: str = "Bound") -> dict[str, Any]:
    return {
        "metadata": {"name": "nfs-pvc", "namespace": "demo"},
        "spec": {"accessModes": modes},
        "status": {"phase": phase, "accessModes": modes},
    }


def pod(name: str, node: str | None, phase: str = "Running", claim_name: str = "nfs-pvc") -> dict[str, Any]:
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}
    return {
        "metadata": {"name": name},
        "spec": {"volumes": [volume], **({"nodeName": node} if node else {})},
        "status": {"phase": phase},
    }


def observed(target: dict[str, Any] | None) -> Observed:
    return Observed(Lookup(Repository.from_dict(repository())), Lookup(KEYS), Lookup(target))


# ------------------------------------------------------------------------------------------- validation


def test_stash_guides_pvc_configuration_is_valid_with_its_claim_found() -> None:
    """The guide's configuration is a Job configuration, valid, its claim the target found
    (BackupTargetFound True naming it)."""
    bc = pvc_config()
    verdict = with_task_check(bc, validate(bc, observed(claim(["ReadWriteMany"]))))
    assert verdict.model == Model.JOB
    assert verdict.applicable
    found = {u.type.value: u for u in verdict.updates}
    assert found["BackupTargetFound"].status == ConditionStatus.TRUE
    assert found["BackupTargetFound"].message == "Backup target v1 persistentvolumeclaim/nfs-pvc found."
    assert found["ValidationPassed"].status == ConditionStatus.TRUE


def test_a_missing_claim_is_backup_target_found_false_and_not_applied() -> None:
    """No such claim: BackupTargetFound False (TargetNotAvailable) naming the claim and the field."""
    bc = pvc_config()
    verdict = with_task_check(bc, validate(bc, observed(None)))
    assert not verdict.applicable
    found = {u.type.value: u for u in verdict.updates}["BackupTargetFound"]
    assert (found.status, found.reason) == (ConditionStatus.FALSE, "TargetNotAvailable")
    assert "v1 persistentvolumeclaim/nfs-pvc does not exist (spec.target.ref" in found.message


@pytest.mark.parametrize(
    ("target", "task", "expected"),
    [
        (
            {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "pvc-backup",
            "spec.target.ref.kind: task pvc-backup backs up a PersistentVolumeClaim, not a Deployment",
        ),
        (None, "pvc-backup", "spec.target.ref: task pvc-backup backs up a PersistentVolumeClaim"),
        (
            {"ref": {"apiVersion": "v2", "kind": "PersistentVolumeClaim", "name": "c"}},
            "pvc-backup",
            "spec.target.ref.apiVersion: v2 is not supported; use v1",
        ),
        (
            {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c", "namespace": "other"}},
            "pvc-backup",
            "spec.target.ref.namespace: the claim must be in the configuration's namespace demo",
        ),
        (
            {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c"}},
            {"name": "pvc-backup", "params": [{"name": "outputDir", "value": "/tmp"}]},
            "spec.task.params: task pvc-backup takes no params",
        ),
        (
            {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c"}},
            None,
            "spec.task.name: a stand-alone PersistentVolumeClaim is backed up by a Job: set spec.task.name "
            "to pvc-backup",
        ),
        (
            {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c"}},
            "mysql-backup-8.0.14",
            "spec.task.name: task 'mysql-backup-8.0.14' is not supported",
        ),
    ],
)
def test_wrong_combinations_are_refused_by_name(
    target: dict[str, Any] | None, task: str | dict[str, Any] | None, expected: str
) -> None:
    """pvc-backup without a claim target, a claim target without pvc-backup, an unknown Task: Invalid,
    ValidationPassed False naming the field."""
    obj = backup_configuration()
    if task:
        obj["spec"]["task"] = task if isinstance(task, dict) else {"name": task}
    if target is None:
        del obj["spec"]["target"]
    else:
        obj["spec"]["target"] = target
    bc = BackupConfiguration.from_dict(obj)
    verdict = with_task_check(bc, validate(bc, observed(claim(["ReadWriteMany"]))))
    assert not verdict.applicable
    passed = {u.type.value: u for u in verdict.updates}["ValidationPassed"]
    assert passed.status == ConditionStatus.FALSE
    assert expected in passed.message


# ------------------------------------------------------------------------------------------- the Job


def test_the_job_mounts_the_claim_read_only_at_stash_data_as_root() -> None:
    """The Job mounts the claim (volume stash-volume) read-only at Stash's TARGET_MOUNT_PATH /stash-data,
    runs the agent's job mode as root, as ServiceAccount stashlet-pvc-backup-<bc>; no node is forced."""
    bc = pvc_config()
    job = backup_job.build_job(bc, session(), Repository.from_dict(repository()), SETTINGS)
    spec = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "stash-backup-nfs-pvc-backup-1700000000"
    assert spec["serviceAccountName"] == "stashlet-pvc-backup-nfs-pvc-backup"
    assert {"name": "stash-volume", "persistentVolumeClaim": {"claimName": "nfs-pvc", "readOnly": True}} in (
        spec["volumes"]
    )
    container = spec["containers"][0]
    assert {"name": "stash-volume", "mountPath": "/stash-data", "readOnly": True} in container["volumeMounts"]
    assert container["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}
    assert container["args"][0] == "job"
    assert "affinity" not in spec and "nodeName" not in spec
    assert (job["spec"]["backoffLimit"], job["metadata"]["ownerReferences"][0]["uid"]) == (0, "s-1")


def test_the_first_volume_mount_path_is_where_the_claim_goes_and_user_security_is_laid_over() -> None:
    """``spec.target.volumeMounts[0].mountPath`` is Stash's TARGET_MOUNT_PATH when given; the user's
    container securityContext fields win over root."""
    obj = pvc_config(volumeMounts=[{"name": "data", "mountPath": "/data"}]).to_dict()
    obj["spec"]["runtimeSettings"] = {"container": {"securityContext": {"runAsUser": 1000}}}
    bc = BackupConfiguration.from_dict(obj)
    container = backup_job.build_job(bc, session(), None, SETTINGS)["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert {"name": "stash-volume", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert container["securityContext"] == {"runAsUser": 1000, "runAsGroup": 0}


def test_a_job_pinned_to_a_node_keeps_the_users_node_affinity() -> None:
    """Pinned to a node: the node's name goes into every required term, the user's conditions kept."""
    obj = pvc_config().to_dict()
    user_term = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
    obj["spec"]["runtimeSettings"] = {
        "pod": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [user_term]}
                }
            }
        }
    }
    bc = BackupConfiguration.from_dict(obj)
    spec = backup_job.build_job(bc, session(), None, SETTINGS, node="node-a")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {**user_term, "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
    ]
    bare: dict[str, Any] = {}
    pin_to_node(bare, "node-b")
    assert bare["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}
        ]
    }


def test_the_claims_job_gets_its_own_work_and_no_read_binding() -> None:
    """The Job's ServiceAccount and Role are named for the Task; it reads no API object besides its own
    work (no binding to the kubedump read-only ClusterRole)."""
    bc = pvc_config()
    objects = job_rbac.job_rbac(bc, repository=ACCESS)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "stashlet-pvc-backup-nfs-pvc-backup"),
        ("Role", "stashlet-pvc-backup-nfs-pvc-backup"),
        ("RoleBinding", "stashlet-pvc-backup-nfs-pvc-backup"),
    ]
    resources = {r for rule in objects[1]["rules"] for r in rule["resources"]}
    assert resources == {
        "backupconfigurations",
        "backupsessions",
        "backupsessions/status",
        "events",
        "pods",
        "repositories",
        "repositories/status",
        "secrets",
    }
    assert not job_rbac.needs_read_binding(bc)
    # whichever Task it names, the finalizer deletes the grants of both
    names = {ref.name for ref in job_rbac.created_for(bc, "demo")}
    assert names == {"stashlet-pvc-backup-nfs-pvc-backup", "stashlet-kubedump-nfs-pvc-backup"}


# ------------------------------------------------------------------------------------------- claim access


@pytest.mark.parametrize(
    ("modes", "pods", "expected"),
    [
        (["ReadWriteMany"], [pod("a", "n1"), pod("b", "n2")], ClaimAccess()),
        (["ReadOnlyMany"], [pod("a", "n1")], ClaimAccess()),
        (["ReadWriteOnce"], [], ClaimAccess()),
        (
            ["ReadWriteOnce"],
            [pod("a", "n1", phase="Succeeded"), pod("b", None, phase="Pending")],
            ClaimAccess(),
        ),
        (["ReadWriteOnce"], [pod("a", "n1", claim_name="other")], ClaimAccess()),
        (["ReadWriteOnce"], [pod("a", "n1"), pod("b", "n1")], ClaimAccess(node="n1")),
    ],
)
def test_where_the_job_may_mount_the_claim(
    modes: list[str], pods: list[dict[str, Any]], expected: ClaimAccess
) -> None:
    """RWX/ROX or no live pod: anywhere; ReadWriteOnce held by live pods on one node: that node."""
    assert claim_access(claim(modes), pods) == expected


@pytest.mark.parametrize(
    ("found", "pods", "expected"),
    [
        (
            claim(["ReadWriteOncePod"]),
            [pod("db-0", "n1")],
            "PersistentVolumeClaim demo/nfs-pvc is ReadWriteOncePod and mounted by pod db-0 on node n1: the "
            "backup job cannot mount it",
        ),
        (
            claim(["ReadWriteOnce"]),
            [pod("a", "n1"), pod("b", "n2")],
            "is ReadWriteOnce and mounted on several nodes (a on node n1, b on node n2): the backup job "
            "cannot mount it (Stash requires ReadWriteMany",
        ),
        (claim(["ReadWriteOnce"], phase="Lost"), [], "has lost its PersistentVolume"),
    ],
)
def test_a_claim_the_job_could_never_mount_is_said_so(
    found: dict[str, Any], pods: list[dict[str, Any]], expected: str
) -> None:
    """A claim no Job could mount (held by one pod only, on several nodes, or lost): a problem saying so
    (the session fails with it at once, rather than a Job left Pending)."""
    access = claim_access(found, pods)
    assert access.node is None
    assert access.problem is not None
    assert expected in access.problem
