"""The resource-YAML dump (Stash's ``kubedump-backup`` task): objects as YAML files, one per object.

A BackupConfiguration whose ``spec.task.name`` is in :data:`KUBEDUMP_TASKS` dumps:

- no ``spec.target`` (or a target without a ref): the whole cluster, every namespace;
- ``target.ref: {apiVersion: v1, kind: Namespace, name: X}``: the namespaced objects of X, and the
  Namespace object itself unless a ``labelSelector`` narrows the dump;
- any other ``target.ref``: that one object (an "application") and, with ``includeDependants``, what
  it owns, following ownerReferences downward (Deployment -> ReplicaSets -> Pods).

Parameters (``task.params``): ``labelSelector`` (a Kubernetes label selector for the listed objects),
``sanitize`` (default ``true``; see :mod:`stashlet.agent.kubedump.sanitize`), ``includeDependants``
(default ``false``), ``excludeResources`` (comma-separated resources to leave out, as ``secrets``,
``leases.coordination.k8s.io`` or a kind such as ``Secret``; Secrets are dumped by default: the
restic repository is encrypted).

The tree under the dump folder::

    cluster/<group or "core">/<version>/<Kind>/<name>.yaml               cluster-scoped objects
    namespaces/<namespace>/<group or "core">/<version>/<Kind>/<name>.yaml  namespaced objects

Every resource type the server serves is dumped (custom resources included, preferred versions)
except subresources, types that cannot be listed or cannot be created (nothing to re-apply, such as
ComponentStatus), Events (core and ``events.k8s.io``), and the records of runs, BackupSessions and
RestoreSessions (re-applying one would start a backup or a restore). An API group that cannot be
discovered, and a type the service account may not list (403), are skipped and reported in
:class:`DumpReport`; the dump goes on. Modules: ``options`` (task, params, scope), ``apiserver``
(discovery, paged lists), ``sanitize`` (cleaning), ``tree`` (files and report), this one (what to list
for a scope, and the ownerReference walk).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from stashlet.agent.kubedump.apiserver import (
    ApiResource,
    Discovery,
    discover,
    get_json,
    list_pages,
    split_api_version,
)
from stashlet.agent.kubedump.options import (
    DumpError,
    DumpFailed,
    DumpOptions,
    DumpScope,
    options_from_params,
    scope_of,
)
from stashlet.agent.kubedump.tree import (
    DumpReport,
    SkippedResource,
    TreeWriter,
    prepare_folder,
    to_yaml,
)
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import TargetRef
from stashlet.kube.errors import BadRequest, KubeError, NotFound
from stashlet.kube.rest import KubeApi

__all__ = [
    "KUBEDUMP_TASKS",
    "DumpError",
    "DumpFailed",
    "DumpOptions",
    "DumpReport",
    "DumpScope",
    "SkippedResource",
    "dump",
    "is_kubedump_task",
    "options_from_params",
    "scope_of",
    "to_yaml",
]

log = logging.getLogger(__name__)

KUBEDUMP_TASKS: Final = frozenset({"kubedump-backup-0.1.0", "kubedump-backup"})
"""Task names that mean "dump the resource YAMLs": Stash's, and the same without its version.

Proposed for ``stashlet.api`` (next to the names the operator and the agent share), so that the
operator's Job model and this agent read one definition; here until then.
"""


def is_kubedump_task(config: BackupConfiguration) -> bool:
    """True when ``config`` names the resource-dump task."""
    task = config.spec.task
    return task is not None and (task.name or "") in KUBEDUMP_TASKS


# --------------------------------------------------------------------------------- dumping


class _Run:
    """One dump: the API client, options, discovery and the writer."""

    def __init__(self, api: KubeApi, options: DumpOptions, discovery: Discovery, writer: TreeWriter) -> None:
        self.api = api
        self.options = options
        self.discovery = discovery
        self.writer = writer
        self.report = writer.report

    def listable(self, *, namespaced_only: bool) -> list[ApiResource]:
        return [
            r
            for r in self.discovery.resources
            if {"list", "create"} <= r.verbs
            and not self.options.excludes(r)
            and (r.namespaced or not namespaced_only)
        ]

    def skipped(self, resource: ApiResource, namespace: str | None, exc: KubeError) -> None:
        entry = SkippedResource(resource.qualified, namespace, exc.status, exc.message)
        self.report.skipped_resources.append(entry)
        log.warning(
            "resource skipped",
            extra={
                "resource": resource.qualified,
                "namespace": namespace,
                "status": exc.status,
                "error": exc.message,
            },
        )

    async def dump_all(self, resources: list[ApiResource], namespace: str | None) -> None:
        limit = asyncio.Semaphore(self.options.concurrency)

        async def one(resource: ApiResource) -> None:
            async with limit:
                await self.dump_resource(resource, namespace)

        await asyncio.gather(*(one(r) for r in resources))

    def pages(self, resource: ApiResource, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of ``resource`` in ``namespace``, filtered by the options' label selector."""
        return list_pages(
            self.api,
            resource,
            namespace=namespace,
            label_selector=self.options.label_selector,
            page_size=self.options.page_size,
        )

    async def dump_resource(self, resource: ApiResource, namespace: str | None) -> None:
        try:
            async for page in self.pages(resource, namespace):
                for obj in page:
                    self.writer.write(resource, obj)
        except BadRequest as exc:
            raise DumpError(
                f"listing {resource.qualified} with labelSelector {self.options.label_selector!r}: "
                f"{exc.message}",
                reason="InvalidParameter",
            ) from exc
        except KubeError as exc:
            self.skipped(resource, namespace, exc)

    @staticmethod
    def where(resource: ApiResource, namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if resource.namespaced and namespace else name

    async def get(self, resource: ApiResource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = await get_json(self.api, resource.object_path(namespace, name))
        return {"apiVersion": resource.group_version, "kind": resource.kind, **obj}

    async def namespace_object(self, namespace: str, *, write: bool) -> None:
        """Check that the namespace exists and, with ``write``, dump the Namespace itself."""
        resource = self.discovery.find_kind("", "Namespace")
        if resource is None:
            return
        try:
            obj = await self.get(resource, None, namespace)
        except NotFound as exc:
            raise DumpError(f"namespace {namespace} not found", reason="TargetNotFound") from exc
        except KubeError as exc:
            self.skipped(resource, None, exc)
            return
        if write:
            self.writer.write(resource, obj)

    async def application(self, target: TargetRef, namespace: str) -> None:
        group, _ = split_api_version(target.api_version or "")
        kind, name = target.kind or "", target.name or ""
        resource = self.discovery.find_kind(group, kind)
        if resource is None:
            raise DumpError(
                f"the API server serves no kind {kind} in group {group or 'core'}", reason="TargetNotFound"
            )
        try:
            root = await self.get(resource, namespace, name)
        except NotFound as exc:
            raise DumpError(
                f"{kind} {self.where(resource, namespace, name)} not found", reason="TargetNotFound"
            ) from exc
        except KubeError as exc:
            raise DumpFailed(
                f"{kind} {self.where(resource, namespace, name)}: {exc.message}", reason="TargetNotReadable"
            ) from exc
        root_uid = (root.get("metadata") or {}).get("uid")
        self.writer.write(resource, root)
        if self.options.include_dependants and root_uid:
            await self.dependants(str(root_uid), namespace if resource.namespaced else None)

    async def dependants(self, root_uid: str, namespace: str | None) -> None:
        """Everything owned, directly or not, by ``root_uid``: index owners first, then fetch down."""
        children: dict[str, list[tuple[ApiResource, str | None, str]]] = {}
        limit = asyncio.Semaphore(self.options.concurrency)

        async def index(resource: ApiResource) -> None:
            async with limit:
                try:
                    async for page in self.pages(resource, namespace):
                        for obj in page:
                            meta = obj.get("metadata") or {}
                            for owner in meta.get("ownerReferences") or []:
                                entry = (resource, meta.get("namespace"), str(meta.get("name")))
                                children.setdefault(str(owner.get("uid")), []).append(entry)
                except BadRequest as exc:
                    raise DumpError(f"labelSelector: {exc.message}", reason="InvalidParameter") from exc
                except KubeError as exc:
                    self.skipped(resource, namespace, exc)

        await asyncio.gather(*(index(r) for r in self.listable(namespaced_only=namespace is not None)))
        queue, seen = [root_uid], {root_uid}
        while queue:
            uid = queue.pop(0)
            for resource, obj_namespace, name in children.get(uid, []):
                try:
                    obj = await self.get(resource, obj_namespace, name)
                except NotFound:
                    continue  # deleted since it was listed
                except KubeError as exc:
                    self.skipped(resource, obj_namespace, exc)
                    continue
                child_uid = str((obj.get("metadata") or {}).get("uid"))
                self.writer.write(resource, obj)
                if child_uid not in seen:
                    seen.add(child_uid)
                    queue.append(child_uid)


async def dump(api: KubeApi, scope: DumpScope, options: DumpOptions, root: Path) -> DumpReport:
    """Dump ``scope`` into the (emptied) folder ``root``.

    Raises DumpError when the configuration asks for something that cannot be dumped, DumpFailed when
    the API server cannot be read at all (discovery, or the one application object).
    """
    prepare_folder(root)
    report = DumpReport(root=root, scope=scope)
    try:
        discovery = await discover(api)
    except KubeError as exc:
        raise DumpFailed(
            f"cannot read the API server's resource types: {exc.message}", reason="DiscoveryFailed"
        ) from exc
    report.skipped_groups = list(discovery.failures)
    run = _Run(api, options, discovery, TreeWriter(report, sanitize=options.sanitize))
    if scope.kind == "application" and scope.target is not None:
        await run.application(scope.target, scope.namespace or "")
    elif scope.kind == "namespace" and scope.namespace:
        await run.namespace_object(scope.namespace, write=not options.label_selector)
        await run.dump_all(run.listable(namespaced_only=True), scope.namespace)
    else:
        await run.dump_all(run.listable(namespaced_only=False), None)
    report.skipped_resources.sort(key=lambda s: (s.resource, s.namespace or ""))
    log.info(
        "resources dumped",
        extra={
            "scope": scope.kind,
            "namespace": scope.namespace,
            "objects": report.objects,
            "bytes": report.bytes,
            "omitted": report.omitted,
            "skipped_groups": [str(f) for f in report.skipped_groups],
            "skipped_resources": [str(s) for s in report.skipped_resources],
        },
    )
    return report
