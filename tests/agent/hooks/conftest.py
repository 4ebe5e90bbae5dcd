"""Servers the hook tests send to: an HTTP recorder (aiohttp), a TCP port that never answers, a closed
port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """An HTTP server that records every request and answers ``status`` (with ``text``)."""

    port: int = 0
    status: int = 200
    text: str = "ok"
    seen: list[Seen] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    observe: Callable[[web.Request], None] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.observe is not None:
            self.observe(request)
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.query_string,
                dict(request.headers),
                await request.read(),
            )
        )
        return web.Response(status=self.status, text=self.text, headers=self.extra_headers)


@pytest.fixture
async def recorder(aiohttp_server: AiohttpServer) -> Recorder:
    found = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.handle)
    server = await aiohttp_server(app)
    found.port = server.port or 0
    return found


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts, reads, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
