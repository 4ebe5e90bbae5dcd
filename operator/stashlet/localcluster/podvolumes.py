"""A pod's volumes as host folders, and the bind mounts that put them at a container's mount paths.

Under the kubelet's ``state_dir``:

- ``pods/<pod uid>/volumes/<volume>``: ``emptyDir``, and ``configMap``, ``secret``, ``downwardAPI`` and
  ``projected`` volumes written the way the kubelet's atomic writer does (a ``..<timestamp>`` folder,
  ``..data`` pointing at it, and one link per top-level entry), so a refresh swaps all files at once
  under a running container;
- ``volumes/<namespace>/pvc/<claim>``: a ``persistentVolumeClaim``, shared by every pod mounting the
  claim, so data outlives the pod like on a real volume.

``hostPath`` is the host path itself (created when ``type`` is empty, ``DirectoryOrCreate`` or
``FileOrCreate``). ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` volumes are mounted
read-only, as on Kubernetes; any other volume type is an error naming the volume.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stashlet.localcluster.podspec import (
    ContainerConfigError,
    NodeResources,
    Obj,
    Objects,
    configmap_data,
    expand,
    field_value,
    pod_ref,
    resource_value,
    secret_data,
)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
API_DATA_TYPES = ("configMap", "secret", "downwardAPI", "projected")
FileSet = dict[str, tuple[bytes, int]]
TokenKey = tuple[str, int]
"""(audience, expirationSeconds) of a projected service-account token; "" is the API's audience."""


@dataclass(frozen=True)
class Mount:
    """One bind mount of a container."""

    source: str
    target: str
    read_only: bool

    def as_spec(self) -> dict[str, object]:
        """The shape podexec reads."""
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


@dataclass(frozen=True)
class Layout:
    """Where volumes live under the kubelet's state folder."""

    state_dir: Path

    def pod_dir(self, uid: str) -> Path:
        """Everything of one pod (by UID: a recreated pod with the same name starts afresh)."""
        return self.state_dir / "pods" / uid

    def volume_dir(self, uid: str, volume: str) -> Path:
        """A pod-scoped volume's folder."""
        return self.pod_dir(uid) / "volumes" / volume

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        """A claim's folder, the same for every pod that mounts it."""
        return self.state_dir / "volumes" / namespace / "pvc" / claim


def token_keys(pod: Obj) -> set[TokenKey]:
    """The projected service-account tokens a pod's volumes ask for."""
    keys: set[TokenKey] = set()
    for volume in pod.get("spec", {}).get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if token := source.get("serviceAccountToken"):
                keys.add(
                    (token.get("audience", ""), int(token.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)))
                )
    return keys


def _check_rel(pod: Obj, volume: str, rel: str) -> str:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not rel:
        raise ContainerConfigError(f'pod {pod_ref(pod)} volume "{volume}": invalid path {rel!r}')
    return str(path)


def _keyed_files(
    pod: Obj, volume: str, kind: str, source: Obj, objects: Objects, default_mode: int
) -> FileSet:
    """The files of a ``secret`` or ``configMap`` volume (or projected source)."""
    name = source.get("secretName") or source.get("name", "")
    namespace = pod["metadata"].get("namespace", "")
    obj = (objects.secrets if kind == "Secret" else objects.configmaps).get(name)
    where = f'pod {pod_ref(pod)} volume "{volume}"'
    if obj is None:
        if source.get("optional"):
            return {}
        raise ContainerConfigError(f'{where}: {kind.lower()} "{name}" not found')
    data = secret_data(obj) if kind == "Secret" else configmap_data(obj)
    mode = int(source.get("defaultMode", default_mode))
    if not source.get("items"):
        return {_check_rel(pod, volume, key): (value, mode) for key, value in data.items()}
    files: FileSet = {}
    for item in source["items"]:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise ContainerConfigError(
                f'{where}: couldn\'t find key "{item["key"]}" in {kind} {namespace}/{name}'
            )
        files[_check_rel(pod, volume, item["path"])] = (data[item["key"]], int(item.get("mode", mode)))
    return files


def _downward_files(
    pod: Obj, volume: str, items: list[Obj], default_mode: int, node: NodeResources
) -> FileSet:
    files: FileSet = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], volume=True)
        else:
            ref = item["resourceFieldRef"]
            containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
            container = next((c for c in containers if c["name"] == ref.get("containerName")), None)
            if container is None:
                raise ContainerConfigError(
                    f'pod {pod_ref(pod)} volume "{volume}": no container {ref.get("containerName")!r}'
                )
            value = resource_value(container, ref["resource"], ref.get("divisor"), node)
        files[_check_rel(pod, volume, item["path"])] = (value.encode(), int(item.get("mode", default_mode)))
    return files


def api_data_files(
    pod: Obj, volume: Obj, objects: Objects, tokens: Mapping[TokenKey, str], node: NodeResources
) -> FileSet:
    """The files of a ``configMap``, ``secret``, ``downwardAPI`` or ``projected`` volume."""
    name = volume["name"]
    if "secret" in volume:
        return _keyed_files(pod, name, "Secret", volume["secret"], objects, DEFAULT_MODE)
    if "configMap" in volume:
        return _keyed_files(pod, name, "ConfigMap", volume["configMap"], objects, DEFAULT_MODE)
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return _downward_files(pod, name, source.get("items", []), mode, node)
    projected = volume["projected"]
    mode = int(projected.get("defaultMode", DEFAULT_MODE))
    files: FileSet = {}
    for source in projected.get("sources", []):
        if "secret" in source:
            files.update(
                _keyed_files(pod, name, "Secret", {**source["secret"], "defaultMode": mode}, objects, mode)
            )
        elif "configMap" in source:
            files.update(
                _keyed_files(
                    pod, name, "ConfigMap", {**source["configMap"], "defaultMode": mode}, objects, mode
                )
            )
        elif "downwardAPI" in source:
            files.update(_downward_files(pod, name, source["downwardAPI"].get("items", []), mode, node))
        elif "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            key = (token.get("audience", ""), int(token.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)))
            files[_check_rel(pod, name, token["path"])] = (tokens[key].encode(), mode)
        else:
            raise ContainerConfigError(
                f'pod {pod_ref(pod)} volume "{name}": projected source {sorted(source)} '
                "is not supported by the process kubelet"
            )
    return files


def write_atomic(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Write ``files`` the way the kubelet's AtomicWriter does, replacing what was there at once."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = Path(tempfile.mkdtemp(prefix="..", dir=directory))
    stamp.chmod(0o755)
    for rel, (data, mode) in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    data_link = directory / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = directory / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp.name)
    tmp_link.rename(data_link)
    top = {rel.split("/", 1)[0] for rel in files}
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in top:
            entry.unlink()
    for name in top:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    if old and old != stamp.name:
        shutil.rmtree(directory / old, ignore_errors=True)


def host_path(pod: Obj, volume: Obj) -> Path:
    """A ``hostPath`` volume's path, created or checked according to its ``type``."""
    source = volume["hostPath"]
    path = Path(source["path"])
    kind = source.get("type", "")
    where = f'pod {pod_ref(pod)} volume "{volume["name"]}"'
    if kind in ("", "DirectoryOrCreate") and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise ContainerConfigError(f"{where}: hostPath {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise ContainerConfigError(f"{where}: hostPath {path} is not a file")
    elif not path.exists():
        raise ContainerConfigError(f"{where}: hostPath {path} ({kind}) does not exist")
    return path


def volume_kind(volume: Obj) -> str:
    """The volume source's type, e.g. ``emptyDir``."""
    return next((key for key in volume if key != "name"), "")


def container_mounts(
    pod: Obj, container: Obj, volumes: Mapping[str, tuple[Path, bool]], env: Mapping[str, str]
) -> list[Mount]:
    """The container's ``volumeMounts`` as bind mounts, parents first.

    ``volumes`` maps a volume name to its host folder and whether the volume is read-only by nature.
    A ``subPath`` that does not exist in the volume is created as a folder, as the kubelet does.
    """
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise ContainerConfigError(
                f'pod {pod_ref(pod)} container "{container["name"]}": no volume "{mount["name"]}"'
            )
        base, volume_read_only = volumes[mount["name"]]
        sub = mount.get("subPath") or (expand(mount["subPathExpr"], env) if mount.get("subPathExpr") else "")
        source = base
        if sub:
            source = base / _check_rel(pod, mount["name"], sub)
            if not os.path.lexists(source):
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly")) or volume_read_only))
    return sorted(mounts, key=lambda m: len(PurePosixPath(m.target).parts))
