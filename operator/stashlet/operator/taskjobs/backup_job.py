"""A Task configuration's task check and a session's Job: pure.

A configuration whose ``spec.task.name`` names a Task stashlet runs (:mod:`stashlet.operator.core.tasks`:
the resource dump ``kubedump-backup-0.1.0``, the stand-alone claim ``pvc-backup``) gets no sidecar: the
trigger CronJob creates its sessions as for any configuration, and for each session the operator creates
Job ``stash-backup-<session>`` (cut to 63 characters with a hash when longer) running
``stashlet-agent job --invoker-kind=BackupConfiguration --invoker-name=<bc> --backup-session=<session>
--tmp-dir=/stash-tmp ...`` as the configuration's ServiceAccount (the one its
``runtimeSettings.pod.serviceAccountName`` names, else the one stashlet makes:
:mod:`stashlet.operator.injection.job_rbac`), with an emptyDir
at ``/stash-tmp`` (``spec.tempDir``), a local backend's volume when the Repository uses one, the
``runtimeSettings`` (container: ``env``, ``envFrom``, ``resources``, ``securityContext``; pod: scheduling,
``securityContext``, ``imagePullSecrets``, ...), ``backoffLimit: 0`` (a backup is never retried in place),
``activeDeadlineSeconds`` from ``spec.timeOut`` (plus a grace: the agent reports its own timeout first;
:func:`~stashlet.operator.core.job_outcome.active_deadline`) and ``ttlSecondsAfterFinished``
(``--job-ttl-seconds``) so it is deleted after it ends. The Job is owned by its session, so it also goes
when the session is pruned.

A ``pvc-backup`` Job also mounts the claim (read-only, volume ``stash-volume``) at Stash's
TARGET_MOUNT_PATH (``/stash-data``, or ``spec.target.volumeMounts[0].mountPath``), runs as root like the
sidecar (a claim's files are read whatever their owners and modes; ``runtimeSettings.container
.securityContext`` laid over it), and may be pinned to the node where the claim is already mounted
(:mod:`~stashlet.operator.taskjobs.claim_access`).

Any other task is Invalid (named), and so is a target the Task cannot take: for the dump, a kind without a
name, an object other than a Namespace without ``apiVersion``; for ``pvc-backup``, anything but a
``v1`` PersistentVolumeClaim in the configuration's namespace.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import TargetRef
from stashlet.api.repository import Repository
from stashlet.operator.core.field_support import JOB_POD_COPIED, Runner, container_fields
from stashlet.operator.core.job_outcome import active_deadline
from stashlet.operator.core.objects import MAX_NAME, fit_name, managed_labels, owner_reference
from stashlet.operator.core.tasks import TaskKind, task_kind
from stashlet.operator.injection import job_rbac
from stashlet.operator.injection.agent_container import (
    agent_args,
    agent_container,
    agent_storage,
    copy_fields,
    default_security_context,
)
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs.claim_access import pin_to_node

JOB_PREFIX = "stash-backup-"
JOB_CONTAINER = "stash"
LOCAL_BACKEND_VOLUME = "stash-local"
CLAIM_API_VERSION = "v1"


def runs_as_job(bc: BackupConfiguration) -> bool:
    """True when ``bc``'s sessions run as Jobs: it names a Task stashlet runs."""
    return task_kind(bc) is not None


def claim_name(bc: BackupConfiguration) -> str | None:
    """The PersistentVolumeClaim a ``pvc-backup`` configuration backs up, or None (another task, or a
    target that is not a claim)."""
    ref = bc.spec.target.ref if bc.spec.target else None
    if task_kind(bc) != TaskKind.PVC_BACKUP or ref is None or not is_claim(ref):
        return None
    return ref.name or None


def is_claim(ref: TargetRef) -> bool:
    """True when ``ref`` is a (core ``v1``) PersistentVolumeClaim."""
    return ref.kind == names.KIND_PERSISTENT_VOLUME_CLAIM and (ref.api_version or "v1") == CLAIM_API_VERSION


def mount_path(bc: BackupConfiguration) -> str:
    """Where the Job mounts the claim (Stash's TARGET_MOUNT_PATH)."""
    mounts = bc.spec.target.volume_mounts if bc.spec.target else None
    return names.target_mount_path([m.mount_path for m in mounts or []])


def task_problems(bc: BackupConfiguration) -> list[str]:
    """What keeps a Task configuration from running as a Job, each naming the field."""
    task = bc.spec.task
    if task is None or not task.name:
        return []
    kind = task_kind(bc)
    if kind is None:
        known = ", ".join(sorted(names.KUBEDUMP_TASKS | names.PVC_BACKUP_TASKS))
        return [
            f"spec.task.name: task {task.name!r} is not supported: stashlet runs the resource dump and "
            f"the stand-alone PersistentVolumeClaim backup ({known})"
        ]
    ref = bc.spec.target.ref if bc.spec.target else None
    if kind == TaskKind.PVC_BACKUP:
        return _claim_problems(bc, ref)
    if ref is None or not (ref.kind or ref.name):
        return []
    if not ref.kind or not ref.name:
        return ["spec.target.ref: the dump target needs both kind and name (no target dumps the cluster)"]
    if ref.kind != "Namespace" and not ref.api_version:
        return [f"spec.target.ref.apiVersion: required for kind {ref.kind}"]
    return []


def _claim_problems(bc: BackupConfiguration, ref: TargetRef | None) -> list[str]:
    task = bc.spec.task.name if bc.spec.task else ""
    if ref is None or not ref.kind or not ref.name:
        return [
            f"spec.target.ref: task {task} backs up a PersistentVolumeClaim: its kind and name are required"
        ]
    if ref.kind != names.KIND_PERSISTENT_VOLUME_CLAIM:
        return [
            f"spec.target.ref.kind: task {task} backs up a PersistentVolumeClaim, not a {ref.kind} "
            "(a workload's volumes are backed up by the sidecar, without spec.task)"
        ]
    problems = []
    if bc.spec.task and bc.spec.task.params:
        problems.append(f"spec.task.params: task {task} takes no params (its Job backs up spec.target.paths)")
    if not is_claim(ref):
        problems.append(f"spec.target.ref.apiVersion: {ref.api_version} is not supported; use v1")
    if ref.namespace and ref.namespace != bc.metadata.namespace:
        problems.append(
            f"spec.target.ref.namespace: the claim must be in the configuration's namespace "
            f"{bc.metadata.namespace}, not {ref.namespace}"
        )
    if mount_path(bc).rstrip("/") == names.TMP_MOUNT_PATH:
        problems.append(
            f"spec.target.volumeMounts[0].mountPath: {names.TMP_MOUNT_PATH} is the job's temporary directory"
        )
    return problems


def job_name(session: str) -> str:
    """``stash-backup-<session>``, cut to 63 characters (a Job's name becomes a label value)."""
    return fit_name(f"{JOB_PREFIX}{session}")


def build_job(
    bc: BackupConfiguration,
    session: BackupSession,
    repository: Repository | None,
    settings: OperatorSettings,
    *,
    node: str | None = None,
) -> dict[str, Any]:
    """The Job that runs ``session`` of ``bc`` (module docstring); pinned to ``node`` when given."""
    name = session.metadata.name or ""
    labels = managed_labels(bc)
    if len(name) <= MAX_NAME:
        labels[names.LABEL_BACKUP_SESSION] = name
    volumes, mounts = agent_storage(bc.spec.temp_dir, repository, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME)
    claim = claim_name(bc)
    if claim is not None:
        volumes.append(
            {"name": names.TARGET_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": names.TARGET_VOLUME, "mountPath": mount_path(bc), "readOnly": True})
    runtime = bc.spec.runtime_settings
    container_settings = (runtime.container if runtime else None) or {}
    pod_settings = (runtime.pod if runtime else None) or {}
    container = agent_container(
        JOB_CONTAINER,
        agent_args(agent_contract.MODE_JOB, bc, ("", ""), settings, name),
        mounts,
        container_settings,
        container_fields(Runner.JOB),
        settings,
    )
    if claim is not None:
        default_security_context(container)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": job_rbac.service_account_name(bc),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    copy_fields(pod_spec, pod_settings, JOB_POD_COPIED)
    if node is not None:
        pin_to_node(pod_spec, node)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    deadline = active_deadline(bc.spec.time_out)
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": bc.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(session, block_owner_deletion=False)],
        },
        "spec": job_spec,
    }
