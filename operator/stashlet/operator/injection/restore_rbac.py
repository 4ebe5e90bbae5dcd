"""The identity, Roles and RoleBindings of one RestoreSession's ``stash-init`` init-container: pure.

Who ``stash-init`` is: not the workload's service account (often ``default``, shared by every pod of the
namespace that names none; see :mod:`stashlet.operator.injection.rbac` for the decision), but the
session's own ServiceAccount ``stashlet-restore-<rs>`` (:func:`restore_identity`), with its token in the
Secret of the same name (type ``kubernetes.io/service-account-token``, filled by the token controller),
both owned by the session. The token is mounted into ``stash-init`` alone
(:mod:`stashlet.operator.injection.init_container`); the workload's account gets nothing. That account
gets exactly what ``stashlet-agent restore`` uses (see ``agent/stashlet/agent/restore/``):

- in the session's namespace (Role ``stashlet-restore-<rs>``): its RestoreSession by name (``get``; the
  status is written with a read then an ``update`` of ``restoresessions/status``, by name too, so no
  admission policy is needed to keep it off another session); events (the recorder reads, creates and
  counts them); the restore Lease ``lock-<kind>-<name>-restore`` (``create``, then ``get``/``update`` by
  name); pods (``get``: whether the holder of a stale restic lock is gone, and a hook's executor pod); its
  workload by name (``get``, for the number of hosts); and, only when ``spec.hooks`` has an ``exec`` hook,
  ``create`` and ``get`` on ``pods/exec`` (see :func:`stashlet.operator.injection.rbac.exec_rules`);
- where the Repository lives (the same Role, or Role ``stashlet-restore-<rs namespace>-<rs>`` there when
  it is another namespace): that Repository by name, read only; the storage Secret is **not** readable
  when it lives in the session's namespace (it is mounted into ``stash-init``), and read by name from the
  Repository's other namespace.

A session restored by Jobs (a named claim, or volumeClaimTemplates) runs them as the same ServiceAccount
``stashlet-restore-<rs>`` (or the one ``runtimeSettings.pod.serviceAccountName`` names), whose Pods get
its token the usual way; it gets the same Roles with what ``stashlet-agent restore-job`` uses: the
RestoreSession, its status, events, pods (``get``), ``pods/exec`` only for an exec hook, the storage
Secret by name (the Jobs do not mount it); no Lease (each Job is its own host) and no workload.

Objects in the session's namespace are owned by it (garbage-collected with it); the one in another
namespace cannot be, and the finalizer deletes it.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import agent_identity as identity
from stashlet.api import names
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.workloads import WorkloadKind
from stashlet.operator.injection.rbac import (
    ObjectRef,
    RepositoryAccess,
    agent_grant,
    exec_rules,
    grant_refs,
    own_identity,
    rule,
)

RESTORE_PREFIX = identity.RESTORE_ACCOUNT_PREFIX
"""The prefix of the session's Roles (and RoleBindings), and of its own ServiceAccount."""


def restore_account(rs: RestoreSession) -> str:
    """The session's own ServiceAccount (and token Secret): ``stashlet-restore-<rs>``."""
    return identity.restore_account(rs.metadata.name or "")


def restore_identity(rs: RestoreSession) -> list[dict[str, Any]]:
    """The session's ServiceAccount and the Secret the token controller fills with its token, both owned
    by ``rs`` (see the module docstring)."""
    return own_identity(rs, restore_account(rs))


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
    return str(own) if own else restore_account(rs)


def job_rbac(rs: RestoreSession, repository: RepositoryAccess) -> list[dict[str, Any]]:
    """The restore Jobs' ServiceAccount (when stashlet names it; owned by the session), Roles and
    RoleBindings."""
    account = job_service_account(rs)
    made: list[dict[str, Any]] = []
    if account == restore_account(rs):
        made.append(restore_identity(rs)[0])
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


def repository_rules(repository: str, secret: str | None) -> list[dict[str, Any]]:
    """Read the Repository and, when one is named, its storage Secret: by name."""
    rules = [rule(names.GROUP, [names.REPOSITORIES], ["get"], [repository])]
    if secret is not None:
        rules.append(rule("", ["secrets"], ["get"], [secret]))
    return rules


def restore_rbac(
    rs: RestoreSession,
    kind: WorkloadKind,
    workload: str,
    *,
    repository: RepositoryAccess,
) -> list[dict[str, Any]]:
    """The Roles and RoleBindings that give the session's own account (:func:`restore_account`) what the
    init-container uses; the storage Secret only from another namespace (it is mounted from its own)."""
    rules = restore_rules(rs, kind, workload)
    secret = repository.secret if repository.namespace != (rs.metadata.namespace or "") else None
    repo_rules = repository_rules(repository.name, secret)
    return agent_grant(
        rs,
        RESTORE_PREFIX,
        service_account=restore_account(rs),
        rules=rules,
        repository=repository,
        repository_rules=repo_rules,
    )


def created_for(rs: RestoreSession, repository_namespace: str | None) -> list[ObjectRef]:
    """Every Role and RoleBinding stashlet may have made for ``rs`` (the finalizer deletes them)."""
    return grant_refs(rs, RESTORE_PREFIX, repository_namespace)
