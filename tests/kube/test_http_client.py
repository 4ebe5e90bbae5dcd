"""The agent's HTTP/1.1 client (h11 on asyncio streams) against real servers on this machine: keep-alive
reuse, a keep-alive connection the server closed meanwhile, request timeouts, a server that breaks HTTP,
TLS that trusts the given CA only, and a refused WebSocket upgrade."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_aiohttp import AiohttpServer

from stashlet.kube.config import ClusterConfig
from stashlet.kube.errors import NotFound, TransportError
from stashlet.kube.rest import RestClient
from stashlet.kube.websocket import UpgradeRefused

DEMO = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "demo"}}


@pytest.fixture
async def counted(aiohttp_server: AiohttpServer) -> tuple[str, list[object]]:
    """A server answering ``/api/v1/namespaces/demo`` (``/slow`` after 5 s), and the connections it saw."""
    peers: list[object] = []

    async def demo(request: web.Request) -> web.Response:
        if request.transport is not None:
            peers.append(request.transport.get_extra_info("peername"))
        return web.json_response(DEMO)

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response(DEMO)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/demo", demo)
    app.router.add_get("/slow", slow)
    started = await aiohttp_server(app)
    return str(started.make_url("")).rstrip("/"), peers


async def test_requests_reuse_one_keep_alive_connection(counted: tuple[str, list[object]]) -> None:
    host, peers = counted
    async with RestClient(ClusterConfig(server=host, source="test")) as rest:
        for _ in range(5):
            assert (await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"] == "demo"
        with pytest.raises(NotFound):
            await rest.send("GET", "/api/v1/namespaces/other")
        assert (await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"] == "demo"
    assert len(peers) == 6
    assert len(set(peers)) == 1, "a request opened a connection of its own"


async def test_a_request_past_its_time_is_a_timeout_and_the_client_goes_on(
    counted: tuple[str, list[object]],
) -> None:
    host, _ = counted
    async with RestClient(ClusterConfig(server=host, source="test")) as rest:
        with pytest.raises(TimeoutError):
            await rest.send("GET", "/slow", within=0.3)
        assert (await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"] == "demo"


async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_an_idle_connection_the_server_closed_is_replaced_for_a_get() -> None:
    """The server answers one request per connection, then closes it without saying so (no
    ``Connection: close``): the next GET goes on a new connection without an error."""
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"metadata": {"name": "demo"}}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server, host = await raw_server(once)
    async with server, RestClient(ClusterConfig(server=host, source="test")) as rest:
        for _ in range(3):
            assert (await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"] == "demo"
            await asyncio.sleep(0.05)
    assert connections == 3


async def test_a_server_that_breaks_http_is_a_transport_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server, host = await raw_server(garbage)
    async with server, RestClient(ClusterConfig(server=host, source="test")) as rest:
        with pytest.raises(TransportError):
            await rest.send("GET", "/api/v1/namespaces/demo")


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_trusts_the_cluster_ca_only(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    """Over HTTPS the server's certificate is checked against the given CA: the right CA connects, another
    CA is refused (no fallback to the system's bundle)."""
    cert, key = self_signed(tmp_path, "server")
    other, _ = self_signed(tmp_path, "other")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def demo(_: web.Request) -> web.Response:
        return web.json_response(DEMO)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/demo", demo)
    started = await aiohttp_server(app, ssl=context)
    host = f"https://127.0.0.1:{started.port}"
    async with RestClient(ClusterConfig(server=host, source="test", ca_file=cert)) as rest:
        assert (await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"] == "demo"
    async with RestClient(ClusterConfig(server=host, source="test", ca_file=other)) as rest:
        with pytest.raises(ssl.SSLCertVerificationError):
            await rest.send("GET", "/api/v1/namespaces/demo")


async def test_a_refused_websocket_upgrade_carries_its_status(counted: tuple[str, list[object]]) -> None:
    host, _ = counted
    async with RestClient(ClusterConfig(server=host, source="test")) as rest:
        with pytest.raises(UpgradeRefused) as refused:
            await rest.websocket("/api/v1/namespaces/demo/pods/none/exec", [("command", "true")], ("v4",))
    assert refused.value.status == 404
