"""A WebSocket client on asyncio streams and wsproto: the upgrade, then whole messages until the close.

What ``pods/exec`` needs: offer subprotocols, read every message (binary or text, as bytes) until the
server closes, answer its close. A refused upgrade is :class:`UpgradeRefused` with the HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from stashlet.kube.errors import TransportError

READ_SIZE = 2**16


class UpgradeRefused(Exception):
    """The server answered the upgrade with an HTTP status instead of switching protocols."""

    def __init__(self, status: int) -> None:
        """Keep the HTTP status."""
        super().__init__(f"WebSocket upgrade refused: HTTP {status}")
        self.status = status


class WebSocket:
    """An open client WebSocket; iterate :meth:`messages`, then :meth:`close`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ws: WSConnection,
        protocol: str | None,
    ) -> None:
        """Wrap an upgraded connection (see :meth:`connect`)."""
        self.reader, self.writer, self.ws, self.protocol = reader, writer, ws, protocol
        self.pending: deque[Event] = deque()

    @classmethod
    async def connect(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        target: str,
        protocols: Sequence[str],
        headers: Sequence[tuple[str, str]] = (),
    ) -> WebSocket:
        """Upgrade the connection to a WebSocket; UpgradeRefused when the server will not."""
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=host,
            target=target,
            subprotocols=list(protocols),
            extra_headers=[(n.encode(), v.encode()) for n, v in headers],
        )
        try:
            writer.write(ws.send(request))
        except LocalProtocolError as exc:
            raise ValueError(f"cannot open a WebSocket to {target.split('?', 1)[0]}: {exc}") from None
        await writer.drain()
        socket = cls(reader, writer, ws, None)
        async for event in socket._events():
            if isinstance(event, AcceptConnection):
                socket.protocol = event.subprotocol
                return socket
            if isinstance(event, RejectConnection):
                raise UpgradeRefused(event.status_code)
        raise TransportError("the server closed the connection during the WebSocket upgrade")

    async def _events(self) -> AsyncIterator[Event]:
        """The connection's events one at a time; one not taken yet (the frames that came with the
        upgrade's answer) waits in ``pending`` for the next caller."""
        while True:
            while self.pending:
                yield self.pending.popleft()
            try:
                self.pending.extend(self.ws.events())
            except RemoteProtocolError as exc:
                raise TransportError(f"the server broke the WebSocket protocol: {exc}") from None
            if self.pending:
                continue
            data = await self.reader.read(READ_SIZE)
            if not data:
                return
            self.ws.receive_data(data)

    async def messages(self) -> AsyncIterator[bytes]:
        """Every message as it completes (text as UTF-8), until the server closes."""
        parts = bytearray()
        async for event in self._events():
            if isinstance(event, (BytesMessage, TextMessage)):
                data = event.data
                parts += data.encode() if isinstance(data, str) else data
                if event.message_finished:
                    yield bytes(parts)
                    parts.clear()
            elif isinstance(event, Ping):
                await self._send(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError):
                    await self._send(self.ws.send(event.response()))
                return
            elif isinstance(event, RejectData):
                continue

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> WebSocket:
        """Use as ``async with``."""
        return self

    async def __aexit__(self, *_: object) -> None:
        """Close on exit."""
        await self.close()
