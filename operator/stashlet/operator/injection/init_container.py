"""Workload + RestoreSession -> the pod template with the ``stash-init`` init-container, and back: pure.

The init-container runs ``stashlet-agent restore`` with the invoker (the RestoreSession) and target
arguments from :class:`stashlet.api.agent_contract.AgentInvocation`, its pod's identity from the
downward API, the target's ``volumeMounts`` **writable**, an emptyDir at ``/stash-tmp`` (``spec.tempDir``),
a local backend's volume when the Repository uses one, and the container ``runtimeSettings`` an
init-container may have (``env``, ``envFrom``, ``resources``, ``securityContext``). It is prepended to the
init-containers, so the data is back before any other init-container or the application runs.

It coexists with the ``stash`` sidecar of a BackupConfiguration on the same workload: its volumes
(``stash-init-tmp-dir``, ``stash-init-local``), its pod-template annotations
(``last-applied-restore-invoker``, ``restore-injection-hash``) and its workload label
(``stash.appscode.com/restore-session``) are its own, and the sidecar's injection touches only
``containers``, its own volumes and annotations. So injecting or removing either never changes the other,
and neither's "already injected" check is disturbed by the other (no rollout loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.field_support import Runner, container_fields
from stashlet.operator.injection.agent_container import (
    AgentInjection,
    agent_args,
    agent_container,
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
    OWN_VOLUMES = (names.INIT_TMP_VOLUME, names.INIT_LOCAL_VOLUME)


def restore_invoker(rs: RestoreSession) -> str:
    """The value of the ``last-applied-restore-invoker`` annotation: ``RestoreSession/<name>``."""
    return f"{names.KIND_RESTORE_SESSION}/{rs.metadata.name}"


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
    runtime = (rs.spec.runtime_settings.container if rs.spec.runtime_settings else None) or {}
    container = agent_container(
        names.INIT_CONTAINER,
        agent_args(agent_contract.MODE_RESTORE, rs, (target_kind, target_name), settings),
        mounts + own_mounts,
        runtime,
        container_fields(Runner.INIT_CONTAINER),
        settings,
    )
    return InitInjection.made_for(rs, container, volumes)


def applied_restore(workload: dict[str, Any]) -> str | None:
    """The RestoreSession (``RestoreSession/<name>``) whose init-container the workload carries, if any."""
    template = workload.get("spec", {}).get("template") or {}
    value = (template.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    return str(value) if value else None


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. Another session's init-container is left alone."""
    return remove_recorded(workload, invoker, InitInjection)
