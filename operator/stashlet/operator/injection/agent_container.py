"""The parts every agent container the operator writes shares: pure.

The ``stash`` sidecar (:mod:`sidecar_container`), the ``stash-init`` init-container (:mod:`init_container`)
and the kubedump Job's container (:mod:`stashlet.operator.kubedump.backup_job`) all get an emptyDir at
``/stash-tmp`` shaped by the object's ``tempDir``, the local backend's volume when the Repository uses one,
the downward-API identity followed by the user's ``runtimeSettings.container.env``, some of the other
container ``runtimeSettings`` as given, and the operator's default resources where those set none.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from stashlet.api import agent_contract
from stashlet.api.common import EmptyDirSettings
from stashlet.api.repository import Repository

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
so that no file is left out of a backup for its mode. The agent image's own user (non-root) is for the
kubedump Job, which reads only the API."""


def default_security_context(container: dict[str, Any]) -> None:
    """Give a data-touching agent container :data:`DATA_ACCESS_SECURITY_CONTEXT`, with the fields of the
    object's ``runtimeSettings.container.securityContext`` (already copied in) laid over it, as Stash
    upserts its init-container's."""
    own = container.get("securityContext") or {}
    container["securityContext"] = {**copy.deepcopy(DATA_ACCESS_SECURITY_CONTEXT), **own}
