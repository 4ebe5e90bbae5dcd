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
from dataclasses import dataclass, field
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.injection.agent_container import (
    agent_env,
    copy_fields,
    default_resources,
    default_security_context,
    empty_dir,
    injection_hash,
    local_backend,
)
from stashlet.operator.settings import OperatorSettings

# Container fields taken as they are from runtimeSettings.container (probes and lifecycle are not
# allowed on an init-container).
_RUNTIME_FIELDS = ("resources", "securityContext", "envFrom")
_OWN_VOLUMES = (names.INIT_TMP_VOLUME, names.INIT_LOCAL_VOLUME)
_OWN_ANNOTATIONS = (names.ANNOTATION_LAST_APPLIED_RESTORE, names.ANNOTATION_RESTORE_INJECTION_HASH)


@dataclass(frozen=True)
class InitInjection:
    """What goes into a pod template: the init-container, its volumes, and what records them."""

    container: dict[str, Any]
    volumes: tuple[dict[str, Any], ...]
    invoker: str
    session: str
    """The RestoreSession's name, also the workload's ``stash.appscode.com/restore-session`` label."""
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", injection_hash(self.container, self.volumes))

    @property
    def annotations(self) -> dict[str, str]:
        """The pod-template annotations that record this injection."""
        return {
            names.ANNOTATION_LAST_APPLIED_RESTORE: self.invoker,
            names.ANNOTATION_RESTORE_INJECTION_HASH: self.hash,
        }


def restore_invoker(rs: RestoreSession) -> str:
    """The value of the ``last-applied-restore-invoker`` annotation: ``RestoreSession/<name>``."""
    return f"{names.KIND_RESTORE_SESSION}/{rs.metadata.name}"


def invocation(
    rs: RestoreSession, target_kind: str, target_name: str, settings: OperatorSettings
) -> list[str]:
    """The init-container's ``args`` (its command is ``stashlet-agent``)."""
    return agent_contract.AgentInvocation(
        mode=agent_contract.MODE_RESTORE,
        invoker_kind=names.KIND_RESTORE_SESSION,
        invoker_name=rs.metadata.name or "",
        target_kind=target_kind,
        target_name=target_name,
        status_port=settings.status_port,
        tmp_dir=names.TMP_MOUNT_PATH,
        pushgateway_url=settings.pushgateway_url,
        log_level=settings.agent_log_level,
    ).args()


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
    mounts.append({"name": names.INIT_TMP_VOLUME, "mountPath": names.TMP_MOUNT_PATH})
    volumes: list[dict[str, Any]] = [{"name": names.INIT_TMP_VOLUME, "emptyDir": empty_dir(rs.spec.temp_dir)}]
    local = local_backend(repository, names.INIT_LOCAL_VOLUME)
    if local is not None:
        volumes.append(local[0])
        mounts.append(local[1])

    runtime = (rs.spec.runtime_settings.container if rs.spec.runtime_settings else None) or {}
    env = agent_env(runtime)
    container: dict[str, Any] = {
        "name": names.INIT_CONTAINER,
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [agent_contract.AGENT_COMMAND],
        "args": invocation(rs, target_kind, target_name, settings),
        "env": env,
        "volumeMounts": mounts,
    }
    copy_fields(container, runtime, _RUNTIME_FIELDS)
    default_resources(container, settings.agent_resources)
    default_security_context(container)
    return InitInjection(
        container=container,
        volumes=tuple(volumes),
        invoker=restore_invoker(rs),
        session=rs.metadata.name or "",
    )


def _template(workload: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = workload.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("spec", {})
    return template


def is_injected(workload: dict[str, Any], injection: InitInjection) -> bool:
    """True when the pod template already carries exactly this injection (as far as the server keeps it)."""
    labels = workload.get("metadata", {}).get("labels") or {}
    if labels.get(names.LABEL_RESTORE_SESSION) != injection.session:
        return False
    template = workload.get("spec", {}).get("template") or {}
    annotations = template.get("metadata", {}).get("annotations") or {}
    if any(annotations.get(k) != v for k, v in injection.annotations.items()):
        return False
    inits = (template.get("spec") or {}).get("initContainers") or []
    if not inits or inits[0].get("name") != names.INIT_CONTAINER:
        return False
    if sum(c.get("name") == names.INIT_CONTAINER for c in inits) != 1:
        return False
    if any(inits[0].get(key) != injection.container[key] for key in ("image", "command", "args")):
        return False
    present = {v.get("name") for v in (template.get("spec") or {}).get("volumes") or []}
    return all(v["name"] in present for v in injection.volumes)


def _strip(template: dict[str, Any]) -> None:
    """Remove everything the restore injection put into ``template`` (in place)."""
    spec = template.get("spec") or {}
    if "initContainers" in spec:
        spec["initContainers"] = [c for c in spec["initContainers"] if c.get("name") != names.INIT_CONTAINER]
        if not spec["initContainers"]:
            del spec["initContainers"]
    if "volumes" in spec:
        spec["volumes"] = [v for v in spec["volumes"] if v.get("name") not in _OWN_VOLUMES]
        if not spec["volumes"]:
            del spec["volumes"]
    meta = template.get("metadata")
    if meta and meta.get("annotations") is not None:
        for key in _OWN_ANNOTATIONS:
            meta["annotations"].pop(key, None)
        if not meta["annotations"]:
            del meta["annotations"]


def inject(workload: dict[str, Any], injection: InitInjection) -> dict[str, Any] | None:
    """A copy of ``workload`` with the init-container first among its init-containers, or None when it
    already carries exactly this injection."""
    if is_injected(workload, injection):
        return None
    patched = copy.deepcopy(workload)
    template = _template(patched)
    _strip(template)
    spec = template["spec"]
    spec["initContainers"] = [copy.deepcopy(injection.container), *(spec.get("initContainers") or [])]
    spec.setdefault("volumes", []).extend(copy.deepcopy(list(injection.volumes)))
    meta = template.setdefault("metadata", {})
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    meta["annotations"].update(injection.annotations)
    workload_meta = patched.setdefault("metadata", {})
    if workload_meta.get("labels") is None:
        workload_meta["labels"] = {}
    workload_meta["labels"][names.LABEL_RESTORE_SESSION] = injection.session
    return patched


def applied_restore(workload: dict[str, Any]) -> str | None:
    """The RestoreSession (``RestoreSession/<name>``) whose init-container the workload carries, if any."""
    template = workload.get("spec", {}).get("template") or {}
    value = (template.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    return str(value) if value else None


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. Another session's init-container is left alone."""
    applied = applied_restore(workload)
    labels = workload.get("metadata", {}).get("labels") or {}
    ours_label = labels.get(names.LABEL_RESTORE_SESSION) == invoker.partition("/")[2]
    if applied != invoker and not ours_label:
        return None
    patched = copy.deepcopy(workload)
    if applied == invoker:
        _strip(_template(patched))
    if ours_label:
        meta = patched["metadata"]
        del meta["labels"][names.LABEL_RESTORE_SESSION]
        if not meta["labels"]:
            del meta["labels"]
    return patched
