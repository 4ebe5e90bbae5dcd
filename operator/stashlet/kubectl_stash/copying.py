"""``cp secret``, ``cp repository`` and ``cp backupconfig``: copy objects into another namespace, as
Stash's plugin does (a Repository brings its storage Secret, a BackupConfiguration its Repository and
Secret). The copy keeps labels, annotations, data and spec, and drops what the server owns (uid,
resourceVersion, creation time, owner references, managed fields, status). An object already in the
destination is left as it is and named. A Secret's values are copied, never printed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.kube.custom import RESOURCES
from stashlet.kube.errors import Conflict, KubeError, NotFound
from stashlet.kube.paths import collection_path, object_path
from stashlet.kube.rest import KubeApi
from stashlet.kubectl_stash.errors import PluginError, object_name
from stashlet.kubectl_stash.repositories import secret_path, storage_secret_name

_KEPT_METADATA = ("name", "labels", "annotations")
Report = Callable[[str], None]


def _paths(kind: str, namespace: str, name: str = "") -> str:
    if kind == "Secret":
        return secret_path(namespace, name)
    res = RESOURCES[kind]
    if name:
        return object_path(res.group, res.version, res.plural, namespace, name)
    return collection_path(res.group, res.version, res.plural, namespace)


def _resource(kind: str) -> str:
    return "secret" if kind == "Secret" else f"{RESOURCES[kind].plural}.{names.GROUP}"


def copied(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``obj`` as a new object in ``namespace`` (module docstring)."""
    meta = obj.get("metadata") or {}
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    body["metadata"] = {k: meta[k] for k in _KEPT_METADATA if meta.get(k)}
    body["metadata"]["namespace"] = namespace
    annotations = body["metadata"].get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return body


async def _copy(
    api: KubeApi,
    kind: str,
    namespace: str,
    name: str,
    to: str,
    report: Report,
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    what = object_name(kind, namespace, name)
    try:
        obj = await api.send("GET", _paths(kind, namespace, name))
    except NotFound as exc:
        raise PluginError(f"{what} not found") from exc
    except KubeError as exc:
        raise PluginError(f"{what}: {exc}") from exc
    body = copied(obj, to)
    if adjust is not None:
        adjust(body)
    try:
        await api.send("POST", _paths(kind, to), body=body)
    except Conflict:
        report(f"{_resource(kind)}/{name} already exists in namespace {to}: left as it is")
        return obj
    except KubeError as exc:
        raise PluginError(f"cannot copy {what} to namespace {to}: {exc}") from exc
    report(f"{_resource(kind)}/{name} copied to namespace {to}")
    return obj


async def copy_secret(api: KubeApi, namespace: str, name: str, to: str, report: Report) -> None:
    """Copy Secret ``name``."""
    await _copy(api, "Secret", namespace, name, to, report)


async def copy_repository(api: KubeApi, namespace: str, name: str, to: str, report: Report) -> None:
    """Copy Repository ``name`` and its storage Secret."""
    try:
        repo = Repository.from_dict(await api.send("GET", _paths(names.KIND_REPOSITORY, namespace, name)))
    except NotFound as exc:
        raise PluginError(f"{object_name(names.KIND_REPOSITORY, namespace, name)} not found") from exc
    except KubeError as exc:
        raise PluginError(f"{object_name(names.KIND_REPOSITORY, namespace, name)}: {exc}") from exc
    await copy_secret(api, namespace, storage_secret_name(repo), to, report)
    await _copy(api, names.KIND_REPOSITORY, namespace, name, to, report)


async def copy_backupconfig(api: KubeApi, namespace: str, name: str, to: str, report: Report) -> None:
    """Copy BackupConfiguration ``name``, its Repository (when in the same namespace) and Secret."""
    what = object_name(names.KIND_BACKUP_CONFIGURATION, namespace, name)
    try:
        raw = await api.send("GET", _paths(names.KIND_BACKUP_CONFIGURATION, namespace, name))
    except NotFound as exc:
        raise PluginError(f"{what} not found") from exc
    except KubeError as exc:
        raise PluginError(f"{what}: {exc}") from exc
    ref = BackupConfiguration.from_dict(raw).spec.repository
    if ref is None:
        raise PluginError(f"{what}: spec.repository is not set")
    same = (ref.namespace or namespace) == namespace

    def local_reference(body: dict[str, Any]) -> None:
        if same:  # the copied Repository, in the destination
            body["spec"]["repository"].pop("namespace", None)

    if same:
        await copy_repository(api, namespace, ref.name, to, report)
    await _copy(api, names.KIND_BACKUP_CONFIGURATION, namespace, name, to, report, local_reference)
