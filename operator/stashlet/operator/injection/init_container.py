"""Workload + RestoreSession -> the pod template with the ``stash-init`` init-container, and back: pure.

The init-container runs ``stashlet-agent restore`` with the invoker (the RestoreSession) and target
arguments from :class:`stashlet.api.agent_contract.AgentInvocation`, its pod's identity from the
downward API, the target's ``volumeMounts`` **writable**, an emptyDir at ``/stash-tmp`` (``spec.tempDir``),
a local backend's volume when the Repository uses one, and the container ``runtimeSettings`` an
init-container may have (``env``, ``envFrom``, ``resources``, ``securityContext``). It is prepended to the
init-containers, so the data is back before any other init-container or the application runs.

What only this container gets (see :mod:`stashlet.api.agent_identity` and
:mod:`stashlet.operator.injection.restore_rbac`): the token of the session's own ServiceAccount
``stashlet-restore-<rs>`` (volume ``stash-init-kube-token``) and, when the Repository lives in the
session's namespace, the storage Secret (volume ``stash-init-storage-secret``), both read-only and
``optional`` (a missing Secret keeps the restore, not the pod's spec, from working: the agent waits for
its token and names a Secret it cannot find), with the variables that tell the agent where they are. The
workload's own containers and service account get neither.

It coexists with the ``stash`` sidecar of a BackupConfiguration on the same workload: its volumes
(``stash-init-tmp-dir``, ``stash-init-local``, ``stash-init-kube-token``, ``stash-init-storage-secret``),
its pod-template annotations (``last-applied-restore-invoker``, ``restore-injection-hash``) and its
workload label (``stash.appscode.com/restore-session``) are its own, and the sidecar's injection touches only
``containers``, its own volumes and annotations. So injecting or removing either never changes the other,
and neither's "already injected" check is disturbed by the other (no rollout loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api import agent_identity as identity
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.field_support import Runner, container_fields
from stashlet.operator.injection.agent_container import (
    AgentInjection,
    agent_args,
    agent_container,
    agent_credentials,
    agent_storage,
    inject,
    is_injected,
    remove_recorded,
)

__all__ = [
    "InitInjection",
    "applied_restore",
    "build_init_injection",
    "inject",
    "is_injected",
    "remove_injection",
    "restore_invoker",
]
from stashlet.operator.settings import OperatorSettings

KUBE_TOKEN_VOLUME = "stash-init-kube-token"  # noqa: S105 - a volume's name
"""The session's own ServiceAccount token (its Secret), at ``KUBE_TOKEN_DIR``."""
STORAGE_SECRET_VOLUME = "stash-init-storage-secret"  # noqa: S105 - a volume's name
"""The storage Secret of a Repository in the session's namespace, at
``<STORAGE_SECRETS_DIR>/<secret name>``."""


@dataclass(frozen=True)
class InitInjection(AgentInjection):
    """What goes into a pod template: the init-container, its volumes, and what records them."""

    INVOKER_ANNOTATION = names.ANNOTATION_LAST_APPLIED_RESTORE
    HASH_ANNOTATION = names.ANNOTATION_RESTORE_INJECTION_HASH
    CONTAINER = names.INIT_CONTAINER
    FIELD = "initContainers"
    FIRST = True
    LABEL = names.LABEL_RESTORE_SESSION
    """Valued with the RestoreSession's name."""
    OWN_VOLUMES = (names.INIT_TMP_VOLUME, names.INIT_LOCAL_VOLUME, KUBE_TOKEN_VOLUME, STORAGE_SECRET_VOLUME)


def restore_invoker(rs: RestoreSession) -> str:
    """The value of the ``last-applied-restore-invoker`` annotation: ``RestoreSession/<name>``."""
    return f"{names.KIND_RESTORE_SESSION}/{rs.metadata.name}"


def credentials(
    rs: RestoreSession, repository: Repository | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes, mounts and env that give ``stash-init`` the session's own token and, where the
    Repository lives in ``rs``'s namespace, the storage Secret."""
    return agent_credentials(
        identity.restore_account(rs.metadata.name or ""),
        rs.metadata.namespace or "",
        repository,
        token_volume=KUBE_TOKEN_VOLUME,
        secret_volume=STORAGE_SECRET_VOLUME,
    )


def build_init_injection(
    rs: RestoreSession,
    target_kind: str,
    target_name: str,
    repository: Repository | None,
    settings: OperatorSettings,
) -> InitInjection:
    """The init-container and volumes for ``rs``'s target (see the module docstring)."""
    mounts: list[dict[str, Any]] = []
    target = rs.spec.target
    for mount in target.volume_mounts or [] if target else []:
        entry = mount.to_dict()
        entry.pop("readOnly", None)  # the restore writes into the volume
        mounts.append(entry)
    volumes, own_mounts = agent_storage(
        rs.spec.temp_dir, repository, names.INIT_TMP_VOLUME, names.INIT_LOCAL_VOLUME
    )
    secret_volumes, secret_mounts, secret_env = credentials(rs, repository)
    runtime = (rs.spec.runtime_settings.container if rs.spec.runtime_settings else None) or {}
    container = agent_container(
        names.INIT_CONTAINER,
        agent_args(agent_contract.MODE_RESTORE, rs, (target_kind, target_name), settings),
        mounts + own_mounts + secret_mounts,
        runtime,
        container_fields(Runner.INIT_CONTAINER),
        settings,
    )
    own_env = {e["name"] for e in secret_env}
    container["env"] = [*(e for e in container["env"] if e.get("name") not in own_env), *secret_env]
    return InitInjection.made_for(rs, container, volumes + secret_volumes)


def applied_restore(workload: dict[str, Any]) -> str | None:
    """The RestoreSession (``RestoreSession/<name>``) whose init-container the workload carries, if any."""
    template = workload.get("spec", {}).get("template") or {}
    value = (template.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    return str(value) if value else None


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. Another session's init-container is left alone."""
    return remove_recorded(workload, invoker, InitInjection)
