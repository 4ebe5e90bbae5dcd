"""The restore Jobs of a RestoreSession that restores through Jobs: pure.

One Job per host (:func:`stashlet.api.restore_jobs.ordinals`): ``stash-restore-<rs>`` for a named
claim or a session without replicas, ``stash-restore-<rs>-<ordinal>`` per ordinal otherwise (cut to 63
characters with a hash when longer). Each runs ``stashlet-agent restore-job --invoker-kind=RestoreSession
--invoker-name=<rs> [--target-kind=PersistentVolumeClaim --target-name=<claim>] --tmp-dir=/stash-tmp ...``
(with ``POD_ORDINAL=<ordinal>`` in its env when the session has replicas, so it plays ``host-<ordinal>``)
as the ServiceAccount :func:`stashlet.operator.injection.restore_rbac.job_service_account` names, as root
like ``stash-init`` (a restore sets owners back), with:

- the claims: a named claim as volume ``stash-volume`` at Stash's TARGET_MOUNT_PATH
  (:func:`stashlet.api.restore_jobs.mount_paths`); the ordinal's claims from the templates, each as the
  volume its template is named by without the ordinal, mounted as ``spec.target.volumeMounts`` say
  (writable);
- an emptyDir at ``/stash-tmp`` (``spec.tempDir``) and a local backend's volume when the Repository uses
  one;
- the ``runtimeSettings`` a Job takes (container: ``env``, ``envFrom``, ``resources``,
  ``securityContext``, ``imagePullPolicy``; pod: scheduling, ``securityContext``,
  ``imagePullSecrets``, ...);
- ``backoffLimit: 0``: a restore is not retried in place; its host's Failed entry fails the session;
- ``activeDeadlineSeconds`` from ``spec.timeOut`` (plus a grace, so the agent reports its own timeout
  first): a Job whose pod never starts or hangs fails, and :mod:`.job_failures` fails its host.

The Jobs are owned by the session (they go with it) and labelled with it; no TTL, so a finished Job is
not made again while its session lives.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import agent_contract, names, restore_jobs
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.field_support import JOB_POD_COPIED, Runner, container_fields
from stashlet.operator.core.job_outcome import active_deadline
from stashlet.operator.core.objects import fit_name, managed_labels, owner_reference
from stashlet.operator.injection import restore_rbac
from stashlet.operator.injection.agent_container import (
    agent_args,
    agent_container,
    agent_storage,
    copy_fields,
    default_security_context,
)
from stashlet.operator.settings import OperatorSettings

LOCAL_BACKEND_VOLUME = "stash-local"


def job_name(rs: RestoreSession, ordinal: int | None) -> str:
    """``stash-restore-<rs>[-<ordinal>]``, cut to 63 characters (a Job's name becomes a label value)."""
    suffix = "" if ordinal is None else f"-{ordinal}"
    return fit_name(f"{names.RESTORE_JOB_PREFIX}{rs.metadata.name}{suffix}")


def claim_volumes(
    rs: RestoreSession, ordinal: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The claims of one Job as pod volumes, and their mounts in the agent container."""
    target = rs.spec.target
    if restore_jobs.names_claim(rs):
        claim = target.ref.name if target is not None and target.ref is not None else ""
        volume = {"name": names.TARGET_VOLUME, "persistentVolumeClaim": {"claimName": claim}}
        mount = {"name": names.TARGET_VOLUME, "mountPath": restore_jobs.mount_paths(rs)[0]}
        return [volume], [mount]
    volumes = []
    for template in restore_jobs.claim_templates(rs):
        template_name = str((template.get("metadata") or {}).get("name") or "")
        claim = restore_jobs.claim_name(template_name, ordinal)
        volumes.append(
            {"name": restore_jobs.volume_name(template_name), "persistentVolumeClaim": {"claimName": claim}}
        )
    mounts = []
    for volume_mount in target.volume_mounts or [] if target is not None else []:
        entry = volume_mount.to_dict()
        entry.pop("readOnly", None)  # the restore writes into the claim
        mounts.append(entry)
    return volumes, mounts


def build_job(
    rs: RestoreSession, ordinal: int | None, repository: Repository | None, settings: OperatorSettings
) -> dict[str, Any]:
    """The restore Job of ``ordinal`` (None: the session's one Job) for ``rs`` (module docstring)."""
    labels = {**managed_labels(rs), names.LABEL_RESTORE_SESSION: rs.metadata.name or ""}
    target = rs.spec.target
    claim_target = (
        (names.KIND_PERSISTENT_VOLUME_CLAIM, target.ref.name or "")
        if restore_jobs.names_claim(rs) and target is not None and target.ref is not None
        else ("", "")
    )
    own_volumes, own_mounts = agent_storage(
        rs.spec.temp_dir, repository, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME
    )
    volumes, mounts = claim_volumes(rs, ordinal)
    runtime = rs.spec.runtime_settings
    container_settings = (runtime.container if runtime else None) or {}
    pod_settings = (runtime.pod if runtime else None) or {}
    container = agent_container(
        names.RESTORE_JOB_CONTAINER,
        agent_args(agent_contract.MODE_RESTORE_JOB, rs, claim_target, settings),
        mounts + own_mounts,
        container_settings,
        container_fields(Runner.JOB),
        settings,
    )
    if ordinal is not None:
        container["env"].append({"name": agent_contract.ENV_POD_ORDINAL, "value": str(ordinal)})
    default_security_context(container)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": restore_rbac.job_service_account(rs),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes + own_volumes,
    }
    copy_fields(pod_spec, pod_settings, [key for key in JOB_POD_COPIED if key != "serviceAccountName"])
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    deadline = active_deadline(rs.spec.time_out)
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(rs, ordinal),
            "namespace": rs.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(rs, block_owner_deletion=False)],
        },
        "spec": job_spec,
    }


def jobs(
    rs: RestoreSession, repository: Repository | None, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """Every restore Job of ``rs``, one per host."""
    return [build_job(rs, ordinal, repository, settings) for ordinal in restore_jobs.ordinals(rs)]


def job_hosts(rs: RestoreSession) -> dict[str, str]:
    """Each Job's name, by the host it plays (as the agent names it, with the alias)."""
    alias = (rs.spec.target.alias if rs.spec.target is not None else None) or None
    return {
        restore_jobs.job_host(alias, ordinal): job_name(rs, ordinal) for ordinal in restore_jobs.ordinals(rs)
    }
