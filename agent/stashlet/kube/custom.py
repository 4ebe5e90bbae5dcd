"""Typed access to the stash.appscode.com objects, and status updates that never lose a writer's work.

``update_status`` reads the object, lets the caller mutate its model, and writes the status back
with the read resourceVersion; on 409 Conflict (another host wrote in between) it reads again and
re-applies the mutation, so concurrent hosts updating one BackupSession keep each other's entries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

from stashlet.api import names
from stashlet.api.common import KubeObject
from stashlet.kube.errors import Conflict
from stashlet.kube.paths import collection_path, object_path
from stashlet.kube.rest import MERGE_PATCH, KubeApi
from stashlet.kube.watch import Collection

log = logging.getLogger(__name__)

M = TypeVar("M", bound=KubeObject)


@dataclasses.dataclass(frozen=True)
class Resource:
    """Where a kind is served."""

    group: str
    version: str
    plural: str
    namespaced: bool = True


RESOURCES: dict[str, Resource] = {
    "Repository": Resource(names.GROUP, names.V1ALPHA1, names.REPOSITORIES),
    "BackupConfiguration": Resource(names.GROUP, names.V1BETA1, names.BACKUP_CONFIGURATIONS),
    "BackupSession": Resource(names.GROUP, names.V1BETA1, names.BACKUP_SESSIONS),
    "RestoreSession": Resource(names.GROUP, names.V1BETA1, names.RESTORE_SESSIONS),
    "BackupBlueprint": Resource(names.GROUP, names.V1BETA1, names.BACKUP_BLUEPRINTS, namespaced=False),
}
"""Where each stash kind is served, by its model's name (the kind): a process loads only the models it
uses (a sidecar no RestoreSession or BackupBlueprint)."""

CONFLICT_RETRIES = 10


class StashClient:
    """Get, list, create, patch, delete and update the status of the stash kinds, as typed models."""

    def __init__(self, api: KubeApi) -> None:
        """Use ``api`` for every call."""
        self.api = api

    @staticmethod
    def _path(model: type[KubeObject], namespace: str | None, name: str, subresource: str = "") -> str:
        res = RESOURCES[model.__name__]
        return object_path(
            res.group, res.version, res.plural, namespace if res.namespaced else None, name, subresource
        )

    def list_fn(self, model: type[KubeObject], namespace: str | None = None) -> Collection:
        """The collection of this kind for :func:`stashlet.kube.watch.watch`.

        It is ``namespace`` when the kind is namespaced and one is given, else every namespace.
        """
        res = RESOURCES[model.__name__]
        scope = namespace if res.namespaced and namespace else None
        return Collection(self.api, collection_path(res.group, res.version, res.plural, scope))

    async def get(self, model: type[M], namespace: str | None, name: str) -> M:
        """Read one object; NotFound when it does not exist."""
        return model.from_dict(await self.api.send("GET", self._path(model, namespace, name)))

    async def list(self, model: type[M], namespace: str | None = None, label_selector: str = "") -> list[M]:
        """List objects (all namespaces when ``namespace`` is None)."""
        collection = self.list_fn(model, namespace)
        query = {"labelSelector": label_selector} if label_selector else None
        body = await self.api.send("GET", collection.path, query=query)
        return [model.from_dict(item) for item in body.get("items", [])]

    async def create(self, obj: M) -> M:
        """Create ``obj``; Conflict when it exists."""
        model = type(obj)
        path = self.list_fn(model, obj.metadata.namespace).path
        return model.from_dict(await self.api.send("POST", path, body=obj.to_dict()))

    async def patch(self, model: type[M], namespace: str | None, name: str, patch: dict[str, Any]) -> M:
        """Merge-patch the object (metadata and spec)."""
        path = self._path(model, namespace, name)
        return model.from_dict(await self.api.send("PATCH", path, body=patch, content_type=MERGE_PATCH))

    async def delete(self, model: type[KubeObject], namespace: str | None, name: str) -> None:
        """Delete the object (background propagation)."""
        await self.api.send(
            "DELETE", self._path(model, namespace, name), query={"propagationPolicy": "Background"}
        )

    async def replace_status(self, obj: M) -> M:
        """Write ``obj``'s status with its resourceVersion; Conflict when someone wrote in between."""
        model = type(obj)
        path = self._path(model, obj.metadata.namespace, str(obj.metadata.name), "status")
        return model.from_dict(await self.api.send("PUT", path, body=obj.to_dict()))

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
