"""Roles, RoleBindings and the ServiceAccounts of one BackupConfiguration's agents: pure.

:func:`agent_grant` is the one builder of an agent identity's Roles (and :func:`grant_refs` what it
makes): the sidecar's here, ``stash-init``'s (:mod:`stashlet.operator.injection.restore_rbac`) and the
Task Jobs' (:mod:`stashlet.operator.injection.job_rbac`) are its rules and name prefixes.

Who the sidecar is (the decision, and why). RBAC authorizes a *user*; a pod's user is its service
account, and several workloads often share one (``default``). Rights bound to the workload's account
would reach every pod running as it, and could never tell configuration A's agent from B's: both would
read both Secrets and Repositories and write both configurations' sessions. An admission policy does not
help there, since it sees writes, never reads; the pod-bound claims of a projected token
(``authentication.kubernetes.io/pod-name``) name the pod, not the configuration, and reach RBAC as
``extra`` values it cannot match on. So the sidecar gets an identity of its own, one per configuration:

- ServiceAccount ``stashlet-agent-<bc>`` (:func:`agent_identity`), and its token in a Secret of the same
  name of type ``kubernetes.io/service-account-token`` (the token controller fills it; deleting the
  account or the Secret revokes it). Both are owned by the configuration. The Secret is mounted into the
  ``stash`` container alone (never the workload's own containers), and the agent's API client uses that
  token (:mod:`stashlet.kube.config`, re-read every minute). The workload's service account gets nothing.
- The Role ``stashlet-sidecar-<bc>`` is bound to that account only, with ``resourceNames`` wherever a
  name is known: its BackupConfiguration; BackupSessions (read, watch, create for an instant backup; a
  created object has no name yet, a watch lists them all) and their status; events (the recorder reads,
  creates and counts them); its Lease (create, then get/update by name); pods (read, to tell whether the
  holder of a stale restic lock is gone); its own workload by name (for the number of hosts); and, only
  when ``spec.hooks`` has an ``exec`` hook, ``pods/exec`` (:func:`exec_rules`).
- Where the Repository lives: that Repository and its status, by name; and the storage Secret: **not
  readable through the API when it lives in the configuration's namespace** (it is mounted into the
  ``stash`` container, and rotation reaches the agent through the file), read by name only from a
  Repository's other namespace (Role ``stashlet-sidecar-<bc namespace>-<bc>`` there), while its
  ``usagePolicy`` admits the configuration's namespace.
- What names cannot say, the admission policy the Helm chart ships
  (``templates/admission-policy.yaml``) does: a ServiceAccount ``stashlet-agent-<bc>`` (or a Task's Jobs'
  ``stashlet-kubedump-<bc>``/``stashlet-pvc-backup-<bc>``) may create a BackupSession, or write one's status,
  only when the session's ``spec.invoker`` is BackupConfiguration ``<bc>`` of its own namespace. The rule
  compares the whole account name with the prefix and the invoker's name (no parsing), so it is exact;
  a configuration whose name would make the account longer than 253 characters is refused by name.

Left as they are: the events and pods rules cannot be narrowed by name (events are created with
generated names, a lock holder is any pod); the Repository's status is shared by every configuration
that uses it; anyone allowed to create pods or read Secrets in the namespace can reach the token, as
with any Secret there.

The trigger CronJob's pods run as ServiceAccount ``stashlet-trigger`` (one per namespace); Role
``stashlet-trigger-<bc>`` lets it only read its configuration, create BackupSessions and record events.
Objects in the configuration's namespace are owned by it; the one in a Repository's other namespace
cannot be (owners are namespaced) and is deleted by the finalizer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stashlet.api import agent_identity as identity
from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupHooks
from stashlet.api.common import KubeObject
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreHooks, RestoreSession
from stashlet.operator.core.objects import managed_labels, owner_reference
from stashlet.operator.core.workloads import WorkloadKind
from stashlet.operator.settings import OperatorSettings

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
SIDECAR_PREFIX = "stashlet-sidecar-"
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a Secret type
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"
TRIGGER_PREFIX = "stashlet-trigger-"


@dataclass(frozen=True)
class ObjectRef:
    """Where an RBAC object lives: kind, namespace, name."""

    kind: str
    namespace: str
    name: str


def has_exec_hook(hooks: BackupHooks | RestoreHooks | None) -> bool:
    """True when one of ``hooks`` (pre or post) is an ``exec`` hook, run in a container through the API
    server's ``pods/exec``."""
    if hooks is None:
        return False
    return any(isinstance(hook, dict) and hook.get("exec") is not None for hook in hooks.to_dict().values())


def exec_rules(hooks: BackupHooks | RestoreHooks | None) -> list[dict[str, Any]]:
    """``pods/exec`` (``create`` and ``get``) in the agent's namespace when ``hooks`` has an ``exec`` hook,
    else nothing.

    The right lets the agent run any command in any container of any pod of that namespace (as
    ``kubectl exec`` does): the agent uses it only for the hook's command in its own pod, and no
    configuration without an ``exec`` hook grants it. The agent's exec is a WebSocket upgrade of a
    ``GET``: the API server authorizes it as ``get`` and, since Kubernetes 1.35
    (AuthorizePodWebsocketUpgradeCreatePermission), also as ``create``, so both verbs are needed."""
    return [rule("", ["pods/exec"], ["create", "get"])] if has_exec_hook(hooks) else []


def rule(
    group: str, resources: list[str], verbs: list[str], names_: list[str] | None = None
) -> dict[str, Any]:
    """One PolicyRule (``resourceNames`` only when ``names_`` are given)."""
    found: dict[str, Any] = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names_:
        found["resourceNames"] = names_
    return found


def role_and_binding(
    name: str,
    namespace: str,
    rules: list[dict[str, Any]],
    *,
    subject: dict[str, Any],
    labels: dict[str, str],
    owner: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Role ``name`` holding ``rules`` and the RoleBinding of the same name giving it to ``subject``;
    ``owner`` (an ownerReference) only where it lives in the owner's namespace."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return [
        {"apiVersion": RBAC_API_VERSION, "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "RoleBinding",
            "metadata": copy.deepcopy(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        },
    ]


def role_refs(namespace: str, name: str) -> list[ObjectRef]:
    """Role and RoleBinding ``namespace/name`` (what :func:`role_and_binding` makes)."""
    return [ObjectRef(kind, namespace, name) for kind in ("Role", "RoleBinding")]


def service_account_subject(name: str, namespace: str) -> dict[str, Any]:
    """A RoleBinding subject: ServiceAccount ``namespace/name``."""
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def trigger_role_name(bc: BackupConfiguration) -> str:
    """The trigger's Role (and RoleBinding)."""
    return f"{TRIGGER_PREFIX}{bc.metadata.name}"


@dataclass(frozen=True)
class RepositoryAccess:
    """The Repository an agent reads and the storage Secret it uses, and the namespace they live in."""

    namespace: str
    name: str
    secret: str

    @classmethod
    def of(cls, repository: Repository, default_namespace: str) -> RepositoryAccess:
        """``repository``'s place; ``default_namespace`` when its object names none."""
        return cls(
            repository.metadata.namespace or default_namespace,
            repository.metadata.name or "",
            repository.spec.backend.storage_secret_name or "",
        )


def own_role_name(owner: KubeObject, prefix: str) -> str:
    """``<prefix><owner>``: a grant's Role (and RoleBinding) in the owner's namespace."""
    return f"{prefix}{owner.metadata.name}"


def repository_role_name(owner: KubeObject, prefix: str) -> str:
    """``<prefix><owner namespace>-<owner>``: a grant's Role (and RoleBinding) in a Repository's other
    namespace (unique there across the namespaces that use the Repository)."""
    return f"{prefix}{owner.metadata.namespace}-{owner.metadata.name}"


def agent_grant(
    owner: BackupConfiguration | RestoreSession,
    prefix: str,
    service_account: str,
    rules: list[dict[str, Any]],
    repository: RepositoryAccess,
    repository_rules: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Roles and RoleBindings giving ``service_account`` of ``owner``'s namespace ``rules`` there and
    ``repository_rules`` where the Repository lives: one Role when that is the same namespace, else a
    second one there. Labelled for ``owner``, and owned by it where it can be (its own namespace)."""
    namespace = owner.metadata.namespace or ""
    subject = service_account_subject(service_account, namespace)
    labels = managed_labels(owner)

    def made(name: str, where: str, granted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        owner_ref = owner_reference(owner) if where == namespace else None
        return role_and_binding(name, where, granted, subject=subject, labels=labels, owner=owner_ref)

    own = own_role_name(owner, prefix)
    if repository.namespace == namespace:
        return made(own, namespace, [*rules, *repository_rules])
    elsewhere = made(repository_role_name(owner, prefix), repository.namespace, repository_rules)
    return [*made(own, namespace, rules), *elsewhere]


def grant_refs(owner: KubeObject, prefix: str, repository_namespace: str | None) -> list[ObjectRef]:
    """What :func:`agent_grant` may have made for ``owner`` (the finalizer deletes them)."""
    namespace = owner.metadata.namespace or ""
    refs = role_refs(namespace, own_role_name(owner, prefix))
    if repository_namespace and repository_namespace != namespace:
        refs += role_refs(repository_namespace, repository_role_name(owner, prefix))
    return refs


def repository_rules(repository: str, secret: str | None) -> list[dict[str, Any]]:
    """Read the Repository and write its status, and read the storage Secret when one is named (from
    another namespace; one in the agent's own is mounted instead): all by name."""
    rules = [
        rule(names.GROUP, [names.REPOSITORIES], ["get", "list", "watch"], [repository]),
        rule(names.GROUP, [f"{names.REPOSITORIES}/status"], ["get", "update", "patch"], [repository]),
    ]
    if secret is not None:
        rules.append(rule("", ["secrets"], ["get"], [secret]))
    return rules


def agent_account(bc: BackupConfiguration) -> str:
    """The sidecar's own ServiceAccount (and token Secret): ``stashlet-agent-<bc>``."""
    return identity.agent_account(bc.metadata.name or "")


def agent_identity(bc: BackupConfiguration) -> list[dict[str, Any]]:
    """The sidecar's ServiceAccount and the Secret the token controller fills with its token, both owned
    by ``bc`` (see the module docstring)."""
    return own_identity(bc, agent_account(bc))


def own_identity(owner: BackupConfiguration | RestoreSession, name: str) -> list[dict[str, Any]]:
    """ServiceAccount ``name`` in ``owner``'s namespace and the Secret of the same name the token
    controller fills with its token, both owned by ``owner``: an agent's identity of its own."""
    meta = {
        "name": name,
        "namespace": owner.metadata.namespace or "",
        "labels": managed_labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": copy.deepcopy(meta)},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": SERVICE_ACCOUNT_TOKEN_TYPE,
            "metadata": {**copy.deepcopy(meta), "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: name}},
        },
    ]


def sidecar_rules(bc: BackupConfiguration, kind: WorkloadKind, workload: str) -> list[dict[str, Any]]:
    """What the agent does in the configuration's namespace."""
    lease = names.lease_name(kind.kind, workload, "backup")
    return [
        rule(names.GROUP, [names.BACKUP_CONFIGURATIONS], ["get", "list", "watch"], [bc.metadata.name or ""]),
        rule(names.GROUP, [names.BACKUP_SESSIONS], ["get", "list", "watch", "create"]),
        rule(names.GROUP, [f"{names.BACKUP_SESSIONS}/status"], ["get", "update", "patch"]),
        rule("", ["events"], ["get", "create", "patch"]),
        rule("coordination.k8s.io", ["leases"], ["create"]),
        rule("coordination.k8s.io", ["leases"], ["get", "update", "patch"], [lease]),
        rule("", ["pods"], ["get"]),
        rule(kind.group, [kind.plural], ["get"], [workload]),
        *exec_rules(bc.spec.hooks),
    ]


def sidecar_rbac(
    bc: BackupConfiguration,
    kind: WorkloadKind,
    workload: str,
    *,
    repository: RepositoryAccess,
) -> list[dict[str, Any]]:
    """The Roles and RoleBindings that give the sidecar's own account (:func:`agent_account`) what the
    agent uses (module docstring); the storage Secret is granted only from another namespace."""
    namespace = bc.metadata.namespace or ""
    secret = repository.secret if repository.namespace != namespace else None
    return agent_grant(
        bc,
        SIDECAR_PREFIX,
        service_account=agent_account(bc),
        rules=sidecar_rules(bc, kind, workload),
        repository=repository,
        repository_rules=repository_rules(repository.name, secret),
    )


def trigger_rbac(bc: BackupConfiguration, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The trigger's ServiceAccount (shared in the namespace, not owned), Role and RoleBinding."""
    namespace = bc.metadata.namespace or ""
    account = settings.trigger_service_account
    name = trigger_role_name(bc)
    rules = [
        rule(names.GROUP, [names.BACKUP_CONFIGURATIONS], ["get"], [bc.metadata.name or ""]),
        rule(names.GROUP, [names.BACKUP_SESSIONS], ["create"]),
        rule("", ["events"], ["get", "create", "patch"]),
    ]
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": account,
            "namespace": namespace,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY},
        },
    }
    subject = service_account_subject(account, namespace)
    owned = role_and_binding(
        name, namespace, rules, subject=subject, labels=managed_labels(bc), owner=owner_reference(bc)
    )
    return [service_account, *owned]


def created_for(bc: BackupConfiguration, repository_namespace: str | None) -> list[ObjectRef]:
    """Every Role and RoleBinding stashlet may have made for ``bc`` (the finalizer deletes them, so the
    sidecar's token is worth nothing from then on; its ServiceAccount and token Secret, owned by ``bc``,
    go with it as garbage)."""
    namespace = bc.metadata.namespace or ""
    return [
        *grant_refs(bc, SIDECAR_PREFIX, repository_namespace),
        *role_refs(namespace, trigger_role_name(bc)),
    ]


def up_to_date(existing: dict[str, Any], desired: dict[str, Any]) -> bool:
    """True when ``existing`` grants what ``desired`` grants, to whom it should, with our labels.

    A ServiceAccount that exists is up to date: it may be the user's own, and it grants nothing itself.
    A token Secret is up to date while it is the token of the account it should be (the token
    controller owns its data, so it is never replaced for labels).
    """
    if desired["kind"] == "ServiceAccount":
        return True
    if desired["kind"] == "Secret":
        return bool(
            existing.get("type") == desired["type"]
            and (existing["metadata"].get("annotations") or {}).get(SERVICE_ACCOUNT_NAME_ANNOTATION)
            == desired["metadata"]["annotations"][SERVICE_ACCOUNT_NAME_ANNOTATION]
        )
    labels = existing.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in desired["metadata"].get("labels", {}).items()):
        return False
    kind = desired["kind"]
    if kind == "Role":
        return bool(existing.get("rules") == desired["rules"])
    if kind == "RoleBinding":
        return bool(
            existing.get("subjects") == desired["subjects"] and existing.get("roleRef") == desired["roleRef"]
        )
    return True
