"""Typed access to the stash.appscode.com objects, and status updates that never lose a writer's work.

``update_status`` reads the object, lets the caller mutate its model, and writes the status back
with the read resourceVersion; on 409 Conflict (another host wrote in between) it reads again and
re-applies the mutation, so concurrent hosts updating one BackupSession keep each other's entries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import KubeObject
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.client import call
from stashlet.kube.errors import Conflict

log = logging.getLogger(__name__)

M = TypeVar("M", bound=KubeObject)


@dataclass(frozen=True)
class Resource:
    """Where a kind is served."""

    group: str
    version: str
    plural: str
    namespaced: bool = True


RESOURCES: dict[type[KubeObject], Resource] = {
    Repository: Resource(names.GROUP, names.V1ALPHA1, names.REPOSITORIES),
    BackupConfiguration: Resource(names.GROUP, names.V1BETA1, names.BACKUP_CONFIGURATIONS),
    BackupSession: Resource(names.GROUP, names.V1BETA1, names.BACKUP_SESSIONS),
    RestoreSession: Resource(names.GROUP, names.V1BETA1, names.RESTORE_SESSIONS),
    BackupBlueprint: Resource(names.GROUP, names.V1BETA1, names.BACKUP_BLUEPRINTS, namespaced=False),
}

CONFLICT_RETRIES = 10


class StashClient:
    """Get, list, create, patch, delete and update the status of the stash kinds, as typed models."""

    def __init__(self, api: client.ApiClient) -> None:
        """Use ``api`` for every call."""
        self.custom = client.CustomObjectsApi(api)

    def list_fn(self, model: type[KubeObject], namespace: str | None = None) -> Callable[..., Any]:
        """A list function for :func:`stashlet.kube.watch.watch` over this kind."""
        res = RESOURCES[model]
        if res.namespaced and namespace:
            ns = namespace

            async def namespaced(**kwargs: Any) -> Any:
                return await self.custom.list_namespaced_custom_object(
                    res.group, res.version, ns, res.plural, **kwargs
                )

            return namespaced

        async def cluster(**kwargs: Any) -> Any:
            return await self.custom.list_cluster_custom_object(res.group, res.version, res.plural, **kwargs)

        return cluster

    async def get(self, model: type[M], namespace: str | None, name: str) -> M:
        """Read one object; NotFound when it does not exist."""
        res = RESOURCES[model]
        if res.namespaced:
            obj = await call(
                self.custom.get_namespaced_custom_object, res.group, res.version, namespace, res.plural, name
            )
        else:
            obj = await call(self.custom.get_cluster_custom_object, res.group, res.version, res.plural, name)
        return model.from_dict(obj)

    async def list(self, model: type[M], namespace: str | None = None, label_selector: str = "") -> list[M]:
        """List objects (all namespaces when ``namespace`` is None)."""
        res = RESOURCES[model]
        if res.namespaced and namespace:
            body = await call(
                self.custom.list_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                label_selector=label_selector,
            )
        else:
            body = await call(
                self.custom.list_cluster_custom_object,
                res.group,
                res.version,
                res.plural,
                label_selector=label_selector,
            )
        return [model.from_dict(item) for item in body.get("items", [])]

    async def create(self, obj: M) -> M:
        """Create ``obj``; Conflict when it exists."""
        model = type(obj)
        res = RESOURCES[model]
        body = obj.to_dict()
        if res.namespaced:
            made = await call(
                self.custom.create_namespaced_custom_object,
                res.group,
                res.version,
                obj.metadata.namespace,
                res.plural,
                body,
            )
        else:
            made = await call(
                self.custom.create_cluster_custom_object, res.group, res.version, res.plural, body
            )
        return model.from_dict(made)

    async def patch(self, model: type[M], namespace: str | None, name: str, patch: dict[str, Any]) -> M:
        """Merge-patch the object (metadata and spec)."""
        res = RESOURCES[model]
        if res.namespaced:
            made = await call(
                self.custom.patch_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        else:
            made = await call(
                self.custom.patch_cluster_custom_object,
                res.group,
                res.version,
                res.plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        return model.from_dict(made)

    async def delete(self, model: type[KubeObject], namespace: str | None, name: str) -> None:
        """Delete the object (background propagation)."""
        res = RESOURCES[model]
        if res.namespaced:
            await call(
                self.custom.delete_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                name,
                propagation_policy="Background",
            )
        else:
            await call(
                self.custom.delete_cluster_custom_object,
                res.group,
                res.version,
                res.plural,
                name,
                propagation_policy="Background",
            )

    async def replace_status(self, obj: M) -> M:
        """Write ``obj``'s status with its resourceVersion; Conflict when someone wrote in between."""
        model = type(obj)
        res = RESOURCES[model]
        body = obj.to_dict()
        if res.namespaced:
            made = await call(
                self.custom.replace_namespaced_custom_object_status,
                res.group,
                res.version,
                obj.metadata.namespace,
                res.plural,
                obj.metadata.name,
                body,
            )
        else:
            made = await call(
                self.custom.replace_cluster_custom_object_status,
                res.group,
                res.version,
                res.plural,
                obj.metadata.name,
                body,
            )
        return model.from_dict(made)

    async def update_status(
        self, model: type[M], namespace: str | None, name: str, mutate: Callable[[M], bool | None]
    ) -> M:
        """Read, mutate, write the status; on Conflict read again and re-apply ``mutate``.

        ``mutate`` changes the model in place; returning False means "nothing to write".
        """
        for attempt in range(CONFLICT_RETRIES):
            current = await self.get(model, namespace, name)
            if mutate(current) is False:
                return current
            try:
                return await self.replace_status(current)
            except Conflict:
                delay = random.uniform(0.02, 0.1) * (attempt + 1)  # noqa: S311 - jitter, not security
                log.debug(
                    "status conflict; retrying", extra={"object": f"{namespace}/{name}", "attempt": attempt}
                )
                await asyncio.sleep(delay)
        raise Conflict(
            f"{model.__name__} {namespace}/{name}: status still conflicting after {CONFLICT_RETRIES} attempts"
        )
