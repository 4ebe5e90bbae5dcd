"""A Repository and its storage Secret as the user may read them, errors naming the object and field."""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.paths import collection_path, object_path
from stashlet.kube.rest import KubeApi
from stashlet.kubectl_stash.errors import PluginError, object_name


def secret_path(namespace: str, name: str = "") -> str:
    """The API path of a Secret (or of the namespace's Secrets when ``name`` is empty)."""
    return (
        object_path("", "v1", "secrets", namespace, name)
        if name
        else collection_path("", "v1", "secrets", namespace)
    )


async def read_repository(api: KubeApi, namespace: str, name: str) -> Repository:
    """The Repository, or a PluginError naming it."""
    what = object_name(names.KIND_REPOSITORY, namespace, name)
    try:
        return await StashClient(api).get(Repository, namespace, name)
    except NotFound as exc:
        raise PluginError(f"{what} not found") from exc
    except KubeError as exc:
        raise PluginError(f"{what}: {exc}") from exc


def storage_secret_name(repo: Repository) -> str:
    """``spec.backend.storageSecretName``, or a PluginError naming the field."""
    name = repo.spec.backend.storage_secret_name
    if not name:
        what = object_name(names.KIND_REPOSITORY, repo.metadata.namespace, repo.metadata.name or "")
        raise PluginError(f"{what}: spec.backend.storageSecretName is not set")
    return name


async def read_secret(api: KubeApi, repo: Repository) -> dict[str, Any]:
    """The Repository's storage Secret (whole object: the caller keeps its values in memory only)."""
    namespace, secret = repo.metadata.namespace or "", storage_secret_name(repo)
    what = object_name(names.KIND_REPOSITORY, namespace, repo.metadata.name or "")
    try:
        return await api.send("GET", secret_path(namespace, secret))
    except NotFound as exc:
        raise PluginError(
            f"{what}: storage Secret {namespace}/{secret} (spec.backend.storageSecretName) not found"
        ) from exc
    except KubeError as exc:
        raise PluginError(f"{what}: cannot read storage Secret {namespace}/{secret}: {exc}") from exc
