"""The server's TLS edge, in process: real certificates (the local control plane's PKI code), a real TLS
handshake. Only a client certificate of the front-proxy CA with an allowed name is the front proxy: it
gets discovery, and with X-Remote-User each group header line reaches the request; without it, or with
another CA's certificate, nothing but the probes answers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stashlet.agent.http_api.transport import App, Handler, Request, Response, Server
from stashlet.agent.restic.runner import ResticSettings
from stashlet.agent.snapshots_api.frontproxy import RequestHeaderConfig, common_name, tls_context
from stashlet.agent.snapshots_api.reading import SnapshotReader
from stashlet.agent.snapshots_api.server import FrontProxyState, SnapshotsApi
from stashlet.kube.config import ClusterConfig
from stashlet.kube.rest import RestClient
from stashlet.localcluster import pki as pki_mod


def _client(pki: pki_mod.Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _get(port: int, path: str, context: ssl.SSLContext, headers: str = "") -> tuple[int, Any]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    if not answer:
        return 0, "no answer: the connection was closed"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body.startswith(b"{") else body.decode()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[pki_mod.Pki, int, list[Request]]]:
    """The Snapshot API's app over TLS with the PKI's front-proxy CA; a middleware records what reached
    the app as a Request. Its API client points at a closed port: no test here reaches it."""
    pki = pki_mod.create(tmp_path / "pki", {"stashlet-admin": "system:masters"})
    cert, key = pki_mod.serving_certificate(pki, "snapshots", ["localhost"], tmp_path)
    config = RequestHeaderConfig(
        client_ca=pki.front_proxy_ca_cert.read_text(), allowed_names=(pki_mod.FRONT_PROXY_CLIENT,)
    )
    api = RestClient(ClusterConfig(server="https://127.0.0.1:9", source="test", ca_file=pki.ca_cert))
    reader = SnapshotReader(api, ResticSettings(), str(tmp_path))
    snapshots = SnapshotsApi(reader, FrontProxyState(config))
    seen: list[Request] = []

    async def record(request: Request, inner: Handler) -> Response:
        seen.append(request)
        return await inner(request)

    server = Server(
        App(middlewares=[record, snapshots.dispatch]), ssl_context=tls_context(str(cert), str(key), config)
    )
    await server.start("127.0.0.1", 0)
    try:
        yield pki, server.addresses[0][1], seen
    finally:
        await server.cleanup()
        await api.close()


async def test_the_front_proxy_gets_discovery_and_its_header_lines_arrive(
    served: tuple[pki_mod.Pki, int, list[Request]],
) -> None:
    pki, port, seen = served
    proxy = _client(pki, pki.front_proxy_client_cert, pki.front_proxy_client_key)
    status, body = await asyncio.to_thread(
        _get, port, "/apis", proxy, "X-Remote-Group: a\r\nX-Remote-Group: b\r\n"
    )
    assert status == 200
    assert body["groups"][0]["name"] == "repositories.stash.appscode.com"
    status, body = await asyncio.to_thread(
        _get, port, "/apis/repositories.stash.appscode.com/v1alpha1", proxy
    )
    assert (status, [r["name"] for r in body["resources"]]) == (200, ["snapshots"])
    assert common_name(seen[0].peer_cert) == pki_mod.FRONT_PROXY_CLIENT
    assert [v for k, v in seen[0].header_lines if k.lower() == "x-remote-group"] == ["a", "b"]
    status, body = await asyncio.to_thread(_get, port, "/apis/other", proxy)
    assert (status, body["reason"]) == (404, "NotFound")
    path = "/apis/repositories.stash.appscode.com/v1alpha1/namespaces/demo/snapshots"
    status, body = await asyncio.to_thread(_get, port, path, proxy)
    assert (status, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")


async def test_anyone_else_gets_only_the_probes(served: tuple[pki_mod.Pki, int, list[Request]]) -> None:
    pki, port, seen = served
    anonymous = _client(pki)
    assert await asyncio.to_thread(_get, port, "/readyz", anonymous) == (200, "ok")
    status, body = await asyncio.to_thread(
        _get, port, "/apis", anonymous, "X-Remote-User: stashlet-admin\r\n"
    )
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert seen[-1].peer_cert is None
    admin = _client(pki, pki.client_cert("stashlet-admin"), pki.client_key("stashlet-admin"))
    try:
        refused = await asyncio.to_thread(_get, port, "/apis", admin)
    except (ssl.SSLError, ConnectionError) as exc:
        refused = (0, str(exc))
    assert refused[0] == 0, refused
