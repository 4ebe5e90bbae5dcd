"""A restore drill's CronJob ``stash-drill-<bc>`` and its account's RBAC: pure.

The CronJob runs the drill on the annotation's schedule (``concurrencyPolicy: Forbid``: one drill at a
time; ``backoffLimit: 0``: a failed drill is reported, not retried in place; ``activeDeadlineSeconds``
bounds a drill that hangs). Its pod, as ServiceAccount ``stashlet-drill-<bc>``:

- without a command: one agent container ``drill`` (``stashlet-agent drill --drill-step=all``);
- with an image: the init-container ``drill`` (``--drill-step=verify``), then the user's container
  ``drill-command`` (the image, the command when given) beside the agent container ``drill-report``
  (``--drill-step=report``), which waits for it and records the verdict.

Volumes: the scratch emptyDir ``restore-drill`` at ``/restore-drill`` (the agent's and the command's),
the agent's ``/stash-tmp`` (``spec.tempDir``; the verdict passes through it, the command does not mount
it), the local backend's volume when the Repository uses one, the storage Secret of a Repository in the
configuration's namespace (agent containers only), and the account's token as a projected volume in the
agent containers only: the pod mounts no token (``automountServiceAccountToken: false``), so the user's
command sees neither the token nor the storage Secret. The agent containers run as root (the restored
owners and modes are checked, as ``stash-init`` restores them), with the ``runtimeSettings.container``
fields a Job takes laid over that; the pod takes the Job fields of ``runtimeSettings.pod`` (scheduling,
``securityContext``, ``imagePullSecrets``) except the account.

The account may get its configuration (by name), record events, get pods (its own pod's status; a lock
holder's), and read its Repository and write its status (and get the storage Secret by name when the
Repository lives in another namespace, where a second Role grants that).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Final

from stashlet.api import agent_contract, names
from stashlet.api import agent_identity as identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.operator.core.field_support import JOB_POD_COPIED, Runner, container_fields
from stashlet.operator.core.objects import fit_name, managed_labels, owner_reference
from stashlet.operator.drills.spec import DrillSpec
from stashlet.operator.injection.agent_container import (
    agent_args,
    agent_container,
    agent_storage,
    copy_fields,
    default_security_context,
)
from stashlet.operator.injection.rbac import (
    ObjectRef,
    RepositoryAccess,
    agent_grant,
    grant_refs,
    repository_rules,
    rule,
)
from stashlet.operator.settings import OperatorSettings

PREFIX: Final = "stashlet-drill-"
"""The drill account's (and its Roles') name prefix."""
CRONJOB_PREFIX: Final = "stash-drill-"
CRONJOB_NAME_LIMIT: Final = 52
"""The longest CronJob name (its Jobs' names add 11 characters)."""
LABEL_DRILL_OF: Final = "stashlet.dev/restore-drill-of"
ANNOTATION_HASH: Final = "stashlet.dev/restore-drill-hash"
AGENT_CONTAINER: Final = "drill"
REPORT_CONTAINER: Final = "drill-report"
SCRATCH_VOLUME: Final = "restore-drill"
TOKEN_VOLUME: Final = "stashlet-drill-token"  # noqa: S105 - a volume's name
SECRET_VOLUME: Final = "stashlet-drill-storage-secret"  # noqa: S105 - a volume's name
LOCAL_BACKEND_VOLUME: Final = "stash-local"
ENV_DRILL_DATA: Final = "DRILL_DATA"
DEADLINE_SECONDS: Final = 3600
TOKEN_SECONDS: Final = 7200


def cronjob_name(bc: BackupConfiguration) -> str:
    """``stash-drill-<bc>``, cut with a hash to what a CronJob's name may be."""
    return fit_name(f"{CRONJOB_PREFIX}{bc.metadata.name}", CRONJOB_NAME_LIMIT)


def account_name(bc: BackupConfiguration) -> str:
    """The drill's ServiceAccount: ``stashlet-drill-<bc>``."""
    return f"{PREFIX}{bc.metadata.name}"


def _secret_here(bc: BackupConfiguration, repository: Repository) -> str | None:
    """The storage Secret when it lives in the configuration's namespace (mounted, not read)."""
    namespace = bc.metadata.namespace or ""
    if (repository.metadata.namespace or namespace) != namespace:
        return None
    return repository.spec.backend.storage_secret_name or None


def drill_rbac(bc: BackupConfiguration, repository: Repository) -> list[dict[str, Any]]:
    """The drill's ServiceAccount, Roles and RoleBindings (module docstring)."""
    namespace = bc.metadata.namespace or ""
    access = RepositoryAccess.of(repository, namespace)
    own = [
        rule(names.GROUP, [names.BACKUP_CONFIGURATIONS], ["get"], [bc.metadata.name or ""]),
        rule("", ["events"], ["get", "create", "patch"]),
        rule("", ["pods"], ["get"]),
    ]
    read_secret = None if _secret_here(bc, repository) else access.secret
    roles = agent_grant(bc, PREFIX, account_name(bc), own, access, repository_rules(access.name, read_secret))
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": account_name(bc),
            "namespace": namespace,
            "labels": _labels(bc),
            "ownerReferences": [owner_reference(bc)],
        },
    }
    for obj in roles:
        obj["metadata"]["labels"] = _labels(bc)
    return [account, *roles]


def made_for(bc: BackupConfiguration, repository_namespace: str | None) -> list[ObjectRef]:
    """What :func:`drill_rbac` and :func:`build_cronjob` may have made (deleted when the drill goes)."""
    namespace = bc.metadata.namespace or ""
    return [
        ObjectRef("CronJob", namespace, cronjob_name(bc)),
        *grant_refs(bc, PREFIX, repository_namespace),
        ObjectRef("ServiceAccount", namespace, account_name(bc)),
    ]


def _labels(bc: BackupConfiguration) -> dict[str, str]:
    return {**managed_labels(bc), LABEL_DRILL_OF: bc.metadata.name or ""}


def _token_volume() -> dict[str, Any]:
    """The account's token and the cluster's CA, projected (for the agent containers alone)."""
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]
        },
    }


def _agent(
    bc: BackupConfiguration,
    name: str,
    step: str,
    mounts: list[dict[str, Any]],
    env: list[dict[str, Any]],
    settings: OperatorSettings,
) -> dict[str, Any]:
    runtime = bc.spec.runtime_settings
    container_settings = (runtime.container if runtime else None) or {}
    args = agent_args(agent_contract.MODE_DRILL, bc, ("", ""), settings)
    args.append(f"{agent_contract.FLAG_DRILL_STEP}={step}")
    container = agent_container(
        name, args, copy.deepcopy(mounts), container_settings, container_fields(Runner.JOB), settings
    )
    container["env"] += copy.deepcopy(env)
    default_security_context(container)
    return container


def build_cronjob(
    bc: BackupConfiguration, spec: DrillSpec, repository: Repository, settings: OperatorSettings
) -> dict[str, Any]:
    """The drill's CronJob (module docstring)."""
    namespace = bc.metadata.namespace or ""
    labels = _labels(bc)
    own_volumes, own_mounts = agent_storage(
        bc.spec.temp_dir, repository, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME
    )
    scratch_mount = {"name": SCRATCH_VOLUME, "mountPath": agent_contract.DRILL_SCRATCH_PATH}
    volumes = [*own_volumes, {"name": SCRATCH_VOLUME, "emptyDir": {}}, _token_volume()]
    mounts = [*own_mounts, scratch_mount]
    mounts.append({"name": TOKEN_VOLUME, "mountPath": identity.KUBE_TOKEN_DIR, "readOnly": True})
    env = [{"name": identity.ENV_KUBE_TOKEN_DIR, "value": identity.KUBE_TOKEN_DIR}]
    secret = _secret_here(bc, repository)
    if secret is not None:
        volumes.append({"name": SECRET_VOLUME, "secret": {"secretName": secret}})
        path = f"{identity.STORAGE_SECRETS_DIR}/{secret}"
        mounts.append({"name": SECRET_VOLUME, "mountPath": path, "readOnly": True})
        env.append({"name": identity.ENV_STORAGE_SECRETS_DIR, "value": identity.STORAGE_SECRETS_DIR})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": account_name(bc),
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "volumes": volumes,
    }
    if spec.runs_command:
        command: dict[str, Any] = {
            "name": agent_contract.DRILL_COMMAND_CONTAINER,
            "image": spec.image,
            "imagePullPolicy": settings.image_pull_policy,
            "env": [{"name": ENV_DRILL_DATA, "value": agent_contract.DRILL_SCRATCH_PATH}],
            "volumeMounts": [dict(scratch_mount)],
        }
        if spec.command is not None:
            command["command"] = list(spec.command)
        verify = agent_contract.DRILL_STEP_VERIFY
        report = agent_contract.DRILL_STEP_REPORT
        pod_spec["initContainers"] = [_agent(bc, AGENT_CONTAINER, verify, mounts, env, settings)]
        pod_spec["containers"] = [command, _agent(bc, REPORT_CONTAINER, report, mounts, env, settings)]
    else:
        step = agent_contract.DRILL_STEP_ALL
        pod_spec["containers"] = [_agent(bc, AGENT_CONTAINER, step, mounts, env, settings)]
    runtime = bc.spec.runtime_settings
    pod_settings = (runtime.pod if runtime else None) or {}
    copy_fields(pod_spec, pod_settings, [key for key in JOB_POD_COPIED if key != "serviceAccountName"])
    cron_spec = {
        "schedule": spec.schedule,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": DEADLINE_SECONDS,
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
    }
    digest = hashlib.sha256(json.dumps(cron_spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(bc),
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_HASH: digest},
            "ownerReferences": [owner_reference(bc)],
        },
        "spec": cron_spec,
    }


def merge_patch(existing: Any, desired: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``existing`` into ``desired``: every key ``existing`` has
    and ``desired`` lacks is nulled (a field the API server defaults comes back defaulted), lists and
    values are replaced whole."""
    if not isinstance(existing, dict) or not isinstance(desired, dict):
        return copy.deepcopy(desired)
    patch = {key: None for key in existing if key not in desired}
    for key, value in desired.items():
        if key not in existing or existing[key] != value:
            patch[key] = merge_patch(existing.get(key), value)
    return patch


def cronjob_patch(existing: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that brings ``existing`` to ``desired`` (the operator may patch CronJobs, not
    update them): the whole spec, our labels, hash annotation and owner."""
    meta = desired["metadata"]
    return {
        "metadata": {
            "labels": meta["labels"],
            "annotations": meta["annotations"],
            "ownerReferences": meta["ownerReferences"],
        },
        "spec": merge_patch(existing.get("spec") or {}, desired["spec"]),
    }


def cronjob_up_to_date(existing: dict[str, Any], desired: dict[str, Any]) -> bool:
    """True when ``existing`` was made from the same desired spec (its hash annotation) for the same
    configuration."""
    meta, wanted = existing.get("metadata") or {}, desired["metadata"]
    same_hash = (meta.get("annotations") or {}).get(ANNOTATION_HASH) == wanted["annotations"][ANNOTATION_HASH]
    owners = [o.get("uid") for o in meta.get("ownerReferences") or []]
    return same_hash and wanted["ownerReferences"][0]["uid"] in owners
