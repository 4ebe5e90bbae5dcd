"""The identity of a Task configuration's Jobs and what it may do: pure.

Each configuration whose sessions run as Jobs (:mod:`stashlet.operator.core.tasks`) gets its own
ServiceAccount, named for its Task: ``stashlet-kubedump-<bc>`` for the resource dump,
``stashlet-pvc-backup-<bc>`` for a stand-alone PersistentVolumeClaim; its Jobs run as it.
A configuration that names its own (``spec.runtimeSettings.pod.serviceAccountName``, as Stash's kubedump
guide does) runs its Jobs as that one instead: stashlet makes no account then, binds it no read access
(the user granted what it may read, as in Stash), and gives it only the Job's own work below.
The Jobs' account may:

- in the configuration's namespace (Role ``<prefix><bc>``), exactly what ``stashlet-agent job``
  uses: get its BackupConfiguration (by name); get BackupSessions and get/update/patch their status;
  record events (get, create, patch); get pods (whether the holder of a stale restic lock is gone);
- where the Repository lives (the same Role, or Role ``<prefix><bc namespace>-<bc>`` in the
  Repository's namespace when it is another one): get that Repository and get/update/patch its status,
  get the one storage Secret, all by name;
- for the resource dump only, read what it dumps, through the ClusterRole the Helm chart makes
  (``--kubedump-cluster-role``, default ``stashlet-kubedump``: get, list, watch on everything), bound for
  exactly this use under the name ``stashlet-kubedump-read-<bc namespace>-<bc>``: a RoleBinding in the
  dumped namespace for a namespace or an application target, a ClusterRoleBinding for the whole cluster
  (no target). A claim's Job reads no API object besides the above: the kubelet mounts the claim.

The operator never creates that ClusterRole: a role that reads every Secret is an install-time decision
(the chart's ``kubedump.enabled``), and making it would need the operator to hold those rights itself (or
``escalate``). It only ``bind``s it, which the chart allows for that one role by name. A RoleBinding in
the dumped namespace also grants ``get`` on that Namespace object itself (the API server authorizes a
namespace's own GET within the namespace), so the dump includes it.

Objects in the configuration's namespace are owned by it; the rest (another namespace, the
ClusterRoleBinding) are deleted by its finalizer, and a binding left behind when the target moves is
deleted on the next reconcile (the configuration's ``stash.appscode.com/kubedump-binding`` annotation
remembers which one was made).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.operator.core.objects import managed_labels, owner_reference
from stashlet.operator.core.tasks import TaskKind, task_kind
from stashlet.operator.injection.rbac import (
    RBAC_API_VERSION,
    ObjectRef,
    RepositoryAccess,
    agent_grant,
    grant_refs,
    rule,
    service_account_subject,
)
from stashlet.operator.settings import OperatorSettings

PREFIXES: dict[TaskKind, str] = {
    TaskKind.KUBEDUMP: "stashlet-kubedump-",
    TaskKind.PVC_BACKUP: "stashlet-pvc-backup-",
}
"""The name prefix of each Task's ServiceAccount, Roles and RoleBindings."""
READ_PREFIX = "stashlet-kubedump-read-"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class DumpScope:
    """What a kubedump configuration dumps: the cluster (``namespace`` None) or one namespace's objects."""

    namespace: str | None

    @property
    def cluster(self) -> bool:
        """True when the whole cluster is dumped."""
        return self.namespace is None


def dump_scope(bc: BackupConfiguration) -> DumpScope:
    """The scope as the agent reads it: no target -> cluster; a v1 Namespace -> that namespace; any other
    object -> its namespace (``ref.namespace``, else the configuration's)."""
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is None or not (ref.kind or ref.name):
        return DumpScope(None)
    if ref.kind == "Namespace" and (ref.api_version or "v1") == "v1":
        return DumpScope(ref.name)
    return DumpScope(ref.namespace or bc.metadata.namespace)


def prefix(bc: BackupConfiguration) -> str:
    """The name prefix of what is made for ``bc``'s Jobs (its Task's, the resource dump's by default)."""
    return PREFIXES[task_kind(bc) or TaskKind.KUBEDUMP]


def own_account_name(bc: BackupConfiguration) -> str:
    """The ServiceAccount stashlet makes for the Jobs: ``<prefix><bc>``."""
    return f"{prefix(bc)}{bc.metadata.name}"


def user_account(bc: BackupConfiguration) -> str | None:
    """The ServiceAccount the configuration names for its Jobs (``runtimeSettings.pod``), if any."""
    pod = (bc.spec.runtime_settings.pod if bc.spec.runtime_settings else None) or {}
    name = pod.get("serviceAccountName")
    return name if isinstance(name, str) and name else None


def service_account_name(bc: BackupConfiguration) -> str:
    """The Jobs' ServiceAccount: the configuration's own, else the one stashlet makes."""
    return user_account(bc) or own_account_name(bc)


def read_binding_name(bc: BackupConfiguration) -> str:
    """The binding to the read-only ClusterRole (a RoleBinding or a ClusterRoleBinding)."""
    return f"{READ_PREFIX}{bc.metadata.namespace}-{bc.metadata.name}"


def job_rules(bc: BackupConfiguration) -> list[dict[str, Any]]:
    """What the Job does in the configuration's namespace (besides the Repository and reading a dump)."""
    return [
        rule(names.GROUP, [names.BACKUP_CONFIGURATIONS], ["get"], [bc.metadata.name or ""]),
        rule(names.GROUP, [names.BACKUP_SESSIONS], ["get"]),
        rule(names.GROUP, [f"{names.BACKUP_SESSIONS}/status"], ["get", "update", "patch"]),
        rule("", ["events"], ["get", "create", "patch"]),
        rule("", ["pods"], ["get"]),
    ]


def repository_rules(repository: str, secret: str) -> list[dict[str, Any]]:
    """Read the Repository and write its status, read the storage Secret: all by name."""
    return [
        rule(names.GROUP, [names.REPOSITORIES], ["get"], [repository]),
        rule(names.GROUP, [f"{names.REPOSITORIES}/status"], ["get", "update", "patch"], [repository]),
        rule("", ["secrets"], ["get"], [secret]),
    ]


def _meta(bc: BackupConfiguration, name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": managed_labels(bc)}
    if namespace is not None:
        meta["namespace"] = namespace
    if namespace == bc.metadata.namespace:
        meta["ownerReferences"] = [owner_reference(bc)]
    return meta


def _subjects(bc: BackupConfiguration) -> list[dict[str, Any]]:
    return [service_account_subject(own_account_name(bc), bc.metadata.namespace or "")]


def job_rbac(bc: BackupConfiguration, *, repository: RepositoryAccess) -> list[dict[str, Any]]:
    """The ServiceAccount, Roles and RoleBindings for the Job's own work (module docstring)."""
    namespace = bc.metadata.namespace or ""
    repo_rules = repository_rules(repository.name, repository.secret)
    roles = agent_grant(bc, prefix(bc), service_account_name(bc), job_rules(bc), repository, repo_rules)
    if user_account(bc) is not None:
        return roles
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(bc, own_account_name(bc), namespace),
    }
    return [account, *roles]


def read_binding(bc: BackupConfiguration, settings: OperatorSettings) -> dict[str, Any]:
    """The binding of stashlet's own account to the read-only ClusterRole for ``bc``'s dump scope (not
    made when the configuration names its own account: :func:`user_account`)."""
    scope = dump_scope(bc)
    role_ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": settings.kubedump_cluster_role}
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRoleBinding" if scope.cluster else "RoleBinding",
        "metadata": _meta(bc, read_binding_name(bc), scope.namespace),
        "roleRef": role_ref,
        "subjects": _subjects(bc),
    }


def binding_ref(obj: dict[str, Any]) -> str:
    """``RoleBinding/<namespace>/<name>`` or ``ClusterRoleBinding/<name>``: the annotation's value."""
    meta = obj["metadata"]
    if obj["kind"] == "ClusterRoleBinding":
        return f"ClusterRoleBinding/{meta['name']}"
    return f"RoleBinding/{meta['namespace']}/{meta['name']}"


def parse_binding_ref(value: str) -> ObjectRef | None:
    """The object an annotation value names; None when it is not one of ours."""
    parts = value.split("/")
    if len(parts) == 2 and parts[0] == "ClusterRoleBinding":
        return ObjectRef("ClusterRoleBinding", "", parts[1])
    if len(parts) == 3 and parts[0] == "RoleBinding":
        return ObjectRef("RoleBinding", parts[1], parts[2])
    return None


def needs_read_binding(bc: BackupConfiguration) -> bool:
    """True when ``bc``'s Jobs read what they dump through stashlet's binding: a resource dump run as the
    account stashlet makes."""
    return task_kind(bc) == TaskKind.KUBEDUMP and user_account(bc) is None


def created_for(bc: BackupConfiguration, repository_namespace: str | None) -> list[ObjectRef]:
    """The namespaced Roles and RoleBindings stashlet may have made for ``bc``'s Jobs, whichever Task it
    named then (not the read binding, which the annotation names)."""
    return [ref for p in PREFIXES.values() for ref in grant_refs(bc, p, repository_namespace)]
