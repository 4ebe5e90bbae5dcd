"""Workload + BackupConfiguration -> the pod template with the ``stash`` sidecar, and back: pure.

The sidecar runs ``stashlet-agent sidecar`` with the invoker and target arguments from
:class:`stashlet.api.agent_contract.AgentInvocation`, its pod's identity from the downward API, the target's
``volumeMounts`` read-only, the ``stash-tmp-dir`` emptyDir at ``/stash-tmp`` (``spec.tempDir``), a local
backend's volume when the Repository uses one, the container ``runtimeSettings``, and the status port
with liveness (``/healthz``) and readiness (``/readyz``) probes.

Two annotations on the pod template record what was applied: the invoker (``BackupConfiguration/<name>``)
and a hash of the sidecar and its volumes; the workload itself is labelled
``stash.appscode.com/backup-configuration: <name>`` (no rollout), so it can be found again when the
configuration moves to another target or goes away. A workload whose template already carries the
desired hash, container and volumes is left alone, so reconciling an unchanged configuration causes no
rollout, and a change causes exactly one.

GitOps (Argo CD, Flux): re-applying the workload's original manifest with ``kubectl apply`` (client-side,
three-way) or server-side apply leaves the sidecar in place, since the manifest never owned it. A tool
that *replaces* the object (``kubectl replace``, Argo CD's ``Replace=true``, Flux ``force``) drops the
sidecar and the annotations together; the operator sees the workload change, injects once more, and the
result is the same template as before (same hash), so there is exactly one rollout and no loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import VolumeMount
from stashlet.api.repository import Repository
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

LOCAL_BACKEND_VOLUME = "stash-local"
"""The volume holding a ``local`` backend, mounted at the backend's ``mountPath``."""

STATUS_PORT_NAME = "stash-status"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

# Keys of a LocalSpec that are not part of the volume source.
# Container fields taken as they are from runtimeSettings.container.
_RUNTIME_FIELDS = ("resources", "securityContext", "lifecycle", "livenessProbe", "readinessProbe", "envFrom")
_OWN_VOLUMES = (names.TMP_VOLUME, LOCAL_BACKEND_VOLUME)
_OWN_ANNOTATIONS = (names.ANNOTATION_LAST_APPLIED_INVOKER, names.ANNOTATION_INJECTION_HASH)


@dataclass(frozen=True)
class Injection:
    """What goes into a pod template: the sidecar, its volumes, and the annotations that record them."""

    container: dict[str, Any]
    volumes: tuple[dict[str, Any], ...]
    invoker: str
    config: str
    """The BackupConfiguration's name, also set as the workload's ``stash.appscode.com/backup-configuration``
    label, so that every workload carrying its sidecar can be found by label."""
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", injection_hash(self.container, self.volumes))

    @property
    def annotations(self) -> dict[str, str]:
        """The pod-template annotations that record this injection."""
        return {
            names.ANNOTATION_LAST_APPLIED_INVOKER: self.invoker,
            names.ANNOTATION_INJECTION_HASH: self.hash,
        }


def target_mounts(bc: BackupConfiguration) -> list[VolumeMount]:
    """``spec.target.volumeMounts`` (empty when not given)."""
    return list(bc.spec.target.volume_mounts or []) if bc.spec.target else []


def invoker_annotation(bc: BackupConfiguration) -> str:
    """The value of the ``last-applied-invoker`` annotation: ``BackupConfiguration/<name>``."""
    return f"{names.KIND_BACKUP_CONFIGURATION}/{bc.metadata.name}"


def invocation(
    bc: BackupConfiguration, target_kind: str, target_name: str, settings: OperatorSettings
) -> list[str]:
    """The sidecar's ``args`` (its command is ``stashlet-agent``)."""
    return agent_contract.AgentInvocation(
        mode=agent_contract.MODE_SIDECAR,
        invoker_kind=names.KIND_BACKUP_CONFIGURATION,
        invoker_name=bc.metadata.name or "",
        target_kind=target_kind,
        target_name=target_name,
        status_port=settings.status_port,
        tmp_dir=names.TMP_MOUNT_PATH,
        pushgateway_url=settings.pushgateway_url,
        log_level=settings.agent_log_level,
    ).args()


def _probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 10, "failureThreshold": 3}


def build_injection(
    bc: BackupConfiguration,
    target_kind: str,
    target_name: str,
    repository: Repository | None,
    settings: OperatorSettings,
) -> Injection:
    """The sidecar and volumes for ``bc``'s target (see the module docstring)."""
    port = settings.status_port
    mounts: list[dict[str, Any]] = []
    for mount in target_mounts(bc):
        entry = mount.to_dict()
        entry["readOnly"] = True
        mounts.append(entry)
    mounts.append({"name": names.TMP_VOLUME, "mountPath": names.TMP_MOUNT_PATH})
    volumes: list[dict[str, Any]] = [{"name": names.TMP_VOLUME, "emptyDir": empty_dir(bc.spec.temp_dir)}]
    local = local_backend(repository, LOCAL_BACKEND_VOLUME)
    if local is not None:
        volumes.append(local[0])
        mounts.append(local[1])

    runtime = (bc.spec.runtime_settings.container if bc.spec.runtime_settings else None) or {}
    env = agent_env(runtime)
    container: dict[str, Any] = {
        "name": names.SIDECAR_CONTAINER,
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [agent_contract.AGENT_COMMAND],
        "args": invocation(bc, target_kind, target_name, settings),
        "env": env,
        "ports": [{"name": STATUS_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "livenessProbe": _probe(HEALTH_PATH, port),
        "readinessProbe": _probe(READY_PATH, port),
    }
    copy_fields(container, runtime, _RUNTIME_FIELDS)
    default_resources(container, settings.agent_resources)
    default_security_context(container)
    return Injection(
        container=container,
        volumes=tuple(volumes),
        invoker=invoker_annotation(bc),
        config=bc.metadata.name or "",
    )


def _template(workload: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = workload.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("spec", {})
    return template


def is_injected(workload: dict[str, Any], injection: Injection) -> bool:
    """True when the pod template already carries exactly this injection (as far as the server keeps it)."""
    labels = workload.get("metadata", {}).get("labels") or {}
    if labels.get(names.LABEL_BACKUP_CONFIGURATION) != injection.config:
        return False
    template = workload.get("spec", {}).get("template") or {}
    annotations = template.get("metadata", {}).get("annotations") or {}
    if any(annotations.get(k) != v for k, v in injection.annotations.items()):
        return False
    spec = template.get("spec") or {}
    sidecars = [c for c in spec.get("containers") or [] if c.get("name") == names.SIDECAR_CONTAINER]
    if len(sidecars) != 1:
        return False
    for key in ("image", "command", "args"):
        if sidecars[0].get(key) != injection.container[key]:
            return False
    present = {v.get("name") for v in spec.get("volumes") or []}
    return all(v["name"] in present for v in injection.volumes)


def _strip(template: dict[str, Any]) -> None:
    """Remove everything stashlet put into ``template`` (in place)."""
    spec = template.get("spec") or {}
    if "containers" in spec:
        spec["containers"] = [c for c in spec["containers"] if c.get("name") != names.SIDECAR_CONTAINER]
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


def inject(workload: dict[str, Any], injection: Injection) -> dict[str, Any] | None:
    """A copy of ``workload`` carrying ``injection`` exactly once, or None when it already does."""
    if is_injected(workload, injection):
        return None
    patched = copy.deepcopy(workload)
    template = _template(patched)
    _strip(template)
    spec = template["spec"]
    spec.setdefault("containers", []).append(copy.deepcopy(injection.container))
    spec.setdefault("volumes", []).extend(copy.deepcopy(list(injection.volumes)))
    meta = template.setdefault("metadata", {})
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    meta["annotations"].update(injection.annotations)
    workload_meta = patched.setdefault("metadata", {})
    if workload_meta.get("labels") is None:
        workload_meta["labels"] = {}
    workload_meta["labels"][names.LABEL_BACKUP_CONFIGURATION] = injection.config
    return patched


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. A template injected for another invoker is left alone.
    """
    template = workload.get("spec", {}).get("template") or {}
    applied = (template.get("metadata", {}).get("annotations") or {}).get(
        names.ANNOTATION_LAST_APPLIED_INVOKER
    )
    labels = workload.get("metadata", {}).get("labels") or {}
    ours_label = labels.get(names.LABEL_BACKUP_CONFIGURATION) == invoker.partition("/")[2]
    if applied != invoker and not ours_label:
        return None
    patched = copy.deepcopy(workload)
    if applied == invoker:
        _strip(_template(patched))
    if ours_label:
        meta = patched["metadata"]
        del meta["labels"][names.LABEL_BACKUP_CONFIGURATION]
        if not meta["labels"]:
            del meta["labels"]
    return patched
