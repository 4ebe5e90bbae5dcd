"""``stashlet-agent restore-job`` (a restore Job: pvc-restore into a named claim, volumeClaimTemplates into
new claims) end to end: real API server, real restic; the agent runs as a process with the Jobs'
ServiceAccount token and exactly the RBAC the operator grants it (:func:`restore_rbac.job_rbac`), each
claim bound at its mount path in a private mount namespace, as the kubelet would mount it in the Job's pod.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.agent.restore.test_restore import (
    REPOSITORY,
    SECRET,
    RestoreEnv,
    Run,
    conditions,
    env,
    finish,
    in_mounts,
    manifest,
    wipe,
    write_tree,
)

from stashlet.api import agent_contract, names
from stashlet.api.agent_contract import AgentInvocation
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.injection import restore_rbac
from stashlet.operator.injection.rbac import RepositoryAccess

__all__ = ["env"]  # the fixture, shared with the init-container's tests

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


def grant_job(environment: RestoreEnv, session: dict[str, Any]) -> Path:
    """What the operator makes for the session's Jobs (ServiceAccount, Role, RoleBinding); a kubeconfig
    with the account's token."""
    rs = RestoreSession.from_dict(session)
    objs = restore_rbac.job_rbac(rs, RepositoryAccess(environment.namespace, REPOSITORY, SECRET))
    for obj in objs:
        obj["metadata"].pop("ownerReferences", None)  # the session is applied without a uid here
    environment.apply(*objs)
    return environment.kubeconfig_for(environment.namespace, restore_rbac.job_service_account(rs))


def start_job(
    environment: RestoreEnv,
    session: str,
    pod: str,
    kubeconfig: Path,
    *,
    claim: str = "",
    ordinal: int | None = None,
    binds: Mapping[Path, Path],
) -> tuple[subprocess.Popen[bytes], Path]:
    """One restore Job's agent, as the Job's container runs it."""
    tmp_dir = environment.tmp_path / f"stash-tmp-{pod}"
    tmp_dir.mkdir(exist_ok=True)
    invocation = AgentInvocation(
        mode=agent_contract.MODE_RESTORE_JOB,
        invoker_kind="RestoreSession",
        invoker_name=session,
        target_kind=names.KIND_PERSISTENT_VOLUME_CLAIM if claim else "",
        target_name=claim,
        status_port=0,
        tmp_dir=str(tmp_dir),
        log_level="debug",
    )
    argv = in_mounts([sys.executable, "-m", "stashlet.agent.cli", *invocation.args()], binds)
    process_env = environment.env(pod, kubeconfig)
    if ordinal is not None:
        process_env[agent_contract.ENV_POD_ORDINAL] = str(ordinal)
    log = environment.tmp_path / f"restore-job-{pod}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=process_env)
    return process, log


def restore_session(environment: RestoreEnv, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "rs", "namespace": environment.namespace},
        "spec": {"repository": {"name": REPOSITORY}, "target": target, **spec},
    }


def test_pvc_restore_puts_the_claims_data_back_as_host_0(env: RestoreEnv) -> None:
    """Stash's stand-alone PVC restore: the claim backed up as host-0 is wiped, and the Job (claim mounted
    where volumeMounts[0] says, else /stash-data) restores it byte for byte; the session is Succeeded
    with one host, RestoreCompleted and the "RestoreSession Controller" events; no Lease is taken."""
    claim_dir = env.data
    write_tree(claim_dir, "claim")
    before = manifest(claim_dir)
    env.backup("host-0", claim_dir)
    wipe(claim_dir)
    target = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"},
        "volumeMounts": [{"name": "data", "mountPath": str(claim_dir)}],
        "rules": [{"snapshots": ["latest"]}],
    }
    session = restore_session(env, target, task={"name": "pvc-restore"})
    env.apply(session)
    kubeconfig = grant_job(env, session)

    process, log = start_job(env, "rs", "stash-restore-rs-x1", kubeconfig, claim="nfs-pvc", binds={})
    run = finish(process, log)

    assert run.code == 0, run.log[-4000:]
    assert manifest(claim_dir) == before
    status = env.session("rs")["status"]
    assert (status["phase"], status["totalHosts"]) == ("Succeeded", 1)
    assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [("host-0", "Succeeded")]
    assert conditions(status)["RestoreCompleted"] == ("True", "PostRestoreTasksExecuted")
    assert sorted((e["reason"], e["source"]["component"]) for e in env.events("rs")) == [
        ("Host Restore Succeeded", "RestoreSession Controller"),
        ("RestoreSessionSucceeded", "RestoreSession Controller"),
    ]
    assert env.get("leases")["items"] == []


def test_clone_jobs_each_restore_their_ordinals_host_into_their_own_claims(env: RestoreEnv) -> None:
    """volumeClaimTemplates with replicas 2: the Jobs of ordinals 0 and 1 run at once, each with its own
    claim at the same mount path, and restore host-0's and host-1's data (POD_ORDINAL names the host);
    the session ends Succeeded with two hosts."""
    volumes = [env.tmp_path / f"claim-{i}" for i in range(2)]
    expected = []
    for i, volume in enumerate(volumes):
        volume.mkdir()
        write_tree(volume, f"host-{i}")
        expected.append(manifest(volume))
        env.backup(f"host-{i}", env.data, volume=volume)
        wipe(volume)
    target = {
        "replicas": 2,
        "volumeMounts": [{"name": "data", "mountPath": str(env.data)}],
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data-${POD_ORDINAL}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ],
        "rules": [{"paths": [str(env.data)]}],
    }
    session = restore_session(env, target)
    env.apply(session)
    kubeconfig = grant_job(env, session)

    started = [
        start_job(env, "rs", f"stash-restore-rs-{i}-x", kubeconfig, ordinal=i, binds={env.data: volume})
        for i, volume in enumerate(volumes)
    ]
    runs: list[Run] = [finish(process, log, timeout=180) for process, log in started]

    for i, run in enumerate(runs):
        assert run.code == 0, run.log[-4000:]
        assert manifest(volumes[i]) == expected[i], f"host-{i}"
    assert list(env.data.iterdir()) == []
    status = env.session("rs")["status"]
    assert (status["phase"], status["totalHosts"]) == ("Succeeded", 2)
    assert sorted((s["hostname"], s["phase"]) for s in status["stats"]) == [
        ("host-0", "Succeeded"),
        ("host-1", "Succeeded"),
    ]


def test_a_job_for_another_target_fails_its_host_and_says_why(env: RestoreEnv) -> None:
    """A restore Job started for a claim the session does not name restores nothing: its host is Failed
    with reason RestoreTargetMismatch, the session Failed, the exit status 1."""
    target = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"},
        "volumeMounts": [{"name": "data", "mountPath": str(env.data)}],
        "rules": [{"snapshots": ["latest"]}],
    }
    session = restore_session(env, target, task={"name": "pvc-restore"})
    env.apply(session)
    kubeconfig = grant_job(env, session)

    process, log = start_job(env, "rs", "stash-restore-rs-y", kubeconfig, claim="other", binds={})
    run = finish(process, log)

    assert run.code == 1, run.log[-4000:]
    status = env.session("rs")["status"]
    assert status["phase"] == "Failed"
    [host] = status["stats"]
    assert host["hostname"] == "host-0"
    assert host["error"].startswith("RestoreTargetMismatch: spec.target is PersistentVolumeClaim/nfs-pvc")
