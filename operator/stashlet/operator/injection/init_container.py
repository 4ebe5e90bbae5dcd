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

import copy
from dataclasses import dataclass
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.injection.agent_container import (
    AgentInjection,
    agent_args,
    agent_container,
    agent_storage,
    carries_record,
    default_security_context,
    pod_template,
    record,
    remove_recorded,
    strip_volumes_and_annotations,
)
from stashlet.operator.settings import OperatorSettings

# Container fields taken as they are from runtimeSettings.container (probes and lifecycle are not
# allowed on an init-container).
_RUNTIME_FIELDS = ("resources", "securityContext", "envFrom")
_OWN_VOLUMES = (names.INIT_TMP_VOLUME, names.INIT_LOCAL_VOLUME)
_OWN_ANNOTATIONS = (names.ANNOTATION_LAST_APPLIED_RESTORE, names.ANNOTATION_RESTORE_INJECTION_HASH)


@dataclass(frozen=True)
class InitInjection(AgentInjection):
    """What goes into a pod template: the init-container, its volumes, and what records them."""

    INVOKER_ANNOTATION = names.ANNOTATION_LAST_APPLIED_RESTORE
    HASH_ANNOTATION = names.ANNOTATION_RESTORE_INJECTION_HASH

    session: str
    """The RestoreSession's name, also the workload's ``stash.appscode.com/restore-session`` label."""


def restore_invoker(rs: RestoreSession) -> str:
    """The value of the ``last-applied-restore-invoker`` annotation: ``RestoreSession/<name>``."""
    return f"{names.KIND_RESTORE_SESSION}/{rs.metadata.name}"


def invocation(
    rs: RestoreSession, target_kind: str, target_name: str, settings: OperatorSettings
) -> list[str]:
    """The init-container's ``args`` (its command is ``stashlet-agent``)."""
    return agent_args(
        agent_contract.MODE_RESTORE,
        names.KIND_RESTORE_SESSION,
        rs.metadata.name or "",
        target_kind,
        target_name,
        settings,
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
    runtime = (rs.spec.runtime_settings.container if rs.spec.runtime_settings else None) or {}
    container = agent_container(
        names.INIT_CONTAINER,
        invocation(rs, target_kind, target_name, settings),
        mounts + own_mounts,
        runtime,
        _RUNTIME_FIELDS,
        settings,
    )
    default_security_context(container)
    return InitInjection(
        container=container,
        volumes=tuple(volumes),
        invoker=restore_invoker(rs),
        session=rs.metadata.name or "",
    )


def is_injected(workload: dict[str, Any], injection: InitInjection) -> bool:
    """True when the pod template already carries exactly this injection (as far as the server keeps it)."""
    if not carries_record(workload, injection, names.LABEL_RESTORE_SESSION, injection.session):
        return False
    spec = (workload.get("spec", {}).get("template") or {}).get("spec") or {}
    inits = spec.get("initContainers") or []
    if not inits or inits[0].get("name") != names.INIT_CONTAINER:
        return False
    if sum(c.get("name") == names.INIT_CONTAINER for c in inits) != 1:
        return False
    if any(inits[0].get(key) != injection.container[key] for key in ("image", "command", "args")):
        return False
    present = {v.get("name") for v in spec.get("volumes") or []}
    return all(v["name"] in present for v in injection.volumes)


def _strip(template: dict[str, Any]) -> None:
    """Remove everything the restore injection put into ``template`` (in place)."""
    spec = template.get("spec") or {}
    if "initContainers" in spec:
        spec["initContainers"] = [c for c in spec["initContainers"] if c.get("name") != names.INIT_CONTAINER]
        if not spec["initContainers"]:
            del spec["initContainers"]
    strip_volumes_and_annotations(template, _OWN_VOLUMES, _OWN_ANNOTATIONS)


def inject(workload: dict[str, Any], injection: InitInjection) -> dict[str, Any] | None:
    """A copy of ``workload`` with the init-container first among its init-containers, or None when it
    already carries exactly this injection."""
    if is_injected(workload, injection):
        return None
    patched = copy.deepcopy(workload)
    template = pod_template(patched)
    _strip(template)
    spec = template["spec"]
    spec["initContainers"] = [copy.deepcopy(injection.container), *(spec.get("initContainers") or [])]
    record(patched, template, injection, names.LABEL_RESTORE_SESSION, injection.session)
    return patched


def applied_restore(workload: dict[str, Any]) -> str | None:
    """The RestoreSession (``RestoreSession/<name>``) whose init-container the workload carries, if any."""
    template = workload.get("spec", {}).get("template") or {}
    value = (template.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    return str(value) if value else None


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. Another session's init-container is left alone."""
    return remove_recorded(
        workload, invoker, names.ANNOTATION_LAST_APPLIED_RESTORE, names.LABEL_RESTORE_SESSION, _strip
    )
