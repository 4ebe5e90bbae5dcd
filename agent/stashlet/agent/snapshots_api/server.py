"""The routes of the Snapshot API and what each request goes through.

``/healthz``, ``/readyz`` and ``/livez`` answer anyone (probes; they tell nothing). Every other path needs
the front proxy (:mod:`.frontproxy`): discovery (``/apis``, the group, the version's resource list) is
served to the proxy itself, as the API server serves discovery to everyone; ``get`` and ``list`` of
snapshots need a user the proxy names whom a SubjectAccessReview allows (:mod:`.authorization`). Errors
are metav1.Status objects (401, 403, 404, 400, 405, and the read failures of :mod:`.reading`), Tables are
served when the client asks for them (kubectl does), and every request is logged with its user, verb,
object and outcome, never a header value or a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

from stashlet.agent.http_api.transport import App, Handler, Request, Response
from stashlet.agent.restic import output as rj
from stashlet.agent.snapshots_api import resource
from stashlet.agent.snapshots_api.authorization import Attributes, allowed
from stashlet.agent.snapshots_api.frontproxy import (
    RequestHeaderConfig,
    Unauthenticated,
    User,
    authenticate,
    common_name,
    verify_proxy,
)
from stashlet.agent.snapshots_api.reading import ReadFailure, SnapshotReader
from stashlet.agent.snapshots_api.selectors import Selector, SelectorError, parse
from stashlet.kube.errors import KubeError

log = logging.getLogger(__name__)

PROBES: Final = ("/healthz", "/readyz", "/livez")
_BASE: Final = f"/apis/{resource.GROUP_VERSION}"


@dataclass
class FrontProxyState:
    """The front proxy's settings in force (replaced when the cluster's ConfigMap changes)."""

    config: RequestHeaderConfig


@dataclass(frozen=True)
class Route:
    """What a path names: a ``list`` (``namespace`` None: every namespace) or a ``get`` of ``name``."""

    verb: str
    namespace: str | None
    name: str | None = None


def route(path: str) -> Route | None:
    """The snapshots a path names; None for any other path."""
    parts = path.removeprefix(_BASE).strip("/").split("/") if path.startswith(_BASE + "/") else []
    if parts == [resource.PLURAL]:
        return Route("list", None)
    if len(parts) == 3 and parts[0] == "namespaces" and parts[2] == resource.PLURAL and parts[1]:
        return Route("list", parts[1])
    if len(parts) == 4 and parts[0] == "namespaces" and parts[2] == resource.PLURAL and parts[1] and parts[3]:
        return Route("get", parts[1], parts[3])
    return None


def _status(code: int, reason: str, message: str, *, name: str | None = None) -> Response:
    return Response.json(resource.status(code, reason, message, name=name), code)


def _warning(text: str) -> tuple[str, str]:
    """A ``Warning`` header as the API server writes one (kubectl prints it as ``Warning: <text>``)."""
    return ("Warning", '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _header_lines(request: Request) -> Sequence[tuple[str, str]]:
    return request.header_lines or tuple(request.headers.items())


def _peer_name(request: Request) -> str | None:
    return common_name(request.peer_cert)


@dataclass(frozen=True)
class SnapshotsApi:
    """The handlers, around a reader and the API server's word on who may do what."""

    reader: SnapshotReader
    front_proxy: FrontProxyState

    async def dispatch(self, request: Request, _: Handler) -> Response:
        """Answer ``request`` (the app's one middleware: paths are matched here, not by the router); an
        unexpected failure is a 500 Status, its details in the log only."""
        try:
            return await self._answer(request)
        except Exception:
            log.exception(
                "snapshots API request failed", extra={"path": request.path, "method": request.method}
            )
            return _status(500, "InternalError", "internal error; see the snapshots API server's log")

    async def _answer(self, request: Request) -> Response:
        if request.path in PROBES:
            return Response.text("ok")
        try:
            verify_proxy(self.front_proxy.config, _peer_name(request))
        except Unauthenticated as exc:
            log.info("request refused: unauthenticated", extra={"path": request.path, "why": exc.message})
            return _status(401, "Unauthorized", "Unauthorized")
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")
        documents = {
            "/apis": resource.group_list_document,
            f"/apis/{resource.GROUP}": resource.group_document,
            _BASE: resource.resource_list_document,
        }
        document = documents.get(request.path.rstrip("/"))
        if document is not None:
            return Response.json(document())
        found = route(request.path)
        if found is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return await self._snapshots(request, found)

    async def _snapshots(self, request: Request, found: Route) -> Response:
        began = time.monotonic()
        try:
            user = authenticate(self.front_proxy.config, _peer_name(request), _header_lines(request))
        except Unauthenticated as exc:
            log.info("request refused: unauthenticated", extra={"path": request.path, "why": exc.message})
            return _status(401, "Unauthorized", "Unauthorized")
        query = {key: values[-1] for key, values in parse_qs(request.query).items()}
        attributes = Attributes(found.verb, found.namespace, found.name)
        fields = {"user": user.name, "verb": found.verb, "namespace": found.namespace, "snapshot": found.name}
        if query.get("watch") in ("true", "1"):
            return _status(405, "MethodNotAllowed", f"watch is not supported on {resource.RESOURCE}")
        refused = await self._authorize(user, attributes)
        if refused is not None:
            log.info("request refused: forbidden", extra=fields)
            return refused
        try:
            items, warnings = await self._read(found, query)
        except (ReadFailure, SelectorError, resource.BadSnapshotName) as exc:
            code, reason = _failure(exc)
            log.warning("snapshots not read", extra={**fields, "reason": reason, "error": exc.message})
            return _status(code, reason, exc.message, name=found.name)
        log.info(
            "snapshots read",
            extra={**fields, "snapshots": len(items), "seconds": round(time.monotonic() - began, 3)},
        )
        headers = tuple(_warning(text) for text in warnings)
        table_version = resource.wants_table(request.headers.get("accept", ""))
        if table_version is not None:
            body = resource.table(
                items,
                table_version=table_version,
                include=query.get("includeObject", "Metadata"),
            )
            return Response.json(body, headers=headers)
        if found.verb == "get":
            return Response.json(items[0], headers=headers)
        return Response.json(resource.snapshot_list(items), headers=headers)

    async def _authorize(self, user: User, attributes: Attributes) -> Response | None:
        """None when the API server allows it, else the 403 to answer (500 if it cannot be asked)."""
        try:
            permitted, reason = await allowed(self.reader.api, user, attributes)
        except KubeError as exc:
            log.error("SubjectAccessReview failed", extra={"user": user.name, "error": exc.message})
            return _status(500, "InternalError", f"authorization failed: {exc.message}")
        if permitted:
            return None
        return _status(403, "Forbidden", attributes.forbidden_message(user, reason), name=attributes.name)

    async def _read(self, found: Route, query: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
        """The snapshot objects a route names, and warnings on what was left out."""
        if found.verb == "get" and found.namespace is not None and found.name is not None:
            return [await self._get(found.namespace, found.name)], []
        selector = parse(query.get("labelSelector", ""))
        repositories = [
            repo
            for repo in await self.reader.repositories(found.namespace)
            if _repository_selected(repo, selector)
        ]
        listed = await self.reader.read_all(repositories)
        items = [_object(repo, snapshot) for repo, snapshot in listed.snapshots]
        return [item for item in items if selector.matches(item["metadata"]["labels"])], listed.warnings

    async def _get(self, namespace: str, name: str) -> dict[str, Any]:
        repository_name, short_id = resource.split_name(name)
        repository = await self.reader.repository(namespace, repository_name)
        for snapshot in await self.reader.snapshots(repository):
            if snapshot.id.startswith(short_id):
                return _object(repository, snapshot)
        raise ReadFailure(404, "NotFound", f'{resource.RESOURCE} "{name}" not found')


def _labels(repository: dict[str, Any]) -> dict[str, str]:
    labels = (repository.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def _repository_selected(repository: dict[str, Any], selector: Selector) -> bool:
    """Whether any snapshot of ``repository`` may match: every requirement but those on ``hostname`` (a
    snapshot's) is decided by the Repository's name and labels, before restic runs."""
    name = str((repository.get("metadata") or {}).get("name"))
    labels = {resource.LABEL_REPOSITORY: name, **_labels(repository)}
    return selector.without(resource.LABEL_HOSTNAME).matches(labels)


def _object(repository: dict[str, Any], snapshot: rj.Snapshot) -> dict[str, Any]:
    metadata = repository.get("metadata") or {}
    return resource.snapshot_object(
        str(metadata.get("namespace")), str(metadata.get("name")), _labels(repository), snapshot
    )


def _failure(exc: ReadFailure | SelectorError | resource.BadSnapshotName) -> tuple[int, str]:
    if isinstance(exc, ReadFailure):
        return exc.code, exc.reason
    return 400, "BadRequest"


def make_app(api: SnapshotsApi) -> App:
    """The application: every request goes through :meth:`SnapshotsApi.dispatch`."""
    return App(middlewares=[api.dispatch])
