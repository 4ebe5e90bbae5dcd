"""The RestoreSession's validation and the ``stash-init`` injection: pure, no server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stashlet.api import agent_contract, agent_identity, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import ConditionStatus
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestorePhase, RestoreSession
from stashlet.operator.core.conditions import apply_conditions
from stashlet.operator.core.validation import Lookup
from stashlet.operator.injection import init_container, sidecar_container
from stashlet.operator.restore.validation import (
    RestoreObserved,
    restore_phase,
    spec_problems,
    validate_restore,
)
from stashlet.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(agent_image="agent:1", pushgateway_url="http://pgw:9091", status_port=4000)
KEYS = frozenset({"RESTIC_PASSWORD", "GOOGLE_PROJECT_ID", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"})


def restore_session(namespace: str = "demo", **spec: Any) -> RestoreSession:
    """Seed 004's RestoreSession; ``spec`` overrides or adds fields."""
    body: dict[str, Any] = {
        "repository": {"name": "gcs-repo"},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"},
            "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
            "rules": [{"paths": ["/source/data"]}],
        },
    }
    body.update(spec)
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "deployment-restore", "namespace": namespace, "generation": 1},
            "spec": body,
        }
    )


def observed(repo: Repository | None, workload: dict[str, Any] | None, **kw: Any) -> RestoreObserved:
    return RestoreObserved(Lookup(repo), Lookup(KEYS if repo else None), Lookup(workload), **kw)


def conditions(rs: RestoreSession, obs: RestoreObserved) -> dict[str, tuple[ConditionStatus, str, str]]:
    import datetime as dt

    verdict = validate_restore(rs, obs)
    applied = apply_conditions([], list(verdict.updates), now=dt.datetime.now(dt.UTC), generation=1)
    return {c.type: (c.status, c.reason or "", c.message or "") for c in applied}


def test_seed_004_is_valid_and_pending(repo: Repository, make: Any) -> None:
    """The seed's objects, all present: every condition True, the init-container may go in, phase Pending."""
    rs = restore_session()
    verdict = validate_restore(rs, observed(repo, make.deployment()))
    assert verdict.applicable
    found = conditions(rs, observed(repo, make.deployment()))
    assert {k: (v[0], v[1]) for k, v in found.items()} == {
        "RepositoryFound": (ConditionStatus.TRUE, "RepositoryAvailable"),
        "BackendSecretFound": (ConditionStatus.TRUE, "BackendSecretAvailable"),
        "RestoreTargetFound": (ConditionStatus.TRUE, "TargetAvailable"),
        "ValidationPassed": (ConditionStatus.TRUE, "ResourceValidationPassed"),
    }
    import datetime as dt

    applied = apply_conditions([], list(verdict.updates), now=dt.datetime.now(dt.UTC), generation=1)
    assert restore_phase(applied, None) == RestorePhase.PENDING


def test_deprecated_spec_rules_are_checked_under_their_own_field() -> None:
    """``spec.rules`` (the deprecated place) is validated and named as such."""
    rs = restore_session(
        target={"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"}},
        rules=[{"paths": ["/a"]}, {"paths": ["/b"]}],
    )
    assert any(p.startswith("spec.rules[1]: only one rule") for p in spec_problems(rs))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"driver": "VolumeSnapshotter"},
            "spec.repository: not supported for a volume-snapshotter (the snapshots are VolumeSnapshots",
        ),
        (
            {"task": {"name": "pvc-restore"}},
            "spec.target.ref: task pvc-restore restores into a PersistentVolumeClaim; name one",
        ),
        (
            {"target": {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "x"}}},
            "spec.task.name: a PersistentVolumeClaim target is restored by the Task pvc-restore; set it",
        ),
        (
            {"target": {"ref": {"apiVersion": "apps/v1beta1", "kind": "Deployment", "name": "x"}}},
            "spec.target.ref.apiVersion: apps/v1beta1 is not supported for Deployment",
        ),
        (
            {
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "volumeMounts": [{"name": "v", "mountPath": "/stash-tmp"}],
                }
            },
            "spec.target.volumeMounts[0].mountPath: /stash-tmp is the init-container's temporary directory",
        ),
    ],
)
def test_what_the_init_container_model_cannot_do_is_invalid_and_named(
    spec: dict[str, Any], expected: str, repo: Repository, make: Any
) -> None:
    """Unsupported drivers, tasks, kinds and mount paths: ValidationPassed False naming the field;
    nothing is injected."""
    rs = restore_session(**spec)
    verdict = validate_restore(rs, observed(repo, make.deployment()))
    assert not verdict.applicable
    status, reason, message = conditions(rs, observed(repo, make.deployment()))["ValidationPassed"]
    assert (status, reason) == (ConditionStatus.FALSE, "ResourceValidationFailed")
    assert expected in message


def test_missing_repository_secret_and_target_are_each_named(repo: Repository, make: Any) -> None:
    """No Repository: RepositoryFound False naming it and the field; no target: RestoreTargetFound False."""
    rs = restore_session()
    found = conditions(rs, observed(None, None))
    assert found["RepositoryFound"][:2] == (ConditionStatus.FALSE, "RepositoryNotAvailable")
    assert (
        "Repository demo/gcs-repo does not exist (spec.repository of RestoreSession"
        in found["RepositoryFound"][2]
    )
    assert found["BackendSecretFound"][0] == ConditionStatus.UNKNOWN
    assert found["RestoreTargetFound"] == (
        ConditionStatus.FALSE,
        "TargetNotAvailable",
        "Restore target apps/v1 deployment/stash-demo does not exist.",
    )
    no_password = RestoreObserved(
        Lookup(repo), Lookup(frozenset({"GOOGLE_PROJECT_ID"})), Lookup(make.deployment())
    )
    secret = conditions(rs, no_password)["BackendSecretFound"]
    assert secret[:2] == (ConditionStatus.FALSE, "BackendSecretNotAvailable")
    assert "RESTIC_PASSWORD" in secret[2]
    assert not validate_restore(rs, no_password).applicable


def test_a_volume_the_workload_lacks_and_a_foreign_stash_init_are_refused(
    repo: Repository, make: Any
) -> None:
    """``volumeMounts`` naming no volume of the pod, and an init-container called stash-init that
    stashlet did not put there, are both ValidationPassed False naming the field."""
    rs = restore_session(
        target={
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"},
            "volumeMounts": [{"name": "nope", "mountPath": "/source/data"}],
        }
    )
    message = conditions(rs, observed(repo, make.deployment()))["ValidationPassed"][2]
    assert "spec.target.volumeMounts[0].name: Deployment demo/stash-demo has no volume 'nope'" in message
    foreign = make.deployment()
    foreign["spec"]["template"]["spec"]["initContainers"] = [{"name": "stash-init", "image": "x"}]
    message = conditions(restore_session(), observed(repo, foreign))["ValidationPassed"][2]
    assert "already has an init-container named 'stash-init' that stashlet did not inject" in message
    other = observed(repo, make.deployment(), other_restore="RestoreSession/older")
    message = conditions(restore_session(), other)["ValidationPassed"][2]
    assert "of RestoreSession/older; delete that RestoreSession first" in message


def test_usage_policy_refusing_the_namespace_is_invalid(make: Any) -> None:
    """A Repository in another namespace with the default policy (Same) refuses the session."""
    elsewhere = Repository.from_dict(make.repository(namespace="backup"))
    rs = restore_session(repository={"name": "gcs-repo", "namespace": "backup"})
    verdict = validate_restore(rs, observed(elsewhere, make.deployment(), namespace_labels={}))
    assert not verdict.applicable
    message = conditions(rs, observed(elsewhere, make.deployment(), namespace_labels={}))["ValidationPassed"][
        2
    ]
    assert message.startswith("spec.repository: ")
    assert "demo" in message


def test_the_agent_owns_the_phase_once_it_runs() -> None:
    """The operator writes Invalid or Pending only while the phase is unset, Pending or Invalid."""
    assert restore_phase([], RestorePhase.RUNNING) == RestorePhase.RUNNING
    assert restore_phase([], RestorePhase.SUCCEEDED) == RestorePhase.SUCCEEDED
    assert restore_phase([], RestorePhase.INVALID) == RestorePhase.PENDING


def init_of(workload: dict[str, Any]) -> dict[str, Any]:
    inits = workload["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits].count("stash-init") == 1
    first: dict[str, Any] = inits[0]
    assert first["name"] == "stash-init"
    return first


def test_init_container_runs_restore_first_with_writable_mounts(repo: Repository, make: Any) -> None:
    """``stash-init`` comes before any other init-container, runs ``stashlet-agent restore`` with the
    contract's args and downward env, as root (it sets the restored files' owners back), mounts the
    target writable and its own tmp dir."""
    rs = restore_session(
        tempDir={"medium": "Memory", "sizeLimit": "1Gi"},
        runtimeSettings={
            "container": {"env": [{"name": "EXTRA", "value": "1"}], "resources": {"limits": {}}}
        },
    )
    workload = make.deployment()
    workload["spec"]["template"]["spec"]["initContainers"] = [{"name": "app-init", "image": "busybox"}]
    injection = init_container.build_init_injection(rs, "Deployment", "stash-demo", repo, SETTINGS)
    patched = init_container.inject(workload, injection)
    assert patched is not None
    init = init_of(patched)
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["initContainers"]] == [
        "stash-init",
        "app-init",
    ]
    assert init["command"] == [agent_contract.AGENT_COMMAND]
    assert (
        init["args"]
        == agent_contract.AgentInvocation(
            mode="restore",
            invoker_kind="RestoreSession",
            invoker_name="deployment-restore",
            target_kind="Deployment",
            target_name="stash-demo",
            status_port=4000,
            tmp_dir=names.TMP_MOUNT_PATH,
            pushgateway_url="http://pgw:9091",
        ).args()
    )
    assert init["env"][:4] == agent_contract.downward_env()
    assert {"name": "EXTRA", "value": "1"} in init["env"]
    assert init["resources"] == {"limits": {}}
    assert init["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}  # it restores owners
    assert init["volumeMounts"][:2] == [
        {"name": "source-data", "mountPath": "/source/data"},
        {"name": names.INIT_TMP_VOLUME, "mountPath": names.TMP_MOUNT_PATH},
    ]
    volumes = {v["name"]: v for v in patched["spec"]["template"]["spec"]["volumes"]}
    assert volumes[names.INIT_TMP_VOLUME] == {
        "name": names.INIT_TMP_VOLUME,
        "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"},
    }
    assert patched["metadata"]["labels"][names.LABEL_RESTORE_SESSION] == "deployment-restore"
    annotations = patched["spec"]["template"]["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_LAST_APPLIED_RESTORE] == "RestoreSession/deployment-restore"
    assert annotations[names.ANNOTATION_RESTORE_INJECTION_HASH] == injection.hash


@pytest.mark.parametrize("repository_namespace", ["demo", "elsewhere"])
def test_stash_init_alone_gets_the_sessions_token_and_the_storage_secret_of_its_namespace(
    make: Any, repository_namespace: str
) -> None:
    """``stash-init`` mounts the token Secret of the session's own account ``stashlet-restore-<rs>`` and,
    when the Repository lives in the session's namespace, the storage Secret it names, read-only and
    ``optional``, with the variables that point the agent at them; a Repository of another namespace is
    read through the API (no mount, no variable). The workload's own containers get neither, and its
    service account is left as it was."""
    repository = Repository.from_dict(
        make.repository(namespace=repository_namespace, secret="restore-secret")
    )
    rs = restore_session()
    workload = make.deployment()
    workload["spec"]["template"]["spec"]["initContainers"] = [{"name": "app-init", "image": "busybox"}]
    injection = init_container.build_init_injection(rs, "Deployment", "stash-demo", repository, SETTINGS)
    patched = init_container.inject(workload, injection)
    assert patched is not None
    template = patched["spec"]["template"]["spec"]
    init = init_of(patched)
    volumes = {v["name"]: v for v in template["volumes"]}
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert volumes["stash-init-kube-token"]["secret"] == {
        "secretName": "stashlet-restore-deployment-restore",
        "optional": True,
    }
    assert mounts["stash-init-kube-token"] == {
        "name": "stash-init-kube-token",
        "mountPath": agent_identity.KUBE_TOKEN_DIR,
        "readOnly": True,
    }
    assert env[agent_identity.ENV_KUBE_TOKEN_DIR] == agent_identity.KUBE_TOKEN_DIR
    if repository_namespace == "demo":
        assert volumes["stash-init-storage-secret"]["secret"] == {
            "secretName": "restore-secret",
            "optional": True,
        }
        assert mounts["stash-init-storage-secret"] == {
            "name": "stash-init-storage-secret",
            "mountPath": f"{agent_identity.STORAGE_SECRETS_DIR}/restore-secret",
            "readOnly": True,
        }
        assert env[agent_identity.ENV_STORAGE_SECRETS_DIR] == agent_identity.STORAGE_SECRETS_DIR
    else:
        assert "stash-init-storage-secret" not in volumes
        assert "stash-init-storage-secret" not in mounts
        assert agent_identity.ENV_STORAGE_SECRETS_DIR not in env
    others = [c for c in template["containers"] + template["initContainers"] if c["name"] != "stash-init"]
    assert others
    for container in others:
        used = {m["name"] for m in container.get("volumeMounts") or []}
        assert not used & {"stash-init-kube-token", "stash-init-storage-secret"}, container["name"]
    assert template.get("serviceAccountName") == workload["spec"]["template"]["spec"].get(
        "serviceAccountName"
    )
    removed = init_container.remove_injection(patched, init_container.restore_invoker(rs))
    assert removed is not None
    left = {v["name"] for v in removed["spec"]["template"]["spec"].get("volumes") or []}
    assert not left & {"stash-init-kube-token", "stash-init-storage-secret"}


def test_injection_is_idempotent_and_a_change_replaces_it_once(repo: Repository, make: Any) -> None:
    """Injecting twice changes nothing the second time; a changed session yields one new template with
    still exactly one ``stash-init``."""
    rs = restore_session()
    injection = init_container.build_init_injection(rs, "Deployment", "stash-demo", repo, SETTINGS)
    patched = init_container.inject(make.deployment(), injection)
    assert patched is not None
    assert init_container.inject(patched, injection) is None
    changed = init_container.build_init_injection(
        rs, "Deployment", "stash-demo", repo, OperatorSettings(agent_image="agent:2")
    )
    again = init_container.inject(patched, changed)
    assert again is not None
    assert init_of(again)["image"] == "agent:2"
    names_of_volumes = [v["name"] for v in again["spec"]["template"]["spec"]["volumes"]]
    assert names_of_volumes.count(names.INIT_TMP_VOLUME) == 1


def test_local_backend_volume_is_mounted_into_the_init_container(make: Any) -> None:
    """A local-backend Repository's volume goes in under the init-container's own name."""
    local = Repository.from_dict(
        {
            **make.repository(),
            "spec": {
                "backend": {
                    "local": {"mountPath": "/safe/data", "hostPath": {"path": "/data/stash"}},
                    "storageSecretName": "gcs-secret",
                }
            },
        }
    )
    injection = init_container.build_init_injection(
        restore_session(), "Deployment", "stash-demo", local, SETTINGS
    )
    patched = init_container.inject(make.deployment(), injection)
    assert patched is not None
    assert {"name": names.INIT_LOCAL_VOLUME, "mountPath": "/safe/data"} in init_of(patched)["volumeMounts"]
    volumes = {v["name"]: v for v in patched["spec"]["template"]["spec"]["volumes"]}
    assert volumes[names.INIT_LOCAL_VOLUME] == {
        "name": names.INIT_LOCAL_VOLUME,
        "hostPath": {"path": "/data/stash"},
    }


def test_restore_and_sidecar_injections_leave_each_other_alone(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """With the ``stash`` sidecar in place, adding and removing ``stash-init`` gives back the sidecar's
    template exactly, and neither injection counts as changed by the other (no rollout loop)."""
    sidecar = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    with_sidecar = sidecar_container.inject(make.deployment(), sidecar)
    assert with_sidecar is not None
    rs = restore_session()
    init = init_container.build_init_injection(rs, "Deployment", "stash-demo", repo, SETTINGS)
    both = init_container.inject(copy.deepcopy(with_sidecar), init)
    assert both is not None
    assert sidecar_container.inject(both, sidecar) is None
    assert init_container.inject(both, init) is None
    removed = init_container.remove_injection(both, "RestoreSession/deployment-restore")
    assert removed == with_sidecar
    assert init_container.remove_injection(with_sidecar, "RestoreSession/deployment-restore") is None


def test_removal_leaves_another_sessions_init_container_alone(repo: Repository, make: Any) -> None:
    """Removing session A's injection from a workload that carries session B's changes nothing."""
    init = init_container.build_init_injection(restore_session(), "Deployment", "stash-demo", repo, SETTINGS)
    patched = init_container.inject(make.deployment(), init)
    assert patched is not None
    assert init_container.remove_injection(patched, "RestoreSession/someone-else") is None
    assert init_container.applied_restore(patched) == "RestoreSession/deployment-restore"


@pytest.mark.parametrize(
    ("time_out", "expected"),
    [("12", "spec.timeOut: not a Go duration: '12'"), ("0s", "spec.timeOut: '0s' must be longer than 0s")],
)
def test_a_time_out_stored_before_the_crd_rule_is_invalid_and_named(
    time_out: str, expected: str, repo: Repository, make: Any
) -> None:
    """A timeOut Go cannot read, or one that would fail every restore at once, in a session stored before
    the CRD refused it: Invalid naming spec.timeOut, nothing injected; 30m is fine."""
    import datetime as dt

    rs = restore_session(timeOut=time_out)
    assert expected in "; ".join(spec_problems(rs))
    verdict = validate_restore(rs, observed(repo, make.deployment()))
    assert not verdict.applicable
    applied = apply_conditions([], list(verdict.updates), now=dt.datetime.now(dt.UTC), generation=1)
    assert restore_phase(applied, None) == RestorePhase.INVALID
    assert spec_problems(restore_session(timeOut="30m")) == []
