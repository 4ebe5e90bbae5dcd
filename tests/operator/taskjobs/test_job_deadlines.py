"""Backup and restore Jobs end by ``spec.timeOut`` (``activeDeadlineSeconds``), so a pod that never starts or
hangs makes a failed Job, which fails its session (pure)."""

from __future__ import annotations

from typing import Any

from tests.operator.conftest import backup_configuration

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.job_outcome import DEADLINE_GRACE_SECONDS
from stashlet.operator.restore import restore_job
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job

SETTINGS = OperatorSettings(agent_image="agent:1")


def dump_config(**spec: Any) -> BackupConfiguration:
    obj = backup_configuration(name="dump", task={"name": "kubedump-backup-0.1.0"}, **spec)
    obj["spec"]["target"] = {"ref": {"apiVersion": "v1", "kind": "Namespace", "name": "demo"}}
    return BackupConfiguration.from_dict(obj)


SESSION = BackupSession.from_dict(
    {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "dump-1700000000", "namespace": "demo", "uid": "s-1"},
        "spec": {
            "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "dump"}
        },
    }
)


def restore(**spec: Any) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "rs", "namespace": "demo", "uid": "uid-rs"},
            "spec": {
                "repository": {"name": "repo"},
                "task": {"name": "pvc-restore"},
                "target": {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}},
                **spec,
            },
        }
    )


def test_a_backup_job_ends_by_the_timeout_plus_a_grace() -> None:
    job = backup_job.build_job(dump_config(timeOut="10m"), SESSION, None, SETTINGS)
    assert job["spec"]["activeDeadlineSeconds"] == 600 + DEADLINE_GRACE_SECONDS
    assert "activeDeadlineSeconds" not in backup_job.build_job(dump_config(), SESSION, None, SETTINGS)["spec"]


def test_a_restore_job_ends_by_the_timeout_plus_a_grace() -> None:
    [job] = restore_job.jobs(restore(timeOut="1m30s"), None, SETTINGS)
    assert job["spec"]["activeDeadlineSeconds"] == 90 + DEADLINE_GRACE_SECONDS
    [plain] = restore_job.jobs(restore(), None, SETTINGS)
    assert "activeDeadlineSeconds" not in plain["spec"]
