"""The parts every agent container the operator writes shares: pure.

The ``stash`` sidecar (:mod:`sidecar_container`), the ``stash-init`` init-container (:mod:`init_container`)
and a Task's Job container (:mod:`stashlet.operator.taskjobs.backup_job`) all get an emptyDir at
``/stash-tmp`` shaped by the object's ``tempDir``, the local backend's volume when the Repository uses one,
the downward-API identity followed by the user's ``runtimeSettings.container.env``, some of the other
container ``runtimeSettings`` as given, and the operator's default resources where those set none.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from stashlet.api import agent_contract, names
from stashlet.api import agent_identity as identity
from stashlet.api.common import EmptyDirSettings, KubeObject
from stashlet.api.repository import Repository
from stashlet.operator.settings import OperatorSettings

_LOCAL_MOUNT_KEYS = ("mountPath", "subPath")
"""Fields of a local backend that say where it is mounted, not what the volume is."""


def empty_dir(temp_dir: EmptyDirSettings | None) -> dict[str, Any]:
    """The ``emptyDir`` source of the temporary directory, honouring ``tempDir``."""
    source: dict[str, Any] = {}
    if temp_dir is not None:
        if temp_dir.medium:
            source["medium"] = temp_dir.medium
        if temp_dir.size_limit is not None:
            source["sizeLimit"] = temp_dir.size_limit
    return source


def local_backend(
    repository: Repository | None, volume_name: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The local backend's volume (named ``volume_name``) and its mount, when the Repository uses one."""
    local = repository.spec.backend.local if repository else None
    if local is None:
        return None
    source = {k: v for k, v in local.to_dict().items() if k not in _LOCAL_MOUNT_KEYS}
    return {"name": volume_name, **source}, {"name": volume_name, "mountPath": local.mount_path}


def agent_env(runtime_container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The downward-API identity, then the user's env (never overriding the identity)."""
    env = list(agent_contract.downward_env())
    own = {str(e["name"]) for e in env}
    env += [e for e in runtime_container.get("env") or [] if e.get("name") not in own]
    return env


def copy_fields(target: dict[str, Any], source: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Copy each of ``keys`` that ``source`` sets into ``target`` (deep copies)."""
    for key in keys:
        if source.get(key) is not None:
            target[key] = copy.deepcopy(source[key])


def default_resources(container: dict[str, Any], resources: Mapping[str, Any] | None) -> None:
    """Give ``container`` the operator's default ``resources`` (``--agent-resources``) unless the object's
    runtimeSettings already gave it some."""
    if resources and container.get("resources") is None:
        container["resources"] = copy.deepcopy(dict(resources))


def injection_hash(container: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]]) -> str:
    """A short, stable digest of what an injection puts into a pod template (container and volumes):
    recorded in the template's annotations, so an unchanged injection is recognised and never rolled."""
    canonical = json.dumps(
        {"container": container, "volumes": list(volumes)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


DATA_ACCESS_SECURITY_CONTEXT: dict[str, Any] = {"runAsUser": 0, "runAsGroup": 0}
"""The base of the sidecar's and ``stash-init``'s securityContext: root, because they read and restore
the workload's files whatever their owners and modes (a provisioned volume is often ``0750 root``; a
restore sets owners back). Stash does this for its init-container; stashlet does it for the sidecar too,
so that no file is left out of a backup for its mode; and for a stand-alone claim's Job. The agent image's
own user (non-root) is for the resource-dump Job, which reads only the API."""


def default_security_context(container: dict[str, Any]) -> None:
    """Give a data-touching agent container :data:`DATA_ACCESS_SECURITY_CONTEXT`, with the fields of the
    object's ``runtimeSettings.container.securityContext`` (already copied in) laid over it, as Stash
    upserts its init-container's."""
    own = container.get("securityContext") or {}
    container["securityContext"] = {**copy.deepcopy(DATA_ACCESS_SECURITY_CONTEXT), **own}


def agent_credentials(
    account: str, namespace: str, repository: Repository | None, *, token_volume: str, secret_volume: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes, mounts and env that give an agent container ``account``'s token (its own identity,
    a Secret of the same name) and, where the Repository lives in ``namespace``, the storage Secret
    mounted (read from files, never through the API)."""
    volumes: list[dict[str, Any]] = [
        {"name": token_volume, "secret": {"secretName": account, "optional": True}}
    ]
    mounts: list[dict[str, Any]] = [
        {"name": token_volume, "mountPath": identity.KUBE_TOKEN_DIR, "readOnly": True}
    ]
    env: list[dict[str, Any]] = [{"name": identity.ENV_KUBE_TOKEN_DIR, "value": identity.KUBE_TOKEN_DIR}]
    secret = repository.spec.backend.storage_secret_name if repository is not None else None
    if repository is not None and secret and (repository.metadata.namespace or namespace) == namespace:
        volumes.append({"name": secret_volume, "secret": {"secretName": secret, "optional": True}})
        path = f"{identity.STORAGE_SECRETS_DIR}/{secret}"
        mounts.append({"name": secret_volume, "mountPath": path, "readOnly": True})
        env.append({"name": identity.ENV_STORAGE_SECRETS_DIR, "value": identity.STORAGE_SECRETS_DIR})
    return volumes, mounts, env


def agent_storage(
    temp_dir: EmptyDirSettings | None, repository: Repository | None, tmp_volume: str, local_volume: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes of an agent container and their mounts: the emptyDir ``tmp_volume`` at
    ``/stash-tmp`` (``tempDir``), then the local backend's volume ``local_volume`` when the Repository
    uses one."""
    volumes: list[dict[str, Any]] = [{"name": tmp_volume, "emptyDir": empty_dir(temp_dir)}]
    mounts: list[dict[str, Any]] = [{"name": tmp_volume, "mountPath": names.TMP_MOUNT_PATH}]
    local = local_backend(repository, local_volume)
    if local is not None:
        volumes.append(local[0])
        mounts.append(local[1])
    return volumes, mounts


def agent_args(
    mode: str,
    invoker: KubeObject,
    target: tuple[str, str],
    settings: OperatorSettings,
    backup_session: str | None = None,
) -> list[str]:
    """An agent container's ``args`` (its command is ``stashlet-agent``) for ``invoker`` and ``target``
    (kind, name; empty for a Job), from the operator's settings."""
    return agent_contract.AgentInvocation(
        mode=mode,
        invoker_kind=invoker.kind,
        invoker_name=invoker.metadata.name or "",
        target_kind=target[0],
        target_name=target[1],
        status_port=settings.status_port,
        tmp_dir=names.TMP_MOUNT_PATH,
        pushgateway_url=settings.pushgateway_url,
        log_level=settings.agent_log_level,
        backup_session=backup_session,
    ).args()


def agent_container(
    name: str,
    args: list[str],
    mounts: list[dict[str, Any]],
    runtime: Mapping[str, Any],
    runtime_fields: Iterable[str],
    settings: OperatorSettings,
    *,
    ports: list[dict[str, Any]] | None = None,
    probes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An agent container running ``stashlet-agent <args>``: the downward-API identity and the user's env,
    ``mounts``, the ``ports`` and ``probes`` given, the ``runtime_fields`` of ``runtime``
    (``runtimeSettings.container``) as given, and the operator's default resources where those set none."""
    container: dict[str, Any] = {
        "name": name,
        "image": settings.agent_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [agent_contract.AGENT_COMMAND],
        "args": args,
        "env": agent_env(runtime),
    }
    if ports is not None:
        container["ports"] = ports
    container["volumeMounts"] = mounts
    container.update(probes or {})
    copy_fields(container, runtime, runtime_fields)
    default_resources(container, settings.agent_resources)
    return container


@dataclass(frozen=True)
class AgentInjection:
    """What goes into a pod template: the agent container, its volumes, and (in the annotations named
    by :attr:`INVOKER_ANNOTATION` and :attr:`HASH_ANNOTATION`) what records them.

    A subclass says where its container goes (:attr:`FIELD`, first or last) and which workload label,
    volumes and annotations are its own; :func:`inject` and :func:`remove_recorded` work from those.
    """

    INVOKER_ANNOTATION: ClassVar[str]
    HASH_ANNOTATION: ClassVar[str]
    CONTAINER: ClassVar[str]
    """The container's name."""
    FIELD: ClassVar[str]
    """The pod-spec list the container goes into: ``containers`` or ``initContainers``."""
    FIRST: ClassVar[bool]
    """True: the container goes first in :attr:`FIELD` (and must stay there); else last."""
    LABEL: ClassVar[str]
    """The workload label valued with :attr:`owner`, so every workload carrying it can be found."""
    OWN_VOLUMES: ClassVar[tuple[str, ...]]

    container: dict[str, Any]
    volumes: tuple[dict[str, Any], ...]
    invoker: str
    owner: str
    """The invoker's name: the value of :attr:`LABEL`."""
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", injection_hash(self.container, self.volumes))

    @property
    def annotations(self) -> dict[str, str]:
        """The pod-template annotations that record this injection."""
        return {self.INVOKER_ANNOTATION: self.invoker, self.HASH_ANNOTATION: self.hash}

    @classmethod
    def made_for(
        cls, owner: KubeObject, container: dict[str, Any], volumes: Iterable[dict[str, Any]]
    ) -> Self:
        """The injection of ``container`` (run as root unless the user's settings say otherwise) and
        ``volumes`` for ``owner``."""
        default_security_context(container)
        invoker = f"{owner.kind}/{owner.metadata.name}"
        return cls(
            container=container, volumes=tuple(volumes), invoker=invoker, owner=owner.metadata.name or ""
        )

    @classmethod
    def strip(cls, template: dict[str, Any]) -> None:
        """Remove every container, volume and annotation of this kind from ``template`` (in place)."""
        spec = template.get("spec") or {}
        if cls.FIELD in spec:
            spec[cls.FIELD] = [c for c in spec[cls.FIELD] if c.get("name") != cls.CONTAINER]
            if not spec[cls.FIELD] and cls.FIELD != "containers":  # a pod always keeps its containers list
                del spec[cls.FIELD]
        strip_volumes_and_annotations(
            template, cls.OWN_VOLUMES, (cls.INVOKER_ANNOTATION, cls.HASH_ANNOTATION)
        )


def is_injected(workload: dict[str, Any], injection: AgentInjection) -> bool:
    """True when the pod template already carries exactly ``injection`` (as far as the server keeps it):
    the record, one container of its name (first where it must be), the same image, command and
    arguments, and its volumes."""
    if not carries_record(workload, injection, injection.LABEL, injection.owner):
        return False
    spec = (workload.get("spec", {}).get("template") or {}).get("spec") or {}
    listed = spec.get(injection.FIELD) or []
    name = injection.container["name"]
    ours = [c for c in listed if c.get("name") == name]
    if len(ours) != 1 or (injection.FIRST and listed[0].get("name") != name):
        return False
    if any(ours[0].get(key) != injection.container[key] for key in ("image", "command", "args")):
        return False
    present = {v.get("name") for v in spec.get("volumes") or []}
    return all(v["name"] in present for v in injection.volumes)


def inject(workload: dict[str, Any], injection: AgentInjection) -> dict[str, Any] | None:
    """A copy of ``workload`` carrying ``injection`` exactly once, or None when it already does."""
    if is_injected(workload, injection):
        return None
    patched = copy.deepcopy(workload)
    template = pod_template(patched)
    injection.strip(template)
    spec = template["spec"]
    ours, others = copy.deepcopy(injection.container), spec.get(injection.FIELD) or []
    spec[injection.FIELD] = [ours, *others] if injection.FIRST else [*others, ours]
    record(patched, template, injection, injection.LABEL, injection.owner)
    return patched


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """``workload``'s pod template, with a ``spec``, created where missing."""
    template: dict[str, Any] = workload.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("spec", {})
    return template


def carries_record(workload: dict[str, Any], injection: AgentInjection, label: str, value: str) -> bool:
    """True when ``workload`` has ``label: value`` and its pod template the annotations of ``injection``."""
    labels = workload.get("metadata", {}).get("labels") or {}
    if labels.get(label) != value:
        return False
    template = workload.get("spec", {}).get("template") or {}
    annotations = template.get("metadata", {}).get("annotations") or {}
    return all(annotations.get(k) == v for k, v in injection.annotations.items())


def strip_volumes_and_annotations(
    template: dict[str, Any], own_volumes: Iterable[str], own_annotations: Iterable[str]
) -> None:
    """Remove ``own_volumes`` and ``own_annotations`` from ``template`` (in place), and the lists they
    leave empty."""
    spec = template.get("spec") or {}
    if "volumes" in spec:
        spec["volumes"] = [v for v in spec["volumes"] if v.get("name") not in own_volumes]
        if not spec["volumes"]:
            del spec["volumes"]
    meta = template.get("metadata")
    if meta and meta.get("annotations") is not None:
        for key in own_annotations:
            meta["annotations"].pop(key, None)
        if not meta["annotations"]:
            del meta["annotations"]


def record(
    patched: dict[str, Any], template: dict[str, Any], injection: AgentInjection, label: str, value: str
) -> None:
    """Add ``injection``'s volumes and annotations to ``template`` and ``label: value`` to ``patched``,
    the workload holding it (in place)."""
    template["spec"].setdefault("volumes", []).extend(copy.deepcopy(list(injection.volumes)))
    meta = template.setdefault("metadata", {})
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    meta["annotations"].update(injection.annotations)
    workload_meta = patched.setdefault("metadata", {})
    if workload_meta.get("labels") is None:
        workload_meta["labels"] = {}
    workload_meta["labels"][label] = value


def remove_recorded(
    workload: dict[str, Any], invoker: str, kind: type[AgentInjection]
) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (its ``kind`` of container, volumes and
    annotations, when the invoker annotation names it) and without its label, or None when there is
    nothing of it. What another invoker injected is left alone."""
    template = workload.get("spec", {}).get("template") or {}
    applied = (template.get("metadata", {}).get("annotations") or {}).get(kind.INVOKER_ANNOTATION)
    labels = workload.get("metadata", {}).get("labels") or {}
    ours_label = labels.get(kind.LABEL) == invoker.partition("/")[2]
    if applied != invoker and not ours_label:
        return None
    patched = copy.deepcopy(workload)
    if applied == invoker:
        kind.strip(pod_template(patched))
    if ours_label:
        meta = patched["metadata"]
        del meta["labels"][kind.LABEL]
        if not meta["labels"]:
            del meta["labels"]
    return patched
