"""The sidecar injection: what goes into the pod template, exactly once, and how it comes out again."""

import copy
from typing import Any

import pytest

from stashlet.api import agent_contract, agent_identity, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.operator.injection import sidecar_container
from stashlet.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(agent_image="agent:1", pushgateway_url="http://pgw:9091", status_port=4000)


def sidecar_of(workload: dict[str, Any]) -> dict[str, Any]:
    sidecars: list[dict[str, Any]] = [
        c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"
    ]
    assert len(sidecars) == 1
    return sidecars[0]


def test_sidecar_runs_the_agent_with_the_contract_args_and_downward_env(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """Container ``stash``: ``stashlet-agent`` with AgentInvocation's args, env from the downward API."""
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    patched = sidecar_container.inject(make.deployment(), injection)
    assert patched is not None
    sidecar = sidecar_of(patched)
    assert sidecar["image"] == "agent:1"
    assert sidecar["command"] == [agent_contract.AGENT_COMMAND]
    expected = agent_contract.AgentInvocation(
        mode="sidecar",
        invoker_kind="BackupConfiguration",
        invoker_name="pause-backup",
        target_kind="Deployment",
        target_name="stash-demo",
        status_port=4000,
        tmp_dir=names.TMP_MOUNT_PATH,
        pushgateway_url="http://pgw:9091",
    ).args()
    assert sidecar["args"] == expected
    assert sidecar["env"][:4] == agent_contract.downward_env()


def test_target_mounts_are_read_only_and_tmp_dir_is_an_empty_dir(make: Any, repo: Repository) -> None:
    """``target.volumeMounts`` read-only; ``stash-tmp-dir`` at /stash-tmp honouring ``tempDir``."""
    bc = BackupConfiguration.from_dict(
        make.backup_configuration(tempDir={"medium": "Memory", "sizeLimit": "1Gi", "disableCaching": True})
    )
    patched = sidecar_container.inject(
        make.deployment(), sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    )
    assert patched is not None
    sidecar = sidecar_of(patched)
    assert sidecar["volumeMounts"][:2] == [
        {"name": "source-data", "mountPath": "/source/data", "readOnly": True},
        {"name": "stash-tmp-dir", "mountPath": "/stash-tmp"},
    ]
    volumes = patched["spec"]["template"]["spec"]["volumes"]
    assert {"name": "stash-tmp-dir", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in volumes


def test_status_port_and_probes(bc: BackupConfiguration, repo: Repository, make: Any) -> None:
    """The status port is declared; liveness probes /healthz, readiness /readyz on it."""
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    sidecar = injection.container
    assert sidecar["ports"] == [{"name": "stash-status", "containerPort": 4000, "protocol": "TCP"}]
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 4000}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 4000}


def test_container_runtime_settings_apply(make: Any, repo: Repository) -> None:
    """``runtimeSettings.container``: resources, securityContext and env go into the sidecar."""
    container = {
        "resources": {"limits": {"memory": "256Mi"}},
        "securityContext": {"runAsUser": 1000},
        "env": [{"name": "EXTRA", "value": "1"}, {"name": "POD_NAME", "value": "not-this"}],
    }
    bc = BackupConfiguration.from_dict(make.backup_configuration(runtimeSettings={"container": container}))
    sidecar = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS).container
    assert sidecar["resources"] == container["resources"]
    assert sidecar["securityContext"] == {"runAsUser": 1000, "runAsGroup": 0}
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}
    assert "fieldRef" in env["POD_NAME"]["valueFrom"]  # the downward API wins


def test_sidecar_reads_as_root_and_the_configuration_security_context_is_laid_over_it(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """The sidecar reads the workload's files whatever their owners (a provisioned volume is 0750 root):
    it runs as root by default, and the fields of ``runtimeSettings.container.securityContext`` are laid
    over that default."""
    sidecar = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS).container
    assert sidecar["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}
    own = {"runAsUser": 1000, "runAsNonRoot": True, "readOnlyRootFilesystem": True}
    custom = BackupConfiguration.from_dict(
        make.backup_configuration(runtimeSettings={"container": {"securityContext": own}})
    )
    assert sidecar_container.build_injection(custom, "Deployment", "stash-demo", repo, SETTINGS).container[
        "securityContext"
    ] == {**own, "runAsGroup": 0}


def test_operator_default_resources_apply_unless_the_configuration_sets_its_own(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """``--agent-resources`` fills in the sidecar's resources; a configuration's own
    ``runtimeSettings.container.resources`` wins."""
    defaults = {"limits": {"memory": "128Mi"}}
    settings = OperatorSettings(agent_image="agent:1", agent_resources=defaults)
    assert (
        sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, settings).container[
            "resources"
        ]
        == defaults
    )
    own = {"resources": {"limits": {"memory": "1Gi"}}}
    configured = BackupConfiguration.from_dict(make.backup_configuration(runtimeSettings={"container": own}))
    sidecar = sidecar_container.build_injection(
        configured, "Deployment", "stash-demo", repo, settings
    ).container
    assert sidecar["resources"] == own["resources"]
    assert (
        "resources"
        not in sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS).container
    )


def test_local_backend_volume_is_mounted_at_its_mount_path(bc: BackupConfiguration, make: Any) -> None:
    """A ``local`` backend's volume goes into the pod and is mounted at the backend's mountPath."""
    repo = Repository.from_dict(
        {
            "metadata": {"name": "gcs-repo", "namespace": "demo"},
            "spec": {
                "backend": {
                    "local": {"mountPath": "/safe/data", "subPath": "x", "hostPath": {"path": "/data/stash"}},
                    "storageSecretName": "s",
                }
            },
        }
    )
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    assert {"name": "stash-local", "hostPath": {"path": "/data/stash"}} in injection.volumes
    assert {"name": "stash-local", "mountPath": "/safe/data"} in injection.container["volumeMounts"]


def test_injection_is_idempotent_and_recorded_in_annotations(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """Injecting twice gives None the second time; the template records the invoker and the hash."""
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    patched = sidecar_container.inject(make.deployment(), injection)
    assert patched is not None
    annotations = patched["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        names.ANNOTATION_LAST_APPLIED_INVOKER: "BackupConfiguration/pause-backup",
        names.ANNOTATION_INJECTION_HASH: injection.hash,
    }
    assert sidecar_container.inject(patched, injection) is None
    again = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    assert again.hash == injection.hash


def test_a_changed_configuration_replaces_the_sidecar_once(make: Any, repo: Repository) -> None:
    """A new image (or spec) changes the hash; re-injection leaves exactly one sidecar and one tmp volume."""
    bc = BackupConfiguration.from_dict(make.backup_configuration())
    first = sidecar_container.inject(
        make.deployment(), sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    )
    assert first is not None
    newer = OperatorSettings(agent_image="agent:2", status_port=4000)
    second_injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, newer)
    second = sidecar_container.inject(first, second_injection)
    assert second is not None
    spec = second["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["busybox", "stash"]
    assert [v["name"] for v in spec["volumes"]] == [
        "source-data",
        "stash-tmp-dir",
        "stash-kube-token",
        "stash-storage-secret",
    ]
    assert sidecar_of(second)["image"] == "agent:2"


@pytest.mark.parametrize("annotated", [True, False])
def test_removal_restores_the_original_template(
    bc: BackupConfiguration, repo: Repository, make: Any, annotated: bool
) -> None:
    """Removing the injection gives back the template exactly as it was (with or without own annotations)."""
    original = make.deployment()
    if annotated:
        original["spec"]["template"]["metadata"]["annotations"] = {"keep": "me"}
    patched = sidecar_container.inject(
        copy.deepcopy(original),
        sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS),
    )
    assert patched is not None
    restored = sidecar_container.remove_injection(patched, "BackupConfiguration/pause-backup")
    assert restored == original
    assert sidecar_container.remove_injection(original, "BackupConfiguration/pause-backup") is None


def test_the_workload_is_labelled_for_its_configuration(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """The workload (not its template: no rollout) carries ``stash.appscode.com/backup-configuration``."""
    patched = sidecar_container.inject(
        make.deployment(), sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    )
    assert patched is not None
    assert patched["metadata"]["labels"] == {
        "app": "stash-demo",
        names.LABEL_BACKUP_CONFIGURATION: "pause-backup",
    }
    assert names.LABEL_BACKUP_CONFIGURATION not in patched["spec"]["template"]["metadata"]["labels"]


def test_removal_leaves_another_invokers_sidecar_alone(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """A configuration's finalizer does not strip a sidecar some other configuration injected."""
    patched = sidecar_container.inject(
        make.deployment(), sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    )
    assert patched is not None
    assert sidecar_container.remove_injection(patched, "BackupConfiguration/other") is None


def test_a_stripped_template_is_detected(bc: BackupConfiguration, repo: Repository, make: Any) -> None:
    """A template whose sidecar was removed by someone else (annotations left) is injected again."""
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    patched = sidecar_container.inject(make.deployment(), injection)
    assert patched is not None
    patched["spec"]["template"]["spec"]["containers"].pop()
    assert not sidecar_container.is_injected(patched, injection)
    again = sidecar_container.inject(patched, injection)
    assert again is not None
    assert len([c for c in again["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]) == 1


def test_only_the_sidecar_gets_its_own_token_and_the_storage_secret_of_its_namespace(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """The sidecar's own account token (Secret ``stashlet-agent-<bc>``) and the storage Secret of a
    Repository in the configuration's namespace are volumes mounted read-only into ``stash`` alone, both
    optional (a missing Secret never keeps the application from starting), with the variables that tell
    the agent where they are; the workload's own containers get neither. Removal takes them out again."""
    original = make.deployment()
    patched = sidecar_container.inject(
        original, sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS)
    )
    assert patched is not None
    spec = patched["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["stash-kube-token"] == {
        "name": "stash-kube-token",
        "secret": {"secretName": "stashlet-agent-pause-backup", "optional": True},
    }
    assert volumes["stash-storage-secret"] == {
        "name": "stash-storage-secret",
        "secret": {"secretName": "gcs-secret", "optional": True},
    }
    sidecar = sidecar_of(patched)
    assert {
        "name": "stash-kube-token",
        "mountPath": agent_identity.KUBE_TOKEN_DIR,
        "readOnly": True,
    } in sidecar["volumeMounts"]
    secret_mount = {
        "name": "stash-storage-secret",
        "mountPath": f"{agent_identity.STORAGE_SECRETS_DIR}/gcs-secret",
        "readOnly": True,
    }
    assert secret_mount in sidecar["volumeMounts"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env[agent_identity.ENV_KUBE_TOKEN_DIR] == agent_identity.KUBE_TOKEN_DIR
    assert env[agent_identity.ENV_STORAGE_SECRETS_DIR] == agent_identity.STORAGE_SECRETS_DIR
    for other in spec["containers"]:
        if other["name"] != "stash":
            mounted = {m["name"] for m in other.get("volumeMounts") or []}
            assert not mounted & {"stash-kube-token", "stash-storage-secret"}
            assert not {e["name"] for e in other.get("env") or []} & set(env)
    assert "serviceAccountName" not in spec  # the workload keeps its own account
    assert sidecar_container.remove_injection(patched, "BackupConfiguration/pause-backup") == original


def test_a_repository_of_another_namespace_keeps_its_secret_there(bc: BackupConfiguration, make: Any) -> None:
    """The Secret of a Repository in another namespace cannot be mounted (a pod mounts only its own
    namespace's Secrets): no secret volume and no directory variable; the token is mounted all the same."""
    elsewhere = Repository.from_dict(make.repository(namespace="backup"))
    injection = sidecar_container.build_injection(bc, "Deployment", "stash-demo", elsewhere, SETTINGS)
    assert [v["name"] for v in injection.volumes] == ["stash-tmp-dir", "stash-kube-token"]
    env = {e["name"] for e in injection.container["env"]}
    assert agent_identity.ENV_STORAGE_SECRETS_DIR not in env
    assert agent_identity.ENV_KUBE_TOKEN_DIR in env
