"""A small HTTP/1.1 client on asyncio streams and h11: one connection, its answers, and a keep-alive pool.

What the agent's clients need and no more: :class:`Connection` sends a request and reads the answer's
head, then its body whole (:meth:`Answer.read`, with a size cap) or piece by piece as it arrives
(:meth:`Answer.chunks`, a watch); :class:`Pool` keeps a few idle connections to one server for reuse.
A connection that fails, or whose answer was not read to its end, is closed, never reused.

Failures: :class:`~stashlet.kube.errors.TransportError` (a ``ConnectionError``) when the peer breaks
HTTP or closes early; the ``OSError`` of the socket (refused, reset, TLS) as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from stashlet.kube.errors import TransportError

READ_SIZE = 2**16
CONNECT_TIMEOUT = 30.0
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Origin:
    """Where a server is: scheme, host, port, and the path prefix of its URL (usually empty)."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of ``url`` (``https://host:6443``); ValueError when it is not an http(s) URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        """``host:port`` as the ``Host`` header gives it (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


async def open_stream(
    host: str, port: int, context: ssl.SSLContext | None, *, within: float = CONNECT_TIMEOUT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (TLS when ``context`` is given) connection to ``host:port`` within ``within`` seconds."""
    async with asyncio.timeout(within):
        return await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None, limit=READ_SIZE
        )


@dataclass(eq=False)
class Connection:
    """One HTTP/1.1 connection: one request at a time, reusable once an answer was read to its end."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    used: bool = False
    """It carried a request before (a reused keep-alive connection)."""
    received: int = 0
    """Bytes received since the current request was sent."""

    @classmethod
    async def open(cls, origin: Origin, context: ssl.SSLContext | None) -> Connection:
        """A new connection to ``origin`` (TLS with ``context`` for https)."""
        tls = context if origin.scheme == "https" else None
        reader, writer = await open_stream(origin.host, origin.port, tls)
        return cls(reader, writer)

    @property
    def reusable(self) -> bool:
        """Idle and still open: both sides ended their last message and the peer has not hung up."""
        return self.h11.our_state is h11.IDLE and not self.reader.at_eof() and not self.writer.is_closing()

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None = None
    ) -> Answer:
        """Send one request and read its answer's head; the body is the :class:`Answer`'s to read."""
        head = list(headers)
        if body is not None:
            head.append(("Content-Length", str(len(body))))
        self.received = 0
        try:
            out = self.h11.send(h11.Request(method=method, target=target, headers=head))
            if body:
                out += self.h11.send(h11.Data(data=body))
            out += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise ValueError(f"cannot send {method} {target.split('?', 1)[0]}: {exc}") from None
        self.writer.write(out)
        await self.writer.drain()
        self.used = True
        while True:
            event = await self._next()
            if isinstance(event, h11.InformationalResponse):
                continue
            if not isinstance(event, h11.Response):
                raise TransportError(f"unexpected {type(event).__name__} before the answer's head")
            fields = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
            return Answer(self, event.status_code, event.reason.decode("latin-1"), fields)

    async def _next(self) -> object:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise TransportError(f"the server broke HTTP: {exc}") from None
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_SIZE)
                self.received += len(data)
                self.h11.receive_data(data)  # b"": the peer hung up (h11 tells how that ends the answer)
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise TransportError("the server closed the connection")
            return event

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The answer's body as it arrives, until its end."""
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                if event.data:
                    yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return

    def recycle(self) -> bool:
        """Ready the connection for its next request; False when it cannot carry one."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return False
            return self.reusable
        return False

    def close(self) -> None:
        """Close the socket (no wait)."""
        self.writer.close()

    async def aclose(self) -> None:
        """Close the socket and wait for it."""
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


@dataclass(eq=False)
class Answer:
    """The head of an answer; its body is read once, whole or in chunks, then :meth:`release` is called."""

    connection: Connection
    status: int
    reason: str
    headers: dict[str, str]
    """Header values by lower-case name (a repeated header: its last value)."""
    pool: Pool | None = None
    complete: bool = False

    async def read(self, limit: int | None = None) -> bytes:
        """The body (at most ``limit`` bytes: the rest is not read, the connection then closed)."""
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if limit is not None and len(data) >= limit:
                return bytes(data[:limit])
        return bytes(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        async for chunk in self.connection.body_chunks():
            yield chunk
        self.complete = True

    def release(self) -> None:
        """Give the connection back to its pool when the body was read to its end, else close it."""
        if self.complete and self.pool is not None and self.connection.recycle():
            self.pool.put(self.connection)
        else:
            self.connection.close()


@dataclass(eq=False)
class Pool:
    """Keep-alive connections to one server: at most ``keep`` idle ones wait for reuse."""

    origin: Origin
    context: ssl.SSLContext | None
    keep: int = 4
    idle: list[Connection] = field(default_factory=list)

    def put(self, connection: Connection) -> None:
        """Keep an idle connection (closed when the pool holds enough)."""
        if len(self.idle) < self.keep:
            self.idle.append(connection)
        else:
            connection.close()

    async def take(self) -> Connection:
        """An idle connection still open, else a new one."""
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable:
                return connection
            connection.close()
        return await Connection.open(self.origin, self.context)

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None = None
    ) -> Answer:
        """Send over a pooled connection; an idempotent request whose reused connection the server had
        closed meanwhile (no answer at all) goes once more over a new one, as Go's client does."""
        head = list(headers)
        connection = await self.take()
        reused = connection.used
        try:
            answer = await connection.request(method, target, head, body)
        except (TransportError, ConnectionResetError, BrokenPipeError):
            connection.close()
            if not (reused and method in IDEMPOTENT and connection.received == 0):
                raise
            connection = await Connection.open(self.origin, self.context)
            try:
                answer = await connection.request(method, target, head, body)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        answer.pool = self
        return answer

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.aclose()
