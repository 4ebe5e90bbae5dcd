"""``stashlet-agent drill`` end to end: real API server, real restic, real Pushgateway. The agent runs as a
process with the drill account's token and exactly the RBAC the operator grants it
(:func:`stashlet.operator.drills.cronjob.drill_rbac`); the storage Secret is a folder of files, as the Job
mounts it, and the scratch volume a folder of the test's.

The backups are taken with plain restic as the sidecar takes them (``backup --host=<host> -- <path>``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.agent.restore.test_restore import (
    PASSWORD,
    REPOSITORY,
    RestoreEnv,
    Run,
    env,
    finish,
    manifest,
    pushed_metrics,
    write_tree,
)

from stashlet.api import agent_contract, agent_identity
from stashlet.api.agent_contract import AgentInvocation
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.operator.drills.cronjob import account_name, drill_rbac

__all__ = ["env"]  # the fixture, shared with the restore tests

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

BC = "app-backup"


def configuration(environment: RestoreEnv) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {
            "name": BC,
            "namespace": environment.namespace,
            "annotations": {"stashlet.dev/restore-drill-schedule": "0 3 * * 0"},
        },
        "spec": {
            "repository": {"name": REPOSITORY},
            "schedule": "*/5 * * * *",
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                "paths": [str(environment.data)],
            },
            "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        },
    }


def grant(environment: RestoreEnv) -> Path:
    """The configuration, and what the operator makes for its drill; a kubeconfig with the account's
    token."""
    bc = configuration(environment)
    environment.apply(bc)
    applied = BackupConfiguration.from_dict(environment.get("backupconfiguration", BC))
    repository = Repository.from_dict(environment.get("repository", REPOSITORY))
    objects = drill_rbac(applied, repository)
    environment.apply(*objects)
    return environment.kubeconfig_for(environment.namespace, account_name(applied))


def start_drill(
    environment: RestoreEnv,
    kubeconfig: Path,
    *,
    step: str = agent_contract.DRILL_STEP_ALL,
    pod: str = "stash-drill-app-backup-x1",
    pushgateway: str | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """The drill's agent, as the Job's container runs it."""
    tmp_dir = environment.tmp_path / "stash-tmp-drill"
    tmp_dir.mkdir(exist_ok=True)
    invocation = AgentInvocation(
        mode=agent_contract.MODE_DRILL,
        invoker_kind="BackupConfiguration",
        invoker_name=BC,
        target_kind="",
        target_name="",
        status_port=0,
        tmp_dir=str(tmp_dir),
        pushgateway_url=pushgateway,
        log_level="debug",
        drill_step=step,
    )
    process_env = {
        "PATH": os.environ["PATH"],
        "NAMESPACE": environment.namespace,
        "POD_NAME": pod,
        "KUBECONFIG": str(kubeconfig),
        "STASHLET_RESTIC": environment.restic_binary,
        agent_identity.ENV_STORAGE_SECRETS_DIR: str(environment.storage_secrets),
        "STASHLET_DRILL_DIR": str(scratch(environment)),
        "HOME": str(tmp_dir),
    }
    log = environment.tmp_path / f"drill-{step}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stashlet.agent.cli", *invocation.args()],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=process_env,
        )
    return process, log


def scratch(environment: RestoreEnv) -> Path:
    return environment.tmp_path / "restore-drill"


def drill(environment: RestoreEnv, kubeconfig: Path, **kwargs: Any) -> Run:
    process, log = start_drill(environment, kubeconfig, **kwargs)
    return finish(process, log, timeout=180)


def repository_status(environment: RestoreEnv) -> dict[str, Any]:
    status: dict[str, Any] = environment.get("repository", REPOSITORY).get("status") or {}
    return status


def drill_condition(environment: RestoreEnv) -> dict[str, Any] | None:
    conditions = repository_status(environment).get("conditions") or []
    return next((c for c in conditions if c["type"] == "RestoreDrillSucceeded"), None)


def drill_events(environment: RestoreEnv) -> list[tuple[str, str, str, str]]:
    return sorted(
        (e["type"], e["reason"], e["source"]["component"], e["message"]) for e in environment.events(BC)
    )


def samples(pushgateway: str, name: str, namespace: str) -> list[Any]:
    return [s for s in pushed_metrics(pushgateway).get(name, []) if s.labels.get("namespace") == namespace]


def corrupt_largest_pack(repo_dir: Path) -> Path:
    """Overwrite bytes in the middle of the biggest pack file (the data blobs of the big file)."""
    pack = max((p for p in (repo_dir / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    with pack.open("r+b") as handle:
        handle.seek(pack.stat().st_size // 2)
        handle.write(b"\0drill-damage\0" * 8)
    return pack


def test_a_drill_restores_the_latest_snapshots_and_records_the_pass(
    env: RestoreEnv, pushgateway: str
) -> None:
    """Two hosts, host-0 backed up twice: the drill restores each host's latest snapshot into its own
    folder, byte for byte as backed up, compares it with restic's listing, and records the pass: condition
    RestoreDrillSucceeded True naming both snapshots, lastVerifiedSnapshot (the newest), lastDrillTime, a
    Normal event on the configuration, and the drill gauges on the Pushgateway; no log line holds the
    password."""
    write_tree(env.data, "first")
    env.backup("host-0", env.data)
    (env.data / "a.txt").write_text("changed after the first snapshot\n")
    (env.data / "dir" / "new.txt").write_text("new\n")
    latest_0 = env.backup("host-0", env.data)
    expected = manifest(env.data)
    other = env.tmp_path / "other"
    other.mkdir()
    write_tree(other, "host-1")
    latest_1 = env.backup("host-1", env.data, volume=other)  # host-1 backs up its own volume at the same path
    kubeconfig = grant(env)

    run = drill(env, kubeconfig, pushgateway=pushgateway)

    assert run.code == 0, run.log[-4000:]
    restored = scratch(env) / "host-0" / env.data.relative_to("/")
    assert manifest(restored) == expected
    condition = drill_condition(env)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "RestoreDrillPassed")
    assert latest_0[:8] in condition["message"]
    assert latest_1[:8] in condition["message"]
    assert manifest(scratch(env) / "host-1" / env.data.relative_to("/")) == manifest(other)
    status = repository_status(env)
    assert status["lastDrillTime"]
    assert status["lastVerifiedSnapshot"] == latest_1[:8]  # the newest: taken last
    events = drill_events(env)
    assert [(t, r, c) for t, r, c, _ in events] == [("Normal", "RestoreDrillSucceeded", "Restore Drill")]
    assert f"BackupConfiguration {env.namespace}/{BC} passed" in events[0][3]
    files = sum(
        1 for root in (env.data, other) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )
    success = samples(pushgateway, "stash_restore_drill_success", env.namespace)
    assert [(s.value, s.labels["invoker_name"], s.labels["repository"]) for s in success] == [
        (1.0, BC, REPOSITORY)
    ]
    checked = samples(pushgateway, "stash_appscode_com_restore_drill_files_checked", env.namespace)
    assert [s.value for s in checked] == [float(files)]
    assert samples(pushgateway, "stash_restore_drill_last_verified_time_seconds", env.namespace)
    lines = run.lines()
    assert {"restore drill started", "snapshot listed", "snapshot restored", "restore drill passed"} <= {
        line.get("msg") for line in lines
    }
    assert PASSWORD not in run.log


def test_a_damaged_data_blob_fails_the_drill_naming_the_file(env: RestoreEnv, pushgateway: str) -> None:
    """A pack file of the snapshot's big file is damaged in the backend: restic cannot restore that file
    (its blob fails decryption), so the drill fails naming it: condition False with reason FileNotRestored,
    a Warning event RestoreDrillFailed naming the file and the snapshot, the success gauge at 0, exit 1;
    no snapshot is recorded as verified."""
    (env.data / "small.txt").write_text("small\n")
    (env.data / "big.bin").write_bytes(os.urandom(3_000_000))
    snapshot = env.backup("host-0", env.data)
    corrupt_largest_pack(env.repo_dir)
    kubeconfig = grant(env)

    run = drill(env, kubeconfig, pushgateway=pushgateway)

    assert run.code == 1, run.log[-4000:]
    big = str(env.data / "big.bin")
    condition = drill_condition(env)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "FileNotRestored")
    assert big in condition["message"] and snapshot[:8] in condition["message"]
    assert "lastVerifiedSnapshot" not in repository_status(env)
    events = drill_events(env)
    assert [(t, r) for t, r, _, _ in events] == [("Warning", "RestoreDrillFailed")]
    assert big in events[0][3]
    assert [s.value for s in samples(pushgateway, "stash_restore_drill_success", env.namespace)] == [0.0]
    assert not samples(pushgateway, "stash_restore_drill_last_verified_time_seconds", env.namespace)
    assert any(line.get("msg") == "restore drill failed" for line in run.lines())


def test_a_repository_without_snapshots_fails_the_drill(env: RestoreEnv) -> None:
    """Nothing backed up yet: the drill fails with NoSnapshot, naming the Repository (a drill that finds
    nothing to restore is as loud as one that finds damage)."""
    kubeconfig = grant(env)

    run = drill(env, kubeconfig)

    assert run.code == 1, run.log[-4000:]
    condition = drill_condition(env)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "NoSnapshot")
    assert f"Repository {env.namespace}/{REPOSITORY} holds no snapshot" in condition["message"]


def test_the_users_command_failing_fails_the_drill(env: RestoreEnv, kubectl: Any) -> None:
    """With a command: the verify step restores and checks, records nothing yet and leaves its verdict; the
    report step reads the pod's status, where the command container (as the kubelet reports it) exited 3
    with a termination message: the drill fails with CommandFailed naming the container, its image, the
    exit code and the message, after the snapshot it had verified."""
    write_tree(env.data, "cmd")
    snapshot = env.backup("host-0", env.data)
    kubeconfig = grant(env)

    verify = drill(env, kubeconfig, step=agent_contract.DRILL_STEP_VERIFY)

    assert verify.code == 0, verify.log[-4000:]
    assert drill_condition(env) is None
    pod = "stash-drill-app-backup-y2"
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": env.namespace},
            "spec": {
                # no scheduler takes it, so no kubelet (the session's node) rewrites the status set below
                "schedulerName": "stashlet-test-unscheduled",
                "containers": [
                    {"name": agent_contract.DRILL_COMMAND_CONTAINER, "image": "busybox:1.36"},
                    {"name": "drill-report", "image": "stashlet-agent:dev"},
                ],
            },
        }
    )
    terminated = {
        "name": agent_contract.DRILL_COMMAND_CONTAINER,
        "image": "busybox:1.36",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "db.sql is empty"}},
    }
    patch = json.dumps({"status": {"containerStatuses": [terminated]}})
    kubectl("patch", "pod", pod, "-n", env.namespace, "--subresource=status", "--type=merge", "-p", patch)

    report = drill(env, kubeconfig, step=agent_contract.DRILL_STEP_REPORT, pod=pod)

    assert report.code == 1, report.log[-4000:]
    condition = drill_condition(env)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "CommandFailed")
    message = condition["message"]
    assert "container drill-command (image busybox:1.36) exited with 3 (Error): db.sql is empty" in message
    assert snapshot[:8] in message
    assert [(t, r) for t, r, _, _ in drill_events(env)] == [("Warning", "RestoreDrillFailed")]
