"""Async access to the built-in objects the operator reads and writes, as plain dicts.

The one place the operator calls kubernetes_asyncio's generated APIs directly (the stash kinds go through
:class:`stashlet.kube.custom.StashClient`). Every call goes through
:func:`stashlet.operator.core.apiclient.call_json` or :func:`~stashlet.operator.core.apiclient.call`, so
errors arrive as the :mod:`stashlet.kube.errors` taxonomy, and
objects come back as the server's JSON (fields the client library does not know are kept).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from stashlet.kube.errors import Conflict, NotFound
from stashlet.operator.core.apiclient import ApiClient, call, call_json
from stashlet.operator.core.workloads import WorkloadKind

log = logging.getLogger(__name__)

Fn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class _Ops:
    read: Fn
    create: Fn
    replace: Fn
    delete: Fn


class Resources:
    """Read, create, replace, patch and delete the built-in kinds the operator manages."""

    def __init__(self, api: ApiClient) -> None:
        """Use ``api`` for every call."""
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self._ops = {
            "ServiceAccount": _Ops(
                self.core.read_namespaced_service_account,
                self.core.create_namespaced_service_account,
                self.core.replace_namespaced_service_account,
                self.core.delete_namespaced_service_account,
            ),
            "Role": _Ops(
                self.rbac.read_namespaced_role,
                self.rbac.create_namespaced_role,
                self.rbac.replace_namespaced_role,
                self.rbac.delete_namespaced_role,
            ),
            "RoleBinding": _Ops(
                self.rbac.read_namespaced_role_binding,
                self.rbac.create_namespaced_role_binding,
                self.rbac.replace_namespaced_role_binding,
                self.rbac.delete_namespaced_role_binding,
            ),
            "Secret": _Ops(  # only an agent's own token is made (ensure_identity); values are never kept
                self.core.read_namespaced_secret,
                self.core.create_namespaced_secret,
                self.core.replace_namespaced_secret,
                self.core.delete_namespaced_secret,
            ),
            "CronJob": _Ops(
                self.batch.read_namespaced_cron_job,
                self.batch.create_namespaced_cron_job,
                self.batch.replace_namespaced_cron_job,
                self.batch.delete_namespaced_cron_job,
            ),
        }

    # ------------------------------------------------------------ generic namespaced objects

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Read one object; NotFound when it does not exist."""
        return await call_json(self._ops[kind].read, name, namespace)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``; Conflict when it exists."""
        return await call_json(self._ops[obj["kind"]].create, obj["metadata"]["namespace"], obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace ``obj`` (with its resourceVersion, when it carries one)."""
        meta = obj["metadata"]
        return await call_json(self._ops[obj["kind"]].replace, meta["name"], meta["namespace"], obj)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object; False when it was not there."""
        try:
            await call(self._ops[kind].delete, name, namespace, propagation_policy="Background")
        except NotFound:
            return False
        return True

    async def ensure(
        self,
        desired: dict[str, Any],
        up_to_date: Callable[[dict[str, Any], dict[str, Any]], bool],
        *,
        likely_new: bool = False,
    ) -> str:
        """Create ``desired``, or replace the existing object unless ``up_to_date(existing, desired)``.

        ``likely_new``: the caller has never seen it made, so it is created straight away (one request,
        not a read first); when it exists after all (Conflict) it is read and compared as any other.
        Returns "created", "replaced" or "unchanged".
        """
        meta = desired["metadata"]
        if likely_new and await self._created(desired):
            return "created"
        try:
            existing = await self.get(desired["kind"], meta["namespace"], meta["name"])
        except NotFound:
            try:
                await self.create(desired)
            except Conflict:  # made meanwhile: compare it next time round
                return "unchanged"
            return "created"
        if up_to_date(existing, desired):
            return "unchanged"
        merged = {**existing, **{k: v for k, v in desired.items() if k != "metadata"}}
        merged["metadata"] = {**existing["metadata"], **meta}
        await self.replace(merged)
        return "replaced"

    async def _created(self, desired: dict[str, Any]) -> bool:
        """Create ``desired``; False when it exists already."""
        try:
            await self.create(desired)
        except Conflict:
            return False
        return True

    async def ensure_identity(
        self,
        account: dict[str, Any],
        token: dict[str, Any],
        up_to_date: Callable[[dict[str, Any], dict[str, Any]], bool],
        whose: str,
        *,
        likely_new: bool = False,
    ) -> str | None:
        """Make an agent's own ServiceAccount ``account`` and its token Secret ``token`` where missing (the
        token controller fills it); a problem naming the Secret when one of that name exists and is not
        that token (it is never overwritten: ``whose`` credentials would go there). ``likely_new`` as for
        :meth:`ensure`."""
        await self.ensure(account, up_to_date, likely_new=likely_new)
        meta = token["metadata"]
        where = {"object": f"{meta['namespace']}/{meta['name']}", "for": whose}
        if likely_new and await self._created(token):
            log.info("service account token requested", extra=where)
            return None
        try:
            existing = await self.get("Secret", meta["namespace"], meta["name"])
        except NotFound:
            try:
                await self.create(token)
            except Conflict:  # made meanwhile: compared next time round
                return None
            log.info("service account token requested", extra=where)
            return None
        if up_to_date(existing, token):
            return None
        return (
            f"Secret {meta['namespace']}/{meta['name']} exists but is not the token of ServiceAccount "
            f"{meta['namespace']}/{meta['name']} (type {token['type']}); {whose} credentials go there: "
            "delete or rename it"
        )

    async def patch_cronjob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch a CronJob."""
        return await call_json(
            self.batch.patch_namespaced_cron_job,
            name,
            namespace,
            patch,
            _content_type="application/merge-patch+json",
        )

    # ------------------------------------------------------------ workloads, secrets, namespaces, pods

    async def get_workload(self, kind: WorkloadKind, namespace: str, name: str) -> dict[str, Any]:
        """Read a Deployment, StatefulSet, DaemonSet or ReplicaSet."""
        read = getattr(self.apps, f"read_namespaced_{_snake(kind.kind)}")
        return await call_json(read, name, namespace)

    async def list_workloads(
        self, kind: WorkloadKind, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Workloads of one kind matching ``label_selector``."""
        list_fn = getattr(self.apps, f"list_namespaced_{_snake(kind.kind)}")
        body = await call_json(list_fn, namespace, label_selector=label_selector)
        items: list[dict[str, Any]] = body.get("items") or []
        for item in items:  # list items come without their type
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items

    async def replace_workload(self, kind: WorkloadKind, workload: dict[str, Any]) -> dict[str, Any]:
        """Write a workload back with the resourceVersion it was read with (Conflict when stale)."""
        replace = getattr(self.apps, f"replace_namespaced_{_snake(kind.kind)}")
        meta = workload["metadata"]
        return await call_json(replace, meta["name"], meta["namespace"], workload)

    async def secret_keys(self, namespace: str, name: str) -> frozenset[str]:
        """The keys of a Secret that hold a non-empty value. The values are dropped at once, never kept."""
        secret = await call_json(self.core.read_namespaced_secret, name, namespace)
        return frozenset(key for key, value in (secret.get("data") or {}).items() if value)

    async def namespace_labels(self, name: str) -> dict[str, str]:
        """A namespace's labels."""
        namespace = await call_json(self.core.read_namespace, name)
        labels: dict[str, str] = namespace.get("metadata", {}).get("labels") or {}
        return labels

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods matching ``label_selector``."""
        body = await call_json(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def restart_replicaset(self, replicaset: dict[str, Any], annotation: str, value: str) -> None:
        """A ReplicaSet does not roll its pods: delete those it owns whose pod-template ``annotation``
        is not ``value`` (made from an older template), so that it makes them anew."""
        meta = replicaset["metadata"]
        match = replicaset.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        for pod in await self.list_pods(meta["namespace"], selector):
            owners = pod.get("metadata", {}).get("ownerReferences") or []
            annotations = pod.get("metadata", {}).get("annotations") or {}
            if any(o.get("uid") == meta.get("uid") for o in owners) and annotations.get(annotation) != value:
                await self.delete_pod(meta["namespace"], pod["metadata"]["name"])

    async def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its controller makes a new one from the current template)."""
        try:
            await call(self.core.delete_namespaced_pod, name, namespace)
        except NotFound:
            return


def _snake(kind: str) -> str:
    """``StatefulSet`` -> ``stateful_set``, as the generated client names its methods."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")
