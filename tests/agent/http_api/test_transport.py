"""The HTTP API's own server (h11 on asyncio streams) on a real port: keep-alive, 404/405, a body too
large, a request that breaks HTTP, and a shutdown that lets a request in flight finish."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest

from stashlet.agent.http_api import transport
from stashlet.agent.http_api.transport import App, Request, Response, Server


@pytest.fixture
async def started() -> AsyncIterator[tuple[Server, asyncio.Event, asyncio.Event]]:
    """A server with ``GET /hello``, ``POST /echo`` and ``GET /slow`` (waits for a release)."""
    entered, release = asyncio.Event(), asyncio.Event()
    app = App()

    async def hello(_: Request) -> Response:
        return Response.text("hello")

    async def echo(request: Request) -> Response:
        return Response(200, request.body, "application/octet-stream")

    async def slow(_: Request) -> Response:
        entered.set()
        await release.wait()
        return Response.text("done")

    app.add("GET", "/hello", hello)
    app.add("POST", "/echo", echo)
    app.add("GET", "/slow", slow)
    server = Server(app, shutdown_timeout=5.0)
    await server.start("127.0.0.1", 0)
    try:
        yield server, entered, release
    finally:
        release.set()
        await server.cleanup()


def base(server: Server) -> str:
    host, port = server.addresses[0][:2]
    return f"http://{host}:{port}"


async def test_keep_alive_serves_many_requests_on_one_connection(
    started: tuple[Server, asyncio.Event, asyncio.Event],
) -> None:
    """Three requests sent on one socket, pipelined, get three answers on it, in order."""
    server, _, _ = started
    host, port = server.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    writer.write(request * 2 + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    await writer.drain()
    answers = b""
    while answers.count(b"HTTP/1.1 200 OK") < 3 or not answers.endswith(b"abc"):
        chunk = await asyncio.wait_for(reader.read(4096), 5)
        assert chunk, f"the server closed the connection after {answers!r}"
        answers += chunk
    writer.close()
    assert answers.count(b"Content-Type: text/plain; charset=utf-8") == 2
    assert answers.count(b"\r\n\r\nhello") == 2


async def test_unknown_path_is_404_and_other_method_405_with_allow(
    started: tuple[Server, asyncio.Event, asyncio.Event],
) -> None:
    server, _, _ = started
    async with aiohttp.ClientSession(base(server)) as session:
        async with session.get("/nowhere") as response:
            assert response.status == 404
        async with session.post("/hello") as response:
            assert response.status == 405
            assert response.headers["Allow"] == "GET"
        async with session.head("/hello") as response:
            assert response.status == 405


async def test_a_body_is_read_whole_and_one_too_large_is_413(
    started: tuple[Server, asyncio.Event, asyncio.Event],
) -> None:
    server, _, _ = started
    async with aiohttp.ClientSession(base(server)) as session:
        async with session.post("/echo", data=b"x" * 100_000) as response:
            assert response.status == 200
            assert await response.read() == b"x" * 100_000
        too_large = io.BytesIO(b"x" * (transport.MAX_BODY + 1))
        async with session.post("/echo", data=too_large) as response:
            assert response.status == 413


async def test_a_request_that_breaks_http_is_400_and_closed(
    started: tuple[Server, asyncio.Event, asyncio.Event],
) -> None:
    server, _, _ = started
    host, port = server.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /hello HTTP/1.1\r\nno colon here\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_cleanup_lets_a_request_in_flight_finish_then_stops_listening(
    started: tuple[Server, asyncio.Event, asyncio.Event],
) -> None:
    server, entered, release = started
    url = base(server)
    async with aiohttp.ClientSession(url) as session:
        idle = await session.get("/hello")  # leaves an idle keep-alive connection behind
        await idle.read()
        pending = asyncio.create_task(session.get("/slow"))
        await entered.wait()
        stopping = asyncio.create_task(server.cleanup())
        await asyncio.sleep(0.2)
        assert not stopping.done(), "cleanup did not wait for the request in flight"
        release.set()
        response = await pending
        assert response.status == 200
        assert await response.text() == "done"
        await asyncio.wait_for(stopping, 5)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/hello")
