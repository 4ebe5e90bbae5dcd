"""Kubedump BackupConfigurations (resource-YAML backups): their task check and a session's Job: pure.

A configuration whose ``spec.task.name`` is one of :data:`stashlet.api.names.KUBEDUMP_TASKS` gets no
sidecar: the trigger CronJob creates its sessions as for any configuration, and for each session the
operator creates Job ``stash-backup-<session>`` (cut to 63 characters with a hash when longer) running
``stashlet-agent job --invoker-kind=BackupConfiguration --invoker-name=<bc> --backup-session=<session>
--tmp-dir=/stash-tmp ...`` as the configuration's ServiceAccount (the one its
``runtimeSettings.pod.serviceAccountName`` names, else the one stashlet makes:
:mod:`stashlet.operator.injection.kubedump_rbac`), with an emptyDir
at ``/stash-tmp`` (``spec.tempDir``), a local backend's volume when the Repository uses one, the
``runtimeSettings`` (container: ``env``, ``envFrom``, ``resources``, ``securityContext``; pod: scheduling,
``securityContext``, ``imagePullSecrets``, ...), ``backoffLimit: 0`` (a backup is never retried in place)
and ``ttlSecondsAfterFinished`` (``--job-ttl-seconds``) so it is deleted after it ends. The Job is owned
by its session, so it also goes when the session is pruned.

Any other task is Invalid (named), and so is a target the dump cannot read (a kind without a name, an
object other than a Namespace without ``apiVersion``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.repository import Repository
from stashlet.operator.core.field_support import JOB_POD_COPIED, Runner, container_fields
from stashlet.operator.core.objects import managed_labels, owner_reference
from stashlet.operator.injection import kubedump_rbac
from stashlet.operator.injection.agent_container import (
    agent_args,
    agent_container,
    agent_storage,
    copy_fields,
)
from stashlet.operator.settings import OperatorSettings

JOB_PREFIX = "stash-backup-"
JOB_CONTAINER = "stash"
MAX_NAME = 63
LOCAL_BACKEND_VOLUME = "stash-local"


def is_kubedump(bc: BackupConfiguration) -> bool:
    """True when ``bc`` names the resource-dump task."""
    task = bc.spec.task
    return task is not None and (task.name or "") in names.KUBEDUMP_TASKS


def task_problems(bc: BackupConfiguration) -> list[str]:
    """What keeps a Task configuration from running as a kubedump Job, each naming the field."""
    task = bc.spec.task
    if task is None or not task.name:
        return []
    if task.name not in names.KUBEDUMP_TASKS:
        known = ", ".join(sorted(names.KUBEDUMP_TASKS))
        return [
            f"spec.task.name: task {task.name!r} is not supported: "
            f"stashlet runs only the resource dump ({known})"
        ]
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is None or not (ref.kind or ref.name):
        return []
    if not ref.kind or not ref.name:
        return ["spec.target.ref: the dump target needs both kind and name (no target dumps the cluster)"]
    if ref.kind != "Namespace" and not ref.api_version:
        return [f"spec.target.ref.apiVersion: required for kind {ref.kind}"]
    return []


def job_name(session: str) -> str:
    """``stash-backup-<session>``, cut to 63 characters (a Job's name becomes a label value)."""
    name = f"{JOB_PREFIX}{session}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(session.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - len(digest) - 1].rstrip('-.')}-{digest}"


def build_job(
    bc: BackupConfiguration, session: BackupSession, repository: Repository | None, settings: OperatorSettings
) -> dict[str, Any]:
    """The Job that runs ``session`` of ``bc`` (module docstring)."""
    name = session.metadata.name or ""
    labels = managed_labels(bc)
    if len(name) <= MAX_NAME:
        labels[names.LABEL_BACKUP_SESSION] = name
    volumes, mounts = agent_storage(bc.spec.temp_dir, repository, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME)
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
    pod_spec: dict[str, Any] = {
        "serviceAccountName": kubedump_rbac.service_account_name(bc),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    copy_fields(pod_spec, pod_settings, JOB_POD_COPIED)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": bc.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(session, block_owner_deletion=False)],
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
