"""Typed access to the stash.appscode.com objects, and status updates that never lose a writer's work.

``update_status`` reads the object, lets the caller mutate its model, and writes the status back
with the read resourceVersion; on 409 Conflict (another host wrote in between) it reads again and
re-applies the mutation, so concurrent hosts updating one BackupSession keep each other's entries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
from collections.abc import Awaitable, Callable
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


@dataclasses.dataclass(frozen=True)
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

    def _scoped(self, res: Resource, namespace: str | None, method: str) -> Callable[..., Awaitable[Any]]:
        """CustomObjectsApi's ``method`` for the kind's scope, with its leading arguments bound.

        ``method`` spells the call's name with ``{scope}`` (``get_{scope}_custom_object``). A namespaced
        kind gets the ``namespaced`` call with group, version, ``namespace`` and plural bound, a
        cluster-scoped kind the ``cluster`` call with group, version and plural; the caller adds the rest.
        """
        if res.namespaced:
            namespaced = getattr(self.custom, method.format(scope="namespaced"))
            return functools.partial(namespaced, res.group, res.version, namespace, res.plural)
        cluster = getattr(self.custom, method.format(scope="cluster"))
        return functools.partial(cluster, res.group, res.version, res.plural)

    def list_fn(self, model: type[KubeObject], namespace: str | None = None) -> Callable[..., Any]:
        """A list function for :func:`stashlet.kube.watch.watch` over this kind.

        It lists ``namespace`` when the kind is namespaced and one is given, else every namespace.
        """
        res = RESOURCES[model]
        if not namespace:
            res = dataclasses.replace(res, namespaced=False)
        return self._scoped(res, namespace, "list_{scope}_custom_object")

    async def get(self, model: type[M], namespace: str | None, name: str) -> M:
        """Read one object; NotFound when it does not exist."""
        get = self._scoped(RESOURCES[model], namespace, "get_{scope}_custom_object")
        return model.from_dict(await call(get, name))

    async def list(self, model: type[M], namespace: str | None = None, label_selector: str = "") -> list[M]:
        """List objects (all namespaces when ``namespace`` is None)."""
        body = await call(self.list_fn(model, namespace), label_selector=label_selector)
        return [model.from_dict(item) for item in body.get("items", [])]

    async def create(self, obj: M) -> M:
        """Create ``obj``; Conflict when it exists."""
        model = type(obj)
        create = self._scoped(RESOURCES[model], obj.metadata.namespace, "create_{scope}_custom_object")
        return model.from_dict(await call(create, obj.to_dict()))

    async def patch(self, model: type[M], namespace: str | None, name: str, patch: dict[str, Any]) -> M:
        """Merge-patch the object (metadata and spec)."""
        merge_patch = self._scoped(RESOURCES[model], namespace, "patch_{scope}_custom_object")
        made = await call(merge_patch, name, patch, _content_type="application/merge-patch+json")
        return model.from_dict(made)

    async def delete(self, model: type[KubeObject], namespace: str | None, name: str) -> None:
        """Delete the object (background propagation)."""
        delete = self._scoped(RESOURCES[model], namespace, "delete_{scope}_custom_object")
        await call(delete, name, propagation_policy="Background")

    async def replace_status(self, obj: M) -> M:
        """Write ``obj``'s status with its resourceVersion; Conflict when someone wrote in between."""
        model = type(obj)
        replace = self._scoped(
            RESOURCES[model], obj.metadata.namespace, "replace_{scope}_custom_object_status"
        )
        return model.from_dict(await call(replace, obj.metadata.name, obj.to_dict()))

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
