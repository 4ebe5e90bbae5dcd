"""``spec.wipeOut``: who uses a Repository, and the Job (and its rights) that wipes it: pure."""

from __future__ import annotations

from typing import Any

from tests.operator.conftest import backup_configuration, repository

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.repository import wipe_job
from stashlet.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(agent_image="agent:1", pushgateway_url="http://pgw:9091", status_port=4000)


def repo(**spec: Any) -> Repository:
    obj = repository(**spec)
    obj["metadata"]["uid"] = "repo-uid"
    return Repository.from_dict(obj)


def restore(namespace: str, repository_ref: dict[str, str]) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "r", "namespace": namespace},
            "spec": {"repository": repository_ref},
        }
    )


def test_users_are_what_names_the_repository_in_its_namespace_or_from_another() -> None:
    here = BackupConfiguration.from_dict(backup_configuration())
    other_repo = BackupConfiguration.from_dict(backup_configuration(name="x", repository={"name": "other"}))
    elsewhere = BackupConfiguration.from_dict(backup_configuration(name="y", namespace="apps"))
    from_apps = restore("apps", {"name": "gcs-repo", "namespace": "demo"})
    assert wipe_job.users(repo(wipeOut=True), [here, other_repo, elsewhere], [from_apps]) == [
        "BackupConfiguration demo/pause-backup",
        "RestoreSession apps/r",
    ]


def test_only_a_true_wipe_out_wipes() -> None:
    assert wipe_job.wants_wipe(repo(wipeOut=True))
    assert not wipe_job.wants_wipe(repo(wipeOut=False))
    assert not wipe_job.wants_wipe(repo())


def test_the_job_runs_the_agents_wipe_as_its_own_account_owned_by_the_repository() -> None:
    job = wipe_job.wipe_job(repo(wipeOut=True), SETTINGS)
    assert job["metadata"]["name"] == "stashlet-wipe-gcs-repo"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "repo-uid"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stashlet-wipe-gcs-repo"
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "agent:1"
    assert container["args"][0] == agent_contract.MODE_WIPE
    assert f"{agent_contract.FLAG_INVOKER_KIND}=Repository" in container["args"]
    assert f"{agent_contract.FLAG_INVOKER_NAME}=gcs-repo" in container["args"]
    assert "securityContext" not in container  # a cloud backend needs no root


def test_a_local_backend_is_mounted_and_wiped_as_root() -> None:
    local = {
        "local": {"mountPath": "/safe/data", "hostPath": {"path": "/data/backups"}},
        "storageSecretName": "s",
    }
    job = wipe_job.wipe_job(repo(backend=local, wipeOut=True), SETTINGS)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "stash-local", "mountPath": "/safe/data"} in container["volumeMounts"]
    assert container["securityContext"]["runAsUser"] == 0


def test_the_account_may_read_only_this_repository_and_its_secret() -> None:
    account, role, binding = wipe_job.wipe_rbac(repo(wipeOut=True))
    assert account["kind"] == "ServiceAccount"
    assert role["rules"] == [
        {
            "apiGroups": [names.GROUP],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": ["gcs-repo"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["gcs-secret"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-wipe-gcs-repo", "namespace": "demo"}
    ]


def test_long_names_are_cut_with_a_hash() -> None:
    long = Repository.from_dict({**repository(), "metadata": {"name": "r" * 70, "namespace": "demo"}})
    name = wipe_job.wipe_name(long)
    assert len(name) == 63 and name.startswith("stashlet-wipe-rrr")


def test_a_job_has_an_outcome_once_it_completed_or_failed() -> None:
    assert wipe_job.job_outcome({"status": {}}) is None
    assert (
        wipe_job.job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
        == "Complete"
    )
    assert (
        wipe_job.job_outcome({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    )
