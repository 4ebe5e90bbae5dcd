"""The agent's HTTP transport (:mod:`stashlet.agent.http_api.transport`) over TLS, with what an extension
API server needs to know of each request that a plain :class:`Request` does not carry: every header line
(the front proxy sends ``X-Remote-Group`` once per group) and the common name of the client certificate
the TLS layer verified (None when the client presented none)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from stashlet.agent.http_api.transport import (
    MAX_BODY,
    READ_SIZE,
    App,
    Request,
    RequestTooLarge,
    Response,
    Server,
    _next,
    _write,
)
from stashlet.agent.snapshots_api.frontproxy import common_name


@dataclass(frozen=True)
class TlsRequest(Request):
    """A request over TLS: its header lines in order, and its verified client certificate's name."""

    header_lines: tuple[tuple[str, str], ...] = ()
    peer_name: str | None = None


class TlsServer(Server):
    """An :class:`App` served over TLS with ``context``; handlers receive :class:`TlsRequest`."""

    def __init__(self, app: App, context: ssl.SSLContext, *, shutdown_timeout: float = 5.0) -> None:
        """Serve ``app`` with ``context``."""
        super().__init__(app, shutdown_timeout=shutdown_timeout)
        self.context = context

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free one) over TLS."""
        self.server = await asyncio.start_server(
            self._accept, host, port, limit=READ_SIZE, ssl=self.context, ssl_handshake_timeout=10
        )

    async def _serve(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if peer else None
        peer_name = common_name(writer.get_extra_info("peercert"))
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = await _read_request(conn, reader, remote, peer_name)
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


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, remote: str | None, peer_name: str | None
) -> TlsRequest | None:
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
    return TlsRequest(
        event.method.decode("ascii"),
        target.path,
        target.query,
        dict(lines),
        bytes(body),
        remote,
        header_lines=lines,
        peer_name=peer_name,
    )
