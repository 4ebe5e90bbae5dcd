"""Roles and RoleBindings for one RestoreSession's ``stash-init`` init-container: pure.

The init-container runs as the workload's service account, which gets exactly what
``stashlet-agent restore`` uses (see ``agent/stashlet/agent/restore*.py``):

- in the session's namespace (Role ``stashlet-restore-<rs>``): its RestoreSession by name (``get``; the
  status is written with a read then an ``update`` of ``restoresessions/status``); events (the recorder
  reads, creates and counts them); the restore Lease ``lock-<kind>-<name>-restore`` (``create``, then
  ``get``/``update`` by name); pods (``get``: whether the holder of a stale restic lock is gone); its
  workload by name (``get``, for the number of hosts);
- where the Repository lives (the same Role, or Role ``stashlet-restore-<rs namespace>-<rs>`` there when
  it is another namespace): that Repository and the one storage Secret, by name, read only.

Objects in the session's namespace are owned by it (garbage-collected with it); the one in another
namespace cannot be, and the finalizer deletes it.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.workloads import WorkloadKind
from stashlet.operator.injection.rbac import (
    ObjectRef,
    role_and_binding,
    role_refs,
    rule,
    service_account_subject,
)

RESTORE_PREFIX = "stashlet-restore-"


def owner_reference(rs: RestoreSession) -> dict[str, Any]:
    """An ownerReference to ``rs`` as controller (garbage collection removes the owned object with it)."""
    return {
        "apiVersion": names.API_VERSION_BETA,
        "kind": names.KIND_RESTORE_SESSION,
        "name": rs.metadata.name,
        "uid": rs.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def managed_labels(rs: RestoreSession) -> dict[str, str]:
    """``app.kubernetes.io/managed-by: stashlet`` and the invoker labels of ``rs``."""
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_INVOKER_TYPE: names.KIND_RESTORE_SESSION,
        names.LABEL_INVOKER_NAME: rs.metadata.name or "",
    }


def role_name(rs: RestoreSession) -> str:
    """The init-container's Role (and RoleBinding) in the session's namespace."""
    return f"{RESTORE_PREFIX}{rs.metadata.name}"


def repository_role_name(rs: RestoreSession) -> str:
    """The init-container's Role (and RoleBinding) in a Repository's other namespace."""
    return f"{RESTORE_PREFIX}{rs.metadata.namespace}-{rs.metadata.name}"


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
    ]


def repository_rules(repository: str, secret: str) -> list[dict[str, Any]]:
    """Read the Repository and its storage Secret, by name."""
    return [
        rule(names.GROUP, [names.REPOSITORIES], ["get"], [repository]),
        rule("", ["secrets"], ["get"], [secret]),
    ]


def _role_and_binding(
    rs: RestoreSession, name: str, namespace: str, rules: list[dict[str, Any]], service_account: str
) -> list[dict[str, Any]]:
    """For ``rs``: owned by it in its namespace; the subject is ``service_account`` of its namespace."""
    return role_and_binding(
        name,
        namespace,
        rules,
        subject=service_account_subject(service_account, rs.metadata.namespace or ""),
        labels=managed_labels(rs),
        owner=owner_reference(rs) if namespace == rs.metadata.namespace else None,
    )


def restore_rbac(
    rs: RestoreSession,
    kind: WorkloadKind,
    workload: str,
    *,
    service_account: str,
    repository_namespace: str,
    repository: str,
    secret: str,
) -> list[dict[str, Any]]:
    """The Roles and RoleBindings that give ``service_account`` what the init-container uses."""
    namespace = rs.metadata.namespace or ""
    rules = restore_rules(rs, kind, workload)
    elsewhere: list[dict[str, Any]] = []
    if repository_namespace == namespace:
        rules += repository_rules(repository, secret)
    else:
        elsewhere = _role_and_binding(
            rs,
            repository_role_name(rs),
            repository_namespace,
            repository_rules(repository, secret),
            service_account,
        )
    return [*_role_and_binding(rs, role_name(rs), namespace, rules, service_account), *elsewhere]


def created_for(rs: RestoreSession, repository_namespace: str | None) -> list[ObjectRef]:
    """Every Role and RoleBinding stashlet may have made for ``rs`` (the finalizer deletes them)."""
    namespace = rs.metadata.namespace or ""
    refs = role_refs(namespace, role_name(rs))
    if repository_namespace and repository_namespace != namespace:
        refs += role_refs(repository_namespace, repository_role_name(rs))
    return refs
