"""A small HTTP/1.1 server on asyncio streams and h11: routes by method and path, middlewares, keep-alive.

:class:`App` turns a :class:`Request` into a :class:`Response` (404 for an unknown path, 405 with
``Allow`` for a known path and another method, a :class:`Refusal` raised by a handler answered as is);
:class:`Server` serves an App on a TCP port (over TLS when given an SSL context, the client's verified
certificate then handed to the handlers), one request at a time per connection, and on
:meth:`Server.cleanup` stops listening, closes idle connections and lets requests in flight finish for
up to its shutdown timeout. A request body over :data:`MAX_BODY` answers 413; a request that breaks HTTP
answers 400 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11

from stashlet.agent.errors import RefuseInput

if TYPE_CHECKING:  # the sidecar serves plain HTTP: ssl is not loaded for it
    import ssl

log = logging.getLogger(__name__)

MAX_BODY = 2**20
KEEPALIVE_TIMEOUT = 75.0
READ_SIZE = 2**16
TEXT = "text/plain; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """One request as a handler sees it."""

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """Header values by lower-case name."""
    body: bytes = b""
    remote: str | None = None
    """The TCP peer's address."""
    header_lines: tuple[tuple[str, str], ...] = ()
    """Every header line in order, as sent (a header sent twice is in ``headers`` once)."""
    peer_cert: Mapping[str, Any] | None = None
    """Over TLS, the client certificate the TLS layer verified (``SSLObject.getpeercert()``); else None."""


@dataclass(frozen=True)
class Response:
    """One answer: status, body, content type, further headers."""

    status: int = 200
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        """A plain-text answer."""
        return cls(status, text.encode(), TEXT)

    @classmethod
    def json(cls, body: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A JSON answer."""
        return cls(status, json.dumps(body).encode(), JSON_TYPE, headers)


class Refusal(RefuseInput):
    """Raised by a handler (or a middleware) to refuse a request with ``response`` at once."""

    def __init__(self, response: Response) -> None:
        """Answer ``response``."""
        super().__init__(f"HTTP {response.status}")
        self.response = response


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]


@dataclass
class App:
    """Handlers by (method, path), and the middlewares around them (the first is outermost)."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    middlewares: list[Middleware] = field(default_factory=list)

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Route ``method path`` to ``handler``."""
        self.routes[(method, path)] = handler

    async def handle(self, request: Request) -> Response:
        """The answer to ``request``."""
        handler: Handler = self._route
        for middleware in reversed(self.middlewares):
            handler = _wrap(middleware, handler)
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response

    async def _route(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is not None:
            return await handler(request)
        allowed = sorted(method for method, path in self.routes if path == request.path)
        if allowed:
            return Response(405, b"405: Method Not Allowed", TEXT, (("Allow", ",".join(allowed)),))
        return Response(404, b"404: Not Found", TEXT)


def _wrap(middleware: Middleware, inner: Handler) -> Handler:
    async def handler(request: Request) -> Response:
        return await middleware(request, inner)

    return handler


class Server:
    """An :class:`App` served on one listening socket; see :meth:`start` and :meth:`cleanup`."""

    def __init__(
        self, app: App, *, shutdown_timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Serve ``app`` (over TLS with ``ssl_context``); requests in flight get ``shutdown_timeout``
        seconds at cleanup."""
        self.app = app
        self.ssl_context = ssl_context
        self.shutdown_timeout = shutdown_timeout
        self.server: asyncio.Server | None = None
        self.connections: dict[asyncio.Task[None], bool] = {}
        """Each connection's task, and whether it is busy with a request."""

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free one)."""
        if self.ssl_context is None:
            self.server = await asyncio.start_server(self._accept, host, port, limit=READ_SIZE)
        else:
            self.server = await asyncio.start_server(
                self._accept, host, port, limit=READ_SIZE, ssl=self.ssl_context, ssl_handshake_timeout=10
            )

    @property
    def addresses(self) -> list[Any]:
        """The addresses listened on (``(host, port, ...)`` each)."""
        return [sock.getsockname() for sock in self.server.sockets] if self.server else []

    async def cleanup(self) -> None:
        """Stop listening, close idle connections, give busy ones the shutdown timeout, then end them."""
        if self.server is not None:
            self.server.close()
        for task, busy in list(self.connections.items()):
            if not busy:
                task.cancel()
        pending = list(self.connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.shutdown_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = False
        try:
            await self._serve(task, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("HTTP API connection failed", extra={"peer": writer.get_extra_info("peername")})
        finally:
            self.connections.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if peer else None
        peer_cert = writer.get_extra_info("peercert") if self.ssl_context is not None else None
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = await _read_request(conn, reader, remote, peer_cert)
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _write(writer, conn, Response(400, b"400: Bad Request"))
                return
            except RequestTooLarge:
                await _write(writer, conn, Response(413, b"413: Request Entity Too Large"))
                return
            if request is None:
                return
            self.connections[task] = True
            try:
                response = await self.app.handle(request)
            finally:
                self.connections[task] = False
            await _write(writer, conn, response, head=request.method == "HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


class RequestTooLarge(RefuseInput):
    """A request body over :data:`MAX_BODY` (answered 413)."""


async def _next(conn: h11.Connection, reader: asyncio.StreamReader, *, idle: bool) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if idle:
            async with asyncio.timeout(KEEPALIVE_TIMEOUT):
                data = await reader.read(READ_SIZE)
        else:
            data = await reader.read(READ_SIZE)
        conn.receive_data(data)


async def _read_request(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    remote: str | None,
    peer_cert: Mapping[str, Any] | None = None,
) -> Request | None:
    """The next request on the connection; None when the client closed it or stayed idle too long."""
    try:
        event = await _next(conn, reader, idle=True)
    except TimeoutError:
        return None
    if not isinstance(event, h11.Request):
        return None
    body = bytearray()
    while True:
        part = await _next(conn, reader, idle=False)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY:
                raise RequestTooLarge(f"a request body over {MAX_BODY} bytes")
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    target = urlsplit(event.target.decode("latin-1"))
    lines = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers)
    return Request(
        event.method.decode("ascii"),
        target.path,
        target.query,
        dict(lines),
        bytes(body),
        remote,
        lines,
        peer_cert,
    )


async def _write(
    writer: asyncio.StreamWriter, conn: h11.Connection, response: Response, *, head: bool = False
) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        *response.headers,
    ]
    if response.status >= 400 and response.status in (400, 413):
        headers.append(("Connection", "close"))
    reason = HTTPStatus(response.status).phrase.encode()
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    if response.body and not head:
        data += conn.send(h11.Data(data=response.body))
    data += conn.send(h11.EndOfMessage())
    writer.write(data)
    await writer.drain()
