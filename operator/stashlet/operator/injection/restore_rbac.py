"""Roles and RoleBindings for one RestoreSession's ``stash-init`` init-container: pure.

The init-container runs as the workload's service account, which gets exactly what
``stashlet-agent restore`` uses (see ``agent/stashlet/agent/restore/``):

- in the session's namespace (Role ``stashlet-restore-<rs>``): its RestoreSession by name (``get``; the
  status is written with a read then an ``update`` of ``restoresessions/status``); events (the recorder
  reads, creates and counts them); the restore Lease ``lock-<kind>-<name>-restore`` (``create``, then
  ``get``/``update`` by name); pods (``get``: whether the holder of a stale restic lock is gone, and a
  hook's executor pod); its workload by name (``get``, for the number of hosts); and, only when
  ``spec.hooks`` has an ``exec`` hook, ``create`` and ``get`` on ``pods/exec`` (see
  :func:`stashlet.operator.injection.rbac.exec_rules`);
- where the Repository lives (the same Role, or Role ``stashlet-restore-<rs namespace>-<rs>`` there when
  it is another namespace): that Repository and the one storage Secret, by name, read only.

A session restored by Jobs (a named claim, or volumeClaimTemplates) runs them as ServiceAccount
``stashlet-restore-<rs>``, made for it (or the one ``runtimeSettings.pod.serviceAccountName`` names), which
gets the same Roles with what ``stashlet-agent restore-job`` uses: the RestoreSession, its status, events,
pods (``get``), ``pods/exec`` only for an exec hook; no Lease (each Job is its own host) and no workload.

Objects in the session's namespace are owned by it (garbage-collected with it); the one in another
namespace cannot be, and the finalizer deletes it.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.common import KubeObject
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.objects import owner_reference
from stashlet.operator.core.workloads import WorkloadKind
from stashlet.operator.injection.rbac import (
    ObjectRef,
    RepositoryAccess,
    agent_grant,
    exec_rules,
    grant_refs,
    rule,
)

RESTORE_PREFIX = "stashlet-restore-"


def restore_rules(rs: RestoreSession, kind: WorkloadKind, workload: str) -> list[dict[str, Any]]:
    """What the init-container does in the session's namespace."""
    name = rs.metadata.name or ""
    lease = names.lease_name(kind.kind, workload, "restore")
    return [
        rule(names.GROUP, [names.RESTORE_SESSIONS], ["get"], [name]),
        rule(names.GROUP, [f"{names.RESTORE_SESSIONS}/status"], ["update"], [name]),
        rule("", ["events"], ["get", "create", "patch"]),
        rule("coordination.k8s.io", ["leases"], ["create"]),
        rule("coordination.k8s.io", ["leases"], ["get", "update"], [lease]),
        rule("", ["pods"], ["get"]),
        rule(kind.group, [kind.plural], ["get"], [workload]),
        *exec_rules(rs.spec.hooks),
    ]


def job_rules(rs: RestoreSession) -> list[dict[str, Any]]:
    """What a restore Job does in the session's namespace."""
    name = rs.metadata.name or ""
    return [
        rule(names.GROUP, [names.RESTORE_SESSIONS], ["get"], [name]),
        rule(names.GROUP, [f"{names.RESTORE_SESSIONS}/status"], ["update"], [name]),
        rule("", ["events"], ["get", "create", "patch"]),
        rule("", ["pods"], ["get"]),
        *exec_rules(rs.spec.hooks),
    ]


def job_service_account(rs: RestoreSession) -> str:
    """The account the restore Jobs run as: ``runtimeSettings.pod.serviceAccountName``, else
    ``stashlet-restore-<rs>``."""
    runtime = rs.spec.runtime_settings
    own = ((runtime.pod if runtime else None) or {}).get("serviceAccountName")
    return str(own) if own else f"{RESTORE_PREFIX}{rs.metadata.name}"


def job_rbac(rs: RestoreSession, repository: RepositoryAccess) -> list[dict[str, Any]]:
    """The restore Jobs' ServiceAccount (when stashlet names it; owned by the session), Roles and
    RoleBindings."""
    account = job_service_account(rs)
    made: list[dict[str, Any]] = []
    if account == f"{RESTORE_PREFIX}{rs.metadata.name}":
        made.append(_service_account(rs, account))
    return [
        *made,
        *agent_grant(
            rs,
            RESTORE_PREFIX,
            service_account=account,
            rules=job_rules(rs),
            repository=repository,
            repository_rules=repository_rules(repository.name, repository.secret),
        ),
    ]


def _service_account(owner: KubeObject, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": owner.metadata.namespace,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY},
            "ownerReferences": [owner_reference(owner)],
        },
    }


def repository_rules(repository: str, secret: str) -> list[dict[str, Any]]:
    """Read the Repository and its storage Secret, by name."""
    return [
        rule(names.GROUP, [names.REPOSITORIES], ["get"], [repository]),
        rule("", ["secrets"], ["get"], [secret]),
    ]


def restore_rbac(
    rs: RestoreSession,
    kind: WorkloadKind,
    workload: str,
    *,
    service_account: str,
    repository: RepositoryAccess,
) -> list[dict[str, Any]]:
    """The Roles and RoleBindings that give ``service_account`` what the init-container uses."""
    rules = restore_rules(rs, kind, workload)
    repo_rules = repository_rules(repository.name, repository.secret)
    return agent_grant(
        rs,
        RESTORE_PREFIX,
        service_account=service_account,
        rules=rules,
        repository=repository,
        repository_rules=repo_rules,
    )


def created_for(rs: RestoreSession, repository_namespace: str | None) -> list[ObjectRef]:
    """Every Role and RoleBinding stashlet may have made for ``rs`` (the finalizer deletes them)."""
    return grant_refs(rs, RESTORE_PREFIX, repository_namespace)
