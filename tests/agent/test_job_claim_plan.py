"""What the job mode backs up for a ``pvc-backup`` configuration: Stash's TARGET_PATHS over
TARGET_MOUNT_PATH, exclude and args (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.agent.job import TaskRefused, claim_plan, is_claim_task
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import TargetRef


def config(**target: Any) -> BackupConfiguration:
    return BackupConfiguration.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "nfs-pvc-backup", "namespace": "demo"},
            "spec": {
                "task": {"name": "pvc-backup"},
                "repository": {"name": "gcs-repo"},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "target": {
                    "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"},
                    **target,
                },
            },
        }
    )


def test_without_paths_the_mount_path_is_backed_up() -> None:
    """No ``paths``: Stash's TARGET_MOUNT_PATH /stash-data, or the first volume mount's path."""
    plan = claim_plan(config())
    assert is_claim_task(config())
    assert (plan.ref, plan.total_hosts, plan.paths) == (
        TargetRef(api_version="v1", kind="PersistentVolumeClaim", name="nfs-pvc"),
        1,
        ["/stash-data"],
    )
    assert claim_plan(config(volumeMounts=[{"name": "d", "mountPath": "/data"}])).paths == ["/data"]


def test_paths_exclude_and_args_are_taken_as_written() -> None:
    """``paths`` (under the mount), ``exclude`` and ``args`` go to restic as for a workload."""
    plan = claim_plan(config(paths=["/stash-data/pod-1"], exclude=["*.log"], args=["--one-file-system"]))
    assert (plan.paths, plan.excludes, plan.args) == (["/stash-data/pod-1"], ["*.log"], ["--one-file-system"])


def test_a_target_that_is_no_claim_is_refused_naming_the_field() -> None:
    """pvc-backup with a Deployment target: refused (InvalidTarget), naming spec.target.ref."""
    bc = config()
    bc.spec.target.ref = TargetRef(api_version="apps/v1", kind="Deployment", name="web")  # type: ignore[union-attr]
    with pytest.raises(TaskRefused) as raised:
        claim_plan(bc)
    assert raised.value.reason == "InvalidTarget"
    assert "spec.target.ref must name the PersistentVolumeClaim" in raised.value.message
