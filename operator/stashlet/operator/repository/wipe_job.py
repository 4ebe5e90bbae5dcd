"""``spec.wipeOut`` of a Repository: who still uses it, and the Job that wipes its backend data: pure.

A Repository with ``wipeOut: true`` carries the finalizer ``stash.appscode.com/wipe-out``. When it is
deleted while a BackupConfiguration or RestoreSession still names it (:func:`users`), nothing is wiped:
the object stays (Terminating) and says why in a Warning event, until they are gone. Then one Job,
``stashlet-wipe-<repository>``, runs ``stashlet-agent wipe`` in the Repository's namespace, as its own
ServiceAccount that may read only this Repository and its storage Secret and record events. The agent
forgets every snapshot by ID and prunes, so only the empty restic repository (its config and keys) stays.
When the Job has succeeded the finalizer goes, and with the Repository its Job, Role, binding and account
(all owned by it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.objects import fit_name
from stashlet.operator.injection.agent_container import (
    agent_args,
    agent_container,
    agent_storage,
    default_security_context,
)
from stashlet.operator.injection.rbac import role_and_binding, rule, service_account_subject
from stashlet.operator.settings import OperatorSettings

PREFIX = "stashlet-wipe-"
CONTAINER = "stash-wipe"
LOCAL_BACKEND_VOLUME = "stash-local"
BACKOFF_LIMIT = 2
CONTAINER_FIELDS = ("resources",)


def wants_wipe(repo: Repository) -> bool:
    """Whether the Repository's backend data is to be wiped when it is deleted."""
    return repo.spec.wipe_out is True


def wipe_name(repo: Repository) -> str:
    """``stashlet-wipe-<repository>``, cut to 63 characters with a hash when longer."""
    return fit_name(f"{PREFIX}{repo.metadata.name}")


def users(
    repo: Repository, configs: Iterable[BackupConfiguration], restores: Iterable[RestoreSession]
) -> list[str]:
    """``Kind namespace/name`` of every configuration and RestoreSession that names ``repo``."""
    namespace, name = repo.metadata.namespace or "", repo.metadata.name or ""
    owners: list[BackupConfiguration | RestoreSession] = [*configs, *restores]
    found: list[str] = []
    for owner in owners:
        ref = owner.spec.repository
        if ref is not None and ref.name == name and (ref.namespace or owner.metadata.namespace) == namespace:
            found.append(f"{owner.kind} {owner.metadata.namespace}/{owner.metadata.name}")
    return sorted(found)


def _owner(repo: Repository) -> dict[str, Any]:
    return {
        "apiVersion": repo.api_version,
        "kind": repo.kind,
        "name": repo.metadata.name,
        "uid": repo.metadata.uid,
    }


def _labels(repo: Repository) -> dict[str, str]:
    return {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_WIPE_OF: repo.metadata.name or ""}


def wipe_rbac(repo: Repository) -> list[dict[str, Any]]:
    """The Job's ServiceAccount, and a Role and RoleBinding: get this Repository and its storage Secret
    by name, record events."""
    name, namespace = wipe_name(repo), repo.metadata.namespace or ""
    meta = {"name": name, "namespace": namespace, "labels": _labels(repo), "ownerReferences": [_owner(repo)]}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    rules = [
        rule(names.GROUP, [names.REPOSITORIES], ["get"], [repo.metadata.name or ""]),
        rule("", ["secrets"], ["get"], [repo.spec.backend.storage_secret_name or ""]),
        rule("", ["events"], ["get", "create", "patch"]),
    ]
    subject = service_account_subject(name, namespace)
    return [
        account,
        *role_and_binding(name, namespace, rules, subject=subject, labels=_labels(repo), owner=_owner(repo)),
    ]


def wipe_job(repo: Repository, settings: OperatorSettings) -> dict[str, Any]:
    """The Job that wipes ``repo``'s backend data (module docstring)."""
    name, namespace = wipe_name(repo), repo.metadata.namespace or ""
    volumes, mounts = agent_storage(None, repo, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME)
    invoker = (names.KIND_REPOSITORY, repo.metadata.name or "")
    args = agent_args(agent_contract.MODE_WIPE, repo, ("", ""), settings)
    container = agent_container(CONTAINER, args, mounts, {}, CONTAINER_FIELDS, settings)
    if repo.spec.backend.local is not None:  # the files were written by the sidecar, as root
        default_security_context(container)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(repo),
            "annotations": {names.ANNOTATION_WIPE_OF: "/".join(invoker)},
            "ownerReferences": [_owner(repo)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": _labels(repo)},
                "spec": {
                    "serviceAccountName": name,
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def job_outcome(job: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once the Job has ended (its conditions), else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None
