"""A kubedump configuration's Jobs run as the ServiceAccount its ``runtimeSettings.pod`` names, as Stash's
kubedump guide writes it, or as the one stashlet makes: the Job, the grants and the read binding (pure)."""

from __future__ import annotations

from typing import Any

from tests.operator.conftest import backup_configuration, repository

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.repository import Repository
from stashlet.operator.injection import job_rbac
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job

SETTINGS = OperatorSettings(agent_image="agent:1")
ACCESS = RepositoryAccess("demo", "gcs-repo", "gcs-secret")


def kubedump(**pod: Any) -> BackupConfiguration:
    obj = backup_configuration(task={"name": "kubedump-backup-0.1.0"})
    del obj["spec"]["target"]
    if pod:
        obj["spec"]["runtimeSettings"] = {"pod": pod}
    return BackupConfiguration.from_dict(obj)


def session() -> BackupSession:
    return BackupSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {"name": "pause-backup-1", "namespace": "demo", "uid": "s"},
            "spec": {
                "invoker": {
                    "apiGroup": "stash.appscode.com",
                    "kind": "BackupConfiguration",
                    "name": "pause-backup",
                }
            },
        }
    )


def subjects(objects: list[dict[str, Any]]) -> list[str]:
    return [s["name"] for o in objects if o["kind"] == "RoleBinding" for s in o["subjects"]]


def test_without_an_account_the_jobs_run_as_stashlets_own_bound_to_read() -> None:
    bc = kubedump()
    objects = job_rbac.job_rbac(bc, repository=ACCESS)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"] == [
        "stashlet-kubedump-pause-backup"
    ]
    assert subjects(objects) == ["stashlet-kubedump-pause-backup"]
    job = backup_job.build_job(bc, session(), Repository.from_dict(repository()), SETTINGS)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "stashlet-kubedump-pause-backup"
    assert job_rbac.read_binding(bc, SETTINGS)["subjects"][0]["name"] == "stashlet-kubedump-pause-backup"


def test_the_account_the_configuration_names_runs_the_jobs_and_gets_only_their_own_work() -> None:
    """Stash's kubedump guide names ``cluster-resource-reader``, which the user bound to what it may read:
    stashlet makes no account, and grants that one only the Job's own work (no read binding)."""
    bc = kubedump(serviceAccountName="cluster-resource-reader")
    assert job_rbac.user_account(bc) == "cluster-resource-reader"
    objects = job_rbac.job_rbac(bc, repository=ACCESS)
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert subjects(objects) == ["cluster-resource-reader"]
    job = backup_job.build_job(bc, session(), Repository.from_dict(repository()), SETTINGS)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "cluster-resource-reader"
