"""The API server as the resource dump sees it: what it serves (discovery) and paged lists of objects.

Discovery reads ``/api`` and ``/apis`` and every group version's resource list, concurrently. For each
group, a resource is taken from the group's preferred version, else from the first other version
that serves it (so Repository, served only in ``stash.appscode.com/v1alpha1``, is found although the
group prefers v1beta1). A group version whose list cannot be read (an aggregated API whose service is
down answers 503) is recorded as a failure and left out; only ``/api`` and ``/apis`` themselves are
essential.

Lists are read page by page (``limit``/``continue``), so memory holds two pages (the one
being written, the next one asked for ahead), never a whole kind.
List items come without ``apiVersion``/``kind`` for built-in types: :func:`list_pages` sets both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stashlet.kube.errors import Conflict, Gone, KubeError, is_transient
from stashlet.kube.rest import KubeApi, Query

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 60.0
"""Seconds one discovery or list request may take."""

ATTEMPTS = 3
"""Tries of one request when the failure is transient (throttled, 5xx, connection lost)."""

DISCOVERY_CONCURRENCY = 8


@dataclass(frozen=True)
class ApiResource:
    """One kind of object the API server serves: where, and what may be done with it."""

    group: str
    version: str
    name: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def group_version(self) -> str:
        """``v1`` for the core group, ``<group>/<version>`` otherwise (an object's apiVersion)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``<plural>`` for the core group, ``<plural>.<group>`` otherwise (as kubectl names them)."""
        return f"{self.name}.{self.group}" if self.group else self.name

    def base_path(self) -> str:
        """``/api/v1`` or ``/apis/<group>/<version>``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def list_path(self, namespace: str | None) -> str:
        """The collection, in one namespace or (``None``, or a cluster-scoped kind) everywhere."""
        if self.namespaced and namespace:
            return f"{self.base_path()}/namespaces/{namespace}/{self.name}"
        return f"{self.base_path()}/{self.name}"

    def object_path(self, namespace: str | None, name: str) -> str:
        """One object of this kind."""
        return f"{self.list_path(namespace if self.namespaced else None)}/{name}"


@dataclass(frozen=True)
class DiscoveryFailure:
    """A group version whose resources could not be read; its kinds are left out of the dump."""

    group_version: str
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.group_version} ({self.status or 'error'}: {self.message})"


@dataclass(frozen=True)
class Discovery:
    """Every listable-or-not resource the server serves (preferred versions), and what failed."""

    resources: tuple[ApiResource, ...]
    failures: tuple[DiscoveryFailure, ...]

    def find_kind(self, group: str, kind: str) -> ApiResource | None:
        """The resource serving ``kind`` of ``group`` (its preferred version)."""
        return next((r for r in self.resources if r.group == group and r.kind == kind), None)


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ``("apps", "v1")``; ``v1`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def is_subresource(name: str) -> bool:
    """``pods/log``, ``deployments/scale`` and the like are parts of an object, not kinds."""
    return "/" in name


def resources_of(group: str, version: str, body: dict[str, Any]) -> list[ApiResource]:
    """The kinds in one APIResourceList (subresources left out)."""
    out = []
    for entry in body.get("resources") or []:
        name = str(entry.get("name", ""))
        if not name or is_subresource(name):
            continue
        out.append(
            ApiResource(
                group=group,
                version=version,
                name=name,
                kind=str(entry.get("kind", "")),
                namespaced=bool(entry.get("namespaced")),
                verbs=frozenset(str(v) for v in entry.get("verbs") or []),
            )
        )
    return out


def preferred_resources(
    groups: Iterable[tuple[str, list[str]]], lists: dict[tuple[str, str], list[ApiResource]]
) -> list[ApiResource]:
    """Pick one version per (group, resource): the first in each group's preference order that serves it.

    ``groups`` gives each group's versions, preferred first; ``lists`` the resources read for each
    (group, version) that could be read.
    """
    chosen: list[ApiResource] = []
    for group, versions in groups:
        seen: set[str] = set()
        for version in versions:
            for resource in lists.get((group, version), []):
                if resource.name not in seen:
                    seen.add(resource.name)
                    chosen.append(resource)
    return chosen


def _retryable(exc: BaseException) -> bool:
    return is_transient(exc) and not isinstance(exc, Conflict)


async def get_json(
    api: KubeApi, path: str, query: Query | None = None, *, attempts: int = ATTEMPTS
) -> dict[str, Any]:
    """GET ``path`` as JSON; transient failures are retried, the rest raise from the kube taxonomy."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception(_retryable),
        reraise=True,
    ):
        with attempt:
            return await api.send("GET", path, query=query, within=REQUEST_TIMEOUT)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def discover(api: KubeApi) -> Discovery:
    """Everything the server serves, preferred versions first; failing group versions are recorded."""
    core = await get_json(api, "/api")
    groups_body = await get_json(api, "/apis")
    groups: list[tuple[str, list[str]]] = [("", [str(v) for v in core.get("versions") or []])]
    for group in groups_body.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("version")
        versions = [str(v.get("version")) for v in group.get("versions") or []]
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        groups.append((str(group.get("name", "")), versions))

    limit = asyncio.Semaphore(DISCOVERY_CONCURRENCY)
    lists: dict[tuple[str, str], list[ApiResource]] = {}
    failures: list[DiscoveryFailure] = []

    async def read(group: str, version: str) -> None:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        async with limit:
            try:
                body = await get_json(api, path, attempts=2)
            except KubeError as exc:
                gv = f"{group}/{version}" if group else version
                failures.append(DiscoveryFailure(gv, exc.status, exc.message))
                log.warning(
                    "API group version not discoverable; its resources are skipped",
                    extra={"group_version": gv, "status": exc.status, "error": exc.message},
                )
                return
        lists[(group, version)] = resources_of(group, version, body)

    await asyncio.gather(*(read(group, version) for group, versions in groups for version in versions))
    failures.sort(key=lambda f: f.group_version)
    return Discovery(tuple(preferred_resources(groups, lists)), tuple(failures))


async def list_pages(
    api: KubeApi,
    resource: ApiResource,
    *,
    namespace: str | None,
    label_selector: str = "",
    page_size: int = 250,
    restarts: int = 2,
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The objects of ``resource`` one page at a time, each with its ``apiVersion`` and ``kind``.

    An expired ``continue`` token (410 Gone, the list took longer than the server keeps it) starts
    the list again from the top, up to ``restarts`` times: callers write objects by name, so seeing
    some twice is harmless. The next page is asked for before the current one is handed out, so the
    server prepares it while the caller writes (at most two pages in memory).
    """
    path = resource.list_path(namespace)

    def fetch(token: str | None) -> asyncio.Task[dict[str, Any]]:
        query: Query = {"limit": page_size, "continue": token, "labelSelector": label_selector or None}
        return asyncio.ensure_future(get_json(api, path, query))

    token: str | None = None
    pending = fetch(None)
    try:
        while True:
            try:
                body = await pending
            except Gone:
                if token is None or restarts <= 0:
                    raise
                restarts -= 1
                token = None
                pending = fetch(None)
                log.info("list continue token expired; listing again", extra={"resource": resource.qualified})
                continue
            token = (body.get("metadata") or {}).get("continue") or None
            if token:
                # The next page is asked for now and read while the caller writes this one: the request
                # goes out at this await, then the server works on it in parallel with the caller.
                pending = fetch(token)
                await asyncio.sleep(0)
            yield [
                {"apiVersion": resource.group_version, "kind": resource.kind, **item}
                for item in body.get("items") or []
            ]
            if not token:
                return
    finally:  # the caller stopped early: the page asked for ahead is not wanted
        if not pending.done():
            pending.cancel()
        elif not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not log it as lost
