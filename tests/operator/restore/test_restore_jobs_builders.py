"""Restores through Jobs (pvc-restore into a named claim, volumeClaimTemplates into new claims): the
validation, the claims, the Jobs and their RBAC, and the phase: pure, no server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stashlet.api import agent_contract, names, restore_jobs
from stashlet.api.common import ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestorePhase, RestoreSession
from stashlet.operator.core.conditions import ConditionUpdate, apply_conditions
from stashlet.operator.core.validation import Lookup
from stashlet.operator.injection import restore_rbac
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.restore import claims, restore_job
from stashlet.operator.restore.validation import (
    RestoreObserved,
    restore_phase,
    spec_problems,
    validate_restore,
)
from stashlet.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(agent_image="agent:1", pushgateway_url="http://pgw:9091", status_port=4000)
KEYS = frozenset({"RESTIC_PASSWORD"})


def session(target: dict[str, Any], **spec: Any) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "rs", "namespace": "demo", "uid": "uid-rs", "generation": 1},
            "spec": {"repository": {"name": "repo"}, "target": target, **spec},
        }
    )


def pvc_restore(**target: Any) -> RestoreSession:
    """Stash's stand-alone PVC guide's RestoreSession."""
    ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}
    return session({"ref": ref, "rules": [{"snapshots": ["latest"]}], **target}, task={"name": "pvc-restore"})


def template(name: str, storage_class: str | None = "standard") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def clone(replicas: int | None = 3, spec: dict[str, Any] | None = None, **target: Any) -> RestoreSession:
    """Stash's clone-pvc guide's StatefulSet RestoreSession (replicas 3, ``${POD_ORDINAL}``)."""
    suffix = "-${POD_ORDINAL}" if replicas is not None else ""
    body: dict[str, Any] = {
        "rules": [{"paths": ["/source/data", "/source/config"]}],
        "volumeMounts": [
            {"name": "restore-data-restore-demo", "mountPath": "/source/data"},
            {"name": "restore-config-restore-demo", "mountPath": "/source/config"},
        ],
        "volumeClaimTemplates": [
            template(f"restore-data-restore-demo{suffix}"),
            template(f"restore-config-restore-demo{suffix}"),
        ],
        **target,
    }
    if replicas is not None:
        body["replicas"] = replicas
    return session(body, **(spec or {}))


def repository() -> Repository:
    return Repository.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {"backend": {"storageSecretName": "secret", "rest": {"url": "http://rest:8000/"}}},
        }
    )


def condition_map(rs: RestoreSession, obs: RestoreObserved) -> dict[str, tuple[ConditionStatus, str]]:
    applied = apply_conditions(
        [], validate_restore(rs, obs).updates, now=dt.datetime.now(dt.UTC), generation=1
    )
    return {c.type: (c.status, c.message or "") for c in applied}


# --- validation -----------------------------------------------------------------------------------


def test_stashs_pvc_restore_and_clone_sessions_validate() -> None:
    """The guides' sessions as written (pvc-restore into a named claim; the Deployment and StatefulSet
    clones) have no problem; the claim target is RestoreTargetFound, a clone has no target condition."""
    for rs in (pvc_restore(), clone(), clone(replicas=None)):
        assert restore_jobs.restores_by_job(rs)
        assert spec_problems(rs) == []
    obs = RestoreObserved(Lookup(repository()), Lookup(KEYS), Lookup({"kind": "PersistentVolumeClaim"}))
    found = condition_map(pvc_restore(), obs)
    assert found["RestoreTargetFound"][0] == ConditionStatus.TRUE
    assert "v1 persistentvolumeclaim/nfs-pvc" in found["RestoreTargetFound"][1]
    assert found["ValidationPassed"][0] == ConditionStatus.TRUE
    missing = condition_map(pvc_restore(), RestoreObserved(Lookup(repository()), Lookup(KEYS), Lookup()))
    assert missing["RestoreTargetFound"] == (
        ConditionStatus.FALSE,
        "Restore target v1 persistentvolumeclaim/nfs-pvc does not exist.",
    )
    assert "RestoreTargetFound" not in condition_map(clone(), obs)


@pytest.mark.parametrize(
    ("rs", "expected"),
    [
        (
            session({"ref": {"kind": "PersistentVolumeClaim", "name": "c"}}, task={"name": "mysql-restore"}),
            "spec.task.name: task 'mysql-restore' is not supported",
        ),
        (pvc_restore(replicas=2), "spec.target.replicas: a stand-alone claim is restored by one host"),
        (pvc_restore(volumeClaimTemplates=[template("x")]), "spec.target.volumeClaimTemplates: a session"),
        (
            pvc_restore(ref={"apiVersion": "v2", "kind": "PersistentVolumeClaim", "name": "c"}),
            "spec.target.ref.apiVersion: v2 is not supported",
        ),
        (
            clone(
                replicas=2,
                volumeClaimTemplates=[template("fixed")],
                volumeMounts=[{"name": "fixed", "mountPath": "/d"}],
            ),
            "spec.target.volumeClaimTemplates[0].metadata.name: 'fixed' needs ${POD_ORDINAL}",
        ),
        (
            clone(volumeClaimTemplates=[template("d-${TARGET_NAME}-${POD_ORDINAL}")]),
            "spec.target.volumeClaimTemplates[0].metadata.name: ${TARGET_NAME} is not a variable",
        ),
        (
            clone(volumeClaimTemplates=[{"spec": {}}]),
            "spec.target.volumeClaimTemplates[0].metadata.name: required",
        ),
        (
            clone(volumeMounts=[{"name": "other", "mountPath": "/d"}]),
            "spec.target.volumeMounts[0].name: no volumeClaimTemplate is named 'other'",
        ),
        (clone(volumeMounts=[]), "spec.target.volumeMounts: required with volumeClaimTemplates"),
        (clone(replicas=0), "spec.target.replicas: 0: at least one replica"),
        (
            clone(ref={"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s"}),
            "spec.target.ref: a session restoring into spec.target.volumeClaimTemplates names no target",
        ),
        (
            clone(
                volumeClaimTemplates=[template("stash-tmp-dir-${POD_ORDINAL}")],
                volumeMounts=[{"name": "stash-tmp-dir", "mountPath": "/d"}],
            ),
            "'stash-tmp-dir' is a volume of the restore Job itself",
        ),
        (
            clone(volumeMounts=[{"name": "restore-data-restore-demo", "mountPath": "/stash-tmp"}]),
            "spec.target.volumeMounts[0].mountPath: /stash-tmp is the restore Job's temporary directory",
        ),
    ],
)
def test_wrong_job_restores_are_refused_naming_the_field(rs: RestoreSession, expected: str) -> None:
    """Every shape a restore Job cannot carry out is a problem naming its field."""
    problems = spec_problems(rs)
    assert any(expected in p for p in problems), problems


def test_the_api_servers_word_on_a_template_makes_the_session_invalid() -> None:
    """A claim the API server refuses in the dry run is a validation problem: ValidationPassed False naming
    the template, phase Invalid."""
    obs = RestoreObserved(
        Lookup(repository()),
        Lookup(KEYS),
        Lookup(),
        claim_problems=("spec.target.volumeClaimTemplates[1]: bad",),
    )
    found = condition_map(clone(), obs)
    assert found["ValidationPassed"][0] == ConditionStatus.FALSE
    assert "spec.target.volumeClaimTemplates[1]: bad" in found["ValidationPassed"][1]
    applied = apply_conditions(
        [], validate_restore(clone(), obs).updates, now=dt.datetime.now(dt.UTC), generation=1
    )
    assert restore_phase(applied, None) == RestorePhase.INVALID


def test_an_executor_that_could_not_be_made_fails_the_session() -> None:
    """RestoreExecutorEnsured False ends the session Failed (never Pending for ever); True keeps it
    Pending for the agent; a phase the agent wrote is left alone."""
    now = dt.datetime.now(dt.UTC)
    failed = ConditionUpdate.false(
        ConditionType.RESTORE_EXECUTOR_ENSURED, ConditionReason.FAILED_TO_ENSURE_RESTORE_EXECUTOR, "x"
    )
    ok = ConditionUpdate.true(
        ConditionType.RESTORE_EXECUTOR_ENSURED, ConditionReason.SUCCESSFULLY_ENSURED_RESTORE_EXECUTOR, "y"
    )
    assert restore_phase(apply_conditions([], [failed], now=now, generation=1), None) == RestorePhase.FAILED
    assert restore_phase(apply_conditions([], [ok], now=now, generation=1), None) == RestorePhase.PENDING
    assert restore_phase(apply_conditions([], [failed], now=now, generation=1), RestorePhase.RUNNING) == (
        RestorePhase.RUNNING
    )


# --- claims ---------------------------------------------------------------------------------------


def test_each_ordinal_gets_its_own_claims_not_owned_by_the_session() -> None:
    """replicas 3: ordinals 0..2, each template's ${POD_ORDINAL} resolved; labelled with the session, in its
    namespace, spec as written, and no ownerReference (the user keeps the claims)."""
    rs = clone()
    assert restore_jobs.ordinals(rs) == [0, 1, 2]
    made = claims.claims(rs, 2)
    assert [(i, c["metadata"]["name"]) for i, c in made] == [
        (0, "restore-data-restore-demo-2"),
        (1, "restore-config-restore-demo-2"),
    ]
    claim = made[0][1]
    assert claim["metadata"]["namespace"] == "demo"
    assert claim["metadata"]["labels"][names.LABEL_RESTORE_SESSION] == "rs"
    assert "ownerReferences" not in claim["metadata"]
    assert claim["spec"]["storageClassName"] == "standard"
    assert claims.storage_classes(rs) == [(0, "standard"), (1, "standard")]
    single = clone(replicas=None)
    assert restore_jobs.ordinals(single) == [None]
    assert [c["metadata"]["name"] for _, c in claims.claims(single, None)] == [
        "restore-data-restore-demo",
        "restore-config-restore-demo",
    ]


# --- Jobs -----------------------------------------------------------------------------------------


def test_a_pvc_restore_job_mounts_the_claim_at_stash_data_as_host_0() -> None:
    """One Job stash-restore-rs running ``stashlet-agent restore-job`` for the claim, which is mounted at
    /stash-data (Stash's TARGET_MOUNT_PATH) as volume stash-volume; no POD_ORDINAL (host-0); owned by the
    session, backoffLimit 0, as ServiceAccount stashlet-restore-rs, root."""
    rs = pvc_restore()
    [job] = restore_job.jobs(rs, repository(), SETTINGS)
    assert job["metadata"]["name"] == "stash-restore-rs"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-rs"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stashlet-restore-rs"
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["args"][:5] == [
        agent_contract.MODE_RESTORE_JOB,
        "--invoker-kind=RestoreSession",
        "--invoker-name=rs",
        "--target-kind=PersistentVolumeClaim",
        "--target-name=nfs-pvc",
    ]
    assert {"name": "stash-volume", "mountPath": "/stash-data"} in container["volumeMounts"]
    assert {"name": "stash-volume", "persistentVolumeClaim": {"claimName": "nfs-pvc"}} in pod["volumes"]
    assert all(e["name"] != agent_contract.ENV_POD_ORDINAL for e in container["env"])
    assert container["securityContext"]["runAsUser"] == 0
    assert restore_job.job_hosts(rs) == {"host-0": "stash-restore-rs"}


def test_clone_jobs_mount_their_ordinals_claims_where_volume_mounts_say() -> None:
    """replicas 3: Jobs stash-restore-rs-0..2, each with POD_ORDINAL and its ordinal's claims as the volumes
    the mounts name (the template name without the ordinal), writable; hosts host-0..2 (alias-N with an
    alias); runtimeSettings.pod's serviceAccountName is used and its nodeSelector copied."""
    rs = clone(alias="src")
    jobs = restore_job.jobs(rs, repository(), SETTINGS)
    assert [j["metadata"]["name"] for j in jobs] == [f"stash-restore-rs-{i}" for i in range(3)]
    pod = jobs[1]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": agent_contract.ENV_POD_ORDINAL, "value": "1"} in container["env"]
    assert "--target-kind=" in container["args"]
    assert {"name": "restore-data-restore-demo", "mountPath": "/source/data"} in container["volumeMounts"]
    assert {
        "name": "restore-config-restore-demo",
        "persistentVolumeClaim": {"claimName": "restore-config-restore-demo-1"},
    } in pod["volumes"]
    assert restore_job.job_hosts(rs) == {f"src-{i}": f"stash-restore-rs-{i}" for i in range(3)}
    pod_settings = {"pod": {"serviceAccountName": "mine", "nodeSelector": {"a": "b"}}}
    with_account = clone(replicas=None, spec={"runtimeSettings": pod_settings})
    [job] = restore_job.jobs(with_account, repository(), SETTINGS)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"a": "b"}
    assert restore_job.job_hosts(with_account) == {"host-0": "stash-restore-rs"}
    assert [
        o["kind"] for o in restore_rbac.job_rbac(with_account, RepositoryAccess("demo", "repo", "s"))
    ] == [
        "Role",
        "RoleBinding",
    ]


def test_the_restore_jobs_rbac_is_exactly_what_restore_job_uses() -> None:
    """ServiceAccount stashlet-restore-rs (owned), Role stashlet-restore-rs: the session and its status by
    name, events, pods get, the Repository and Secret by name; no Lease, no workload, no pods/exec without
    an exec hook; a Repository elsewhere gets its own Role there."""
    objs = restore_rbac.job_rbac(pvc_restore(), RepositoryAccess("demo", "repo", "secret"))
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ServiceAccount", "stashlet-restore-rs"),
        ("Role", "stashlet-restore-rs"),
        ("RoleBinding", "stashlet-restore-rs"),
    ]
    assert objs[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-rs"
    rules = objs[1]["rules"]
    resources = sorted(r for rule in rules for r in rule["resources"])
    assert resources == sorted(
        ["restoresessions", "restoresessions/status", "events", "pods", "repositories", "secrets"]
    )
    assert objs[2]["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-restore-rs", "namespace": "demo"}
    ]
    elsewhere = restore_rbac.job_rbac(pvc_restore(), RepositoryAccess("store", "repo", "secret"))
    assert [(o["kind"], o["metadata"]["namespace"]) for o in elsewhere][-2:] == [
        ("Role", "store"),
        ("RoleBinding", "store"),
    ]
