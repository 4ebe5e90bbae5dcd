"""The agent's HTTP API: probes, status, Prometheus metrics, instant backups, its OpenAPI document.

It is served by :mod:`stashlet.agent.http_api.transport` (h11 on asyncio streams, no web framework).

``make_app`` builds the application around a ``StatusSource`` (the sidecar's live state) and a metrics
registry; ``run_server`` serves it on a TCP port, ``await server.cleanup()`` stops it. The handlers
serve what the source gives them and add nothing secret: error bodies never echo request headers, and
logs name the caller's address, never its credentials.

``POST /backup`` is accepted from loopback (127.0.0.0/8, ::1) without credentials, and from anywhere
else only with ``Authorization: Bearer <token>`` equal to the content of the API token file, which is
read again on every request (a rotated Secret applies without a restart) and compared in constant time.
The peer address is the TCP peer's: forwarding headers are not trusted.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from stashlet.agent.errors import RefuseInput
from stashlet.agent.http_api import openapi as doc
from stashlet.agent.http_api.transport import App, Handler, Refusal, Request, Response, Server
from stashlet.api.common import format_time

log = logging.getLogger(__name__)

BEARER_REALM: Final = "stashlet-agent"


class BackupRefused(RefuseInput):
    """The agent will not take an instant backup now; the message says why (answered with 409)."""


class StatusSource(Protocol):
    """What the HTTP API serves; the sidecar (or restore/job runner) implements it."""

    def wedged(self) -> Mapping[str, str]:
        """What stopped making progress, by name, with why; empty while alive. Anything named here
        makes ``/healthz`` fail, so that the kubelet restarts the agent (it cannot recover by itself)."""

    def ready(self) -> tuple[bool, str]:
        """Whether the agent is ready, and if not, why (e.g. "watch not established")."""

    def status(self) -> dict[str, Any]:
        """The JSON-able status document (see the AgentStatus schema in the OpenAPI document)."""

    async def request_backup(self, requested_by: str) -> str:
        """Create a BackupSession now and return its name; raise BackupRefused to decline."""


@dataclass(frozen=True)
class _Settings:
    source: StatusSource
    registry: CollectorRegistry
    token_file: Path | None
    document: dict[str, Any]


# ---------------------------------------------------------------- pure helpers


def is_loopback(remote: str | None) -> bool:
    """True when ``remote`` is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def read_token(path: Path) -> str | None:
    """The API token in ``path``, surrounding whitespace removed; None when missing, unreadable or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def tokens_match(presented: str, expected: str) -> bool:
    """Constant-time comparison of two tokens (as UTF-8 bytes, so any text compares)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _error(status: int, message: str) -> Response:
    return Response.json({"error": message}, status)


def _version() -> str:
    try:
        return metadata.version("stashlet")
    except metadata.PackageNotFoundError:
        return "0.0.0"


# ---------------------------------------------------------------- handlers


@dataclass(frozen=True)
class _Handlers:
    settings: _Settings

    async def healthz(self, _: Request) -> Response:
        wedged = dict(self.settings.source.wedged())
        if not wedged:
            return Response.text("ok")
        log.warning("liveness probe failed", extra={"wedged": wedged})
        body = {"error": f"not alive: {', '.join(sorted(wedged))}", "wedged": wedged}
        return Response.json(body, 503)

    async def readyz(self, _: Request) -> Response:
        ready, reason = self.settings.source.ready()
        if ready:
            return Response.text("ok")
        return Response.text(reason or "not ready", 503)

    async def status(self, _: Request) -> Response:
        body = json.dumps(self.settings.source.status(), default=_json_default)
        return Response(200, body.encode(), "application/json; charset=utf-8")

    async def metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encoder(self.settings.registry), content_type)

    async def openapi(self, _: Request) -> Response:
        return Response.json(self.settings.document)

    async def backup(self, request: Request) -> Response:
        via = await _authorize_backup(request, self.settings)
        requested_by = f"HTTP API from {request.remote} ({via})"
        try:
            name = await self.settings.source.request_backup(requested_by)
        except BackupRefused as exc:
            log.info("instant backup refused", extra={"remote": request.remote, "reason": exc.message})
            return _error(409, exc.message)
        log.info(
            "instant backup requested", extra={"remote": request.remote, "via": via, "backupSession": name}
        )
        return Response.json({"backupSession": name}, 202)


def _refusal(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Refusal:
    return Refusal(Response.json({"error": message}, status, headers))


async def _authorize_backup(request: Request, settings: _Settings) -> str:
    """How the caller may ask for a backup ("loopback" or "bearer token"); raises the refusal if not."""
    remote = request.remote
    if is_loopback(remote):
        return "loopback"
    if settings.token_file is None:
        log.warning("instant backup refused: off loopback, no API token configured", extra={"remote": remote})
        raise _refusal(403, "instant backups are accepted from loopback only: no API token is configured")
    expected = await asyncio.to_thread(read_token, settings.token_file)
    if expected is None:
        log.warning(
            "instant backup refused: the API token file is missing or empty", extra={"remote": remote}
        )
        raise _refusal(403, "instant backups are accepted from loopback only: no API token is available")
    presented = bearer_token(request.headers.get("authorization"))
    if presented is None:
        raise _refusal(
            401, "a bearer token is required", (("WWW-Authenticate", f'Bearer realm="{BEARER_REALM}"'),)
        )
    if not tokens_match(presented, expected):
        log.warning("instant backup refused: wrong bearer token", extra={"remote": remote})
        raise _refusal(
            401,
            "the bearer token is not valid",
            (("WWW-Authenticate", f'Bearer realm="{BEARER_REALM}", error="invalid_token"'),),
        )
    return "bearer token"


async def _internal_errors(request: Request, handler: Handler) -> Response:
    """Unexpected failures answer 500 with a fixed message; the details go to the log only."""
    try:
        return await handler(request)
    except Refusal:
        raise
    except Exception:
        log.exception("HTTP API handler failed", extra={"path": request.path, "method": request.method})
        return _error(500, "internal error; see the agent's log")


# ---------------------------------------------------------------- app and server


def make_app(
    source: StatusSource, *, metrics_registry: CollectorRegistry, api_token_file: Path | None
) -> App:
    """The agent's HTTP API around ``source``; ``/metrics`` serves ``metrics_registry``."""
    handlers = _Handlers(
        _Settings(
            source=source,
            registry=metrics_registry,
            token_file=api_token_file,
            document=openapi_document(),
        )
    )
    app = App(middlewares=[_internal_errors])
    app.add("GET", doc.PATH_HEALTHZ, handlers.healthz)
    app.add("GET", doc.PATH_READYZ, handlers.readyz)
    app.add("GET", doc.PATH_STATUS, handlers.status)
    app.add("GET", doc.PATH_METRICS, handlers.metrics)
    app.add("POST", doc.PATH_BACKUP, handlers.backup)
    app.add("GET", doc.PATH_OPENAPI, handlers.openapi)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document the app serves at ``/openapi.json`` (a fresh copy)."""
    return doc.openapi_document(_version())


async def run_server(app: App, host: str, port: int, *, shutdown_timeout: float = 5.0) -> Server:
    """Serve ``app`` on ``host:port`` (port 0: any free one, see ``server.addresses``).

    No access log (probes would flood it). Stop with ``await server.cleanup()``: it stops listening,
    lets requests in flight finish for up to ``shutdown_timeout`` seconds, and closes the connections.
    """
    server = Server(app, shutdown_timeout=shutdown_timeout)
    await server.start(host, port)
    return server
