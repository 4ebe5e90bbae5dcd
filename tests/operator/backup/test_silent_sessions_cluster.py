"""No silent session, on the real control plane and node: a session whose invoker is missing, one whose
workload is scaled to zero, one whose Job's image cannot be pulled, and Jobs that run past ``spec.timeOut``
end Failed saying why, with Warning events and (where the operator has a Pushgateway) the failure metric."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.request
import uuid
from typing import Any

import pytest
from tests.operator.conftest import Kubectl, OperatorRunner
from tests.polling import eventually

pytestmark = pytest.mark.cluster

MISSING_IMAGE = "stashlet/agent-that-does-not-exist:0"


def session(namespace: str, name: str, invoker: str, kind: str = "BackupConfiguration") -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": kind, "name": invoker}},
    }


async def ended(akubectl: Kubectl, namespace: str, name: str, *, within: float = 60) -> dict[str, Any]:
    """The session once it has a final phase, with its BackupExecutorEnsured condition at hand."""

    async def look() -> dict[str, Any] | None:
        obj = await akubectl.get("backupsession", namespace, name)
        phase = ((obj or {}).get("status") or {}).get("phase")
        return obj if phase in ("Failed", "Skipped", "Succeeded") else None

    found: dict[str, Any] = await eventually(look, timeout=within, what=f"session {name} to end")
    return found


def executor(obj: dict[str, Any]) -> dict[str, Any]:
    [found] = [c for c in obj["status"].get("conditions") or [] if c["type"] == "BackupExecutorEnsured"]
    return dict(found)


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def gateway_lines(url: str, job: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - the test's gateway
        text = response.read().decode()
    return [line for line in text.splitlines() if f'job="{job}"' in line and not line.startswith("#")]


async def pushed_zero(url: str, job: str, gauge: str) -> list[str]:
    """The lines of ``gauge`` (``backup_session_success``...) under ``job`` on the gateway at ``url``, once
    there, one per prefix (``stash_``, ``stash_appscode_com_``), each 0."""

    def lines() -> list[str] | None:
        found = [
            line
            for line in gateway_lines(url, job)
            for prefix in ("stash", "stash_appscode_com")
            if line.startswith(f"{prefix}_{gauge}{{")
        ]
        return found or None

    found: list[str] = await eventually(lines, timeout=15, what=f"{gauge} under {job} on the gateway")
    assert len(found) == 2 and all(line.endswith(" 0") for line in found), found
    return found


async def test_a_session_whose_invoker_is_missing_fails_naming_it(
    operator: OperatorRunner, akubectl: Kubectl, namespace: str
) -> None:
    """A session naming a BackupConfiguration that does not exist ends Failed (InvokerNotFound) after the
    grace for one applied before its configuration; one of a kind stashlet does not run (BackupBatch)
    ends Failed at once (InvokerKindNotSupported). Each gets a Warning event naming the invoker."""
    await operator.start(namespace)
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            session(namespace, "ghost-1", "ghost"),
            session(namespace, "batch-1", "nightly", kind="BackupBatch"),
        ],
    )
    batch = await ended(akubectl, namespace, "batch-1", within=10)
    assert batch["status"]["phase"] == "Failed"
    assert executor(batch)["reason"] == "InvokerKindNotSupported"
    assert "not of a BackupBatch (nightly)" in executor(batch)["message"]

    ghost = await ended(akubectl, namespace, "ghost-1", within=40)
    assert ghost["status"]["phase"] == "Failed"
    found = executor(ghost)
    assert (found["status"], found["reason"]) == ("False", "InvokerNotFound")
    expected = f"spec.invoker.name: BackupConfiguration {namespace}/ghost does not exist"
    assert expected in found["message"]
    await akubectl.event(
        namespace,
        "ghost-1",
        lambda e: e["type"] == "Warning" and e["reason"] == "InvokerNotFound" and expected in e["message"],
        what="the Warning event on the session",
    )


async def test_a_workload_scaled_to_zero_fails_its_session_at_the_deadline_with_the_metric(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str, pushgateway: str
) -> None:
    """A Deployment with zero replicas: its configuration is Ready, but no sidecar runs. With the
    configuration's annotation pickup-deadline 3s the session ends Failed WorkloadScaledToZero (not before
    the deadline), with a Warning event on the configuration and on the session, and
    stash_backup_session_success 0 on the Pushgateway under the agent's job."""
    bc_name = f"zero-{uuid.uuid4().hex[:6]}"
    workload = make.deployment(namespace=namespace)
    workload["spec"]["replicas"] = 0
    bc = make.in_namespace(make.backup_configuration(name=bc_name), namespace)
    bc["metadata"]["annotations"] = {"stash.appscode.com/pickup-deadline": "3s"}
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.seed_storage_secret(namespace),
            make.in_namespace(make.repository(), namespace),
            workload,
            bc,
        ],
    )
    await operator.start(namespace, pushgateway_url=pushgateway)
    await akubectl.wait_phase(namespace, bc_name, "Ready")
    await akubectl("apply", "-f", "-", input_obj=session(namespace, f"{bc_name}-1", bc_name))

    obj = await ended(akubectl, namespace, f"{bc_name}-1", within=30)
    assert obj["status"]["phase"] == "Failed"
    found = executor(obj)
    assert (found["status"], found["reason"]) == ("False", "WorkloadScaledToZero")
    assert f"Deployment {namespace}/stash-demo is scaled to zero" in found["message"]
    assert obj["status"]["sessionDuration"]
    waited = stamp(found["lastTransitionTime"]) - stamp(obj["metadata"]["creationTimestamp"])
    assert waited >= 3, f"failed {waited}s after creation, before the 3s deadline"
    await akubectl.event(
        namespace,
        bc_name,
        lambda e: (
            e["type"] == "Warning"
            and e["reason"] == "WorkloadScaledToZero"
            and f"BackupSession {bc_name}-1 failed" in e["message"]
        ),
        what="the Warning event on the configuration",
    )
    await akubectl.event(
        namespace,
        f"{bc_name}-1",
        lambda e: e["type"] == "Warning" and e["reason"] == "WorkloadScaledToZero",
        what="the Warning event on the session",
    )
    job = f"backupconfiguration-{namespace}-{bc_name}"
    for line in await pushed_zero(pushgateway, job, "backup_session_success"):
        assert f'invoker_name="{bc_name}"' in line
        assert 'repository="gcs-repo"' in line


async def dump_config(akubectl: Kubectl, make: Any, namespace: str, name: str, **spec: Any) -> None:
    """A resource-dump configuration of the namespace, Ready; its Jobs bind to a ClusterRole of the test's."""
    bc = make.in_namespace(
        make.backup_configuration(name=name, task={"name": "kubedump-backup-0.1.0"}, **spec), namespace
    )
    bc["spec"]["target"] = {"ref": {"apiVersion": "v1", "kind": "Namespace", "name": namespace}}
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[make.seed_storage_secret(namespace), make.in_namespace(make.repository(), namespace), bc],
    )


@pytest.fixture
async def dump_role(akubectl: Kubectl, namespace: str) -> Any:
    """A read-only ClusterRole the kubedump Jobs may be bound to, named for the test."""
    name = f"dump-{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}],
    }
    await akubectl("apply", "-f", "-", input_obj=role)
    yield name
    await akubectl("delete", "clusterrole", name, "--ignore-not-found", check=False)


async def test_a_jobs_pod_that_cannot_pull_its_image_fails_the_session_naming_it(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str, dump_role: str
) -> None:
    """The resource dump's Job runs an image that does not exist: at the operator's pickup deadline (5 s)
    the session ends Failed with the pod's waiting reason (ErrImagePull or ImagePullBackOff), naming the Job
    and its pod; BackupExecutorEnsured, True when the Job was made, is False now."""
    await dump_config(akubectl, make, namespace, "dump")
    await operator.start(
        namespace, agent_image=MISSING_IMAGE, kubedump_cluster_role=dump_role, pickup_deadline_seconds=5
    )
    await akubectl.wait_phase(namespace, "dump", "Ready")
    await akubectl("apply", "-f", "-", input_obj=session(namespace, "dump-1", "dump"))

    obj = await ended(akubectl, namespace, "dump-1", within=60)
    assert obj["status"]["phase"] == "Failed"
    found = executor(obj)
    assert found["reason"] in ("ErrImagePull", "ImagePullBackOff"), found
    assert f"of Job {namespace}/stash-backup-dump-1 does not run: container stash waiting" in found["message"]
    await akubectl.event(
        namespace,
        "dump",
        lambda e: e["reason"] == found["reason"],
        what="the Warning event on the configuration",
    )


async def test_a_job_past_its_timeout_fails_its_session_with_the_jobs_reason(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str, dump_role: str
) -> None:
    """timeOut 1s: the Job gets activeDeadlineSeconds 31 (the agent's own timeout goes first); its pod
    never starts, Kubernetes fails the Job (DeadlineExceeded) and the operator, watching Jobs, fails the
    session with that reason well before its pickup deadline (10 minutes)."""
    await dump_config(akubectl, make, namespace, "late", timeOut="1s")
    await operator.start(
        namespace, agent_image=MISSING_IMAGE, kubedump_cluster_role=dump_role, pickup_deadline_seconds=600
    )
    await akubectl.wait_phase(namespace, "late", "Ready")
    await akubectl("apply", "-f", "-", input_obj=session(namespace, "late-1", "late"))

    job = await eventually(
        lambda: akubectl.get("job", namespace, "stash-backup-late-1"), timeout=30, what="the session's Job"
    )
    assert job["spec"]["activeDeadlineSeconds"] == 31
    obj = await ended(akubectl, namespace, "late-1", within=90)
    assert obj["status"]["phase"] == "Failed"
    found = executor(obj)
    assert found["reason"] == "DeadlineExceeded"
    assert f"Job {namespace}/stash-backup-late-1 failed: DeadlineExceeded" in found["message"]


async def test_a_restore_job_past_its_timeout_fails_the_restore(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str, pushgateway: str
) -> None:
    """A pvc-restore RestoreSession with timeOut 1s whose Job's image cannot be pulled: the Job fails
    (DeadlineExceeded), its host host-0 gets a Failed entry naming the Job, the session ends Failed with a
    Warning event, and stash_restore_session_success 0 reaches the Pushgateway."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    rs = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "rs", "namespace": namespace},
        "spec": {
            "repository": {"name": "gcs-repo"},
            "task": {"name": "pvc-restore"},
            "timeOut": "1s",
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "rules": [{"snapshots": ["latest"]}],
            },
        },
    }
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.seed_storage_secret(namespace),
            make.in_namespace(make.repository(), namespace),
            claim,
            rs,
        ],
    )
    await operator.start(namespace, agent_image=MISSING_IMAGE, pushgateway_url=pushgateway)

    async def failed() -> dict[str, Any] | None:
        obj = await akubectl.get("restoresession", namespace, "rs")
        return obj if ((obj or {}).get("status") or {}).get("phase") == "Failed" else None

    obj = await eventually(failed, timeout=90, what="the restore to fail")
    [host] = obj["status"]["stats"]
    assert (host["hostname"], host["phase"]) == ("host-0", "Failed")
    assert host["error"].startswith(f"DeadlineExceeded: Job {namespace}/stash-restore-rs failed")
    await akubectl.event(
        namespace,
        "rs",
        lambda e: e["type"] == "Warning" and e["reason"] == "DeadlineExceeded",
        what="the event",
    )
    await pushed_zero(pushgateway, f"restoresession-{namespace}-rs", "restore_session_success")


async def test_an_operator_started_late_ends_overdue_sessions_at_once_and_skips_a_paused_ones(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str
) -> None:
    """Sessions made while no operator ran, already past their deadline (2 s) when it starts: the one of a
    Deployment scaled to zero ends Failed at once (no new wait), the one of a paused configuration ends
    Skipped with the agent's Warning event (BackupSessionSkipped), never Failed."""
    zero = make.deployment(name="zero", namespace=namespace)
    zero["spec"]["replicas"] = 0
    paused = make.in_namespace(
        make.backup_configuration(name="paused", target="zero", paused=True), namespace
    )
    active = make.in_namespace(make.backup_configuration(name="active", target="zero"), namespace)
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.seed_storage_secret(namespace),
            make.in_namespace(make.repository(), namespace),
            zero,
            paused,
            active,
            session(namespace, "paused-1", "paused"),
            session(namespace, "active-1", "active"),
        ],
    )
    await asyncio.sleep(2.5)  # real time has to pass: both sessions are overdue before the operator starts
    started = time.monotonic()
    await operator.start(namespace, pickup_deadline_seconds=2)
    failed = await ended(akubectl, namespace, "active-1", within=15)
    assert time.monotonic() - started < 10
    assert (failed["status"]["phase"], executor(failed)["reason"]) == ("Failed", "WorkloadScaledToZero")
    skipped = await ended(akubectl, namespace, "paused-1", within=15)
    assert skipped["status"]["phase"] == "Skipped"
    await akubectl.event(
        namespace,
        "paused-1",
        lambda e: e["reason"] == "BackupSessionSkipped" and e["message"] == "Backup Configuration is paused",
        what="the Skipped event",
    )


async def test_a_job_that_completed_without_its_agents_word_fails_its_session(
    operator: OperatorRunner, akubectl: Kubectl, make: Any, namespace: str
) -> None:
    """A Job of the session's (owned by it, labelled as stashlet's) completes on the node without anything
    writing the session's status: the operator, watching Jobs, fails the session at once with
    JobSucceededWithoutStatus, long before its pickup deadline."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.in_namespace(make.backup_configuration(name="quiet"), namespace),
            session(namespace, "quiet-1", "quiet"),
        ],
    )
    await operator.start(namespace, pickup_deadline_seconds=600)
    owner = await akubectl.get("backupsession", namespace, "quiet-1")
    assert owner is not None
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "quiet-job",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "stashlet"},
            "ownerReferences": [
                {
                    "apiVersion": "stash.appscode.com/v1beta1",
                    "kind": "BackupSession",
                    "name": "quiet-1",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "stash",
                            "image": "busybox",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["true"],
                        }
                    ],
                }
            },
        },
    }
    await akubectl("apply", "-f", "-", input_obj=job)
    obj = await ended(akubectl, namespace, "quiet-1", within=90)
    assert obj["status"]["phase"] == "Failed"
    found = executor(obj)
    assert (found["reason"], found["message"]) == (
        "JobSucceededWithoutStatus",
        f"Job {namespace}/quiet-job completed but its agent did not record the end",
    )
