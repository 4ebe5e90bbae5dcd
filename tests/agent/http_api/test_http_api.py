"""The agent's HTTP API on real sockets: probes, status, metrics, instant backups and their rules, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families

from stashlet.agent.http_api import server
from stashlet.agent.http_api.server import BackupRefused, make_app, openapi_document, run_server
from stashlet.agent.http_api.transport import App, Handler, Request, Response
from stashlet.agent.live import LiveState
from stashlet.agent.liveness import Heartbeat, wedged

TOKEN = "tok-3f1c2a-correct"
Client = aiohttp.ClientSession
"""A client session whose base URL is the API served on a real port."""

STATUS: dict[str, Any] = {
    "mode": "sidecar",
    "invoker": {"kind": "BackupConfiguration", "name": "sample-backup", "namespace": "demo"},
    "target": {"kind": "Deployment", "name": "stash-demo"},
    "host": "host-0",
    "leader": True,
    "paused": False,
    "watching": True,
    "nextSchedule": "2026-11-25T12:05:00Z",
    "running": {
        "session": "sample-backup-1764072000",
        "operation": "backup",
        "startedAt": "2026-11-25T12:00:00Z",
        "progress": {"percentDone": 0.5, "filesDone": 2, "totalFiles": 4, "bytesDone": 10, "totalBytes": 20},
    },
    "lastResults": {
        "sample-backup-1764071700": {
            "phase": "Succeeded",
            "detail": "",
            "duration": "4.5s",
            "finishedAt": "2026-11-25T11:55:05Z",
        }
    },
    "repository": {"integrity": True, "totalSize": "4.154 KiB", "snapshotCount": 10},
    "uptimeSeconds": 3600.5,
}


@dataclass
class FrozenClock:
    """A monotonic clock that moves only when a test moves it."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSource:
    """A StatusSource whose answers each test sets; it records the backups asked for."""

    heartbeats: list[Heartbeat] = field(default_factory=list)
    readiness: tuple[bool, str] = (True, "")
    document: dict[str, Any] = field(default_factory=lambda: dict(STATUS))
    refuse: str | None = None
    explode: Exception | None = None
    requests: list[str] = field(default_factory=list)

    def wedged(self) -> dict[str, str]:
        return wedged(self.heartbeats)

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    def status(self) -> dict[str, Any]:
        if self.explode is not None:
            raise self.explode
        return self.document

    async def request_backup(self, requested_by: str) -> str:
        if self.explode is not None:
            raise self.explode
        if self.refuse is not None:
            raise BackupRefused(self.refuse)
        self.requests.append(requested_by)
        return f"sample-backup-{1764072000 + len(self.requests)}"


def documented(path: str, method: str, status: int) -> bool:
    """Whether the OpenAPI document lists ``status`` for ``method path``."""
    operation = openapi_document()["paths"][path][method.lower()]
    return str(status) in operation["responses"]


async def call(client: Client, method: str, path: str, status: int, **kwargs: Any) -> aiohttp.ClientResponse:
    """Send a request, check the status and that the document lists it for this route."""
    response = await client.request(method, path, **kwargs)
    assert response.status == status, await response.text()
    assert documented(path, method, status), f"{method} {path} -> {status} is not in the OpenAPI document"
    return response


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("stash_backup_session_success", "Success", ["invoker_name"], registry=registry)
    gauge.labels("sample-backup").set(1)
    return registry


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
async def served() -> AsyncIterator[Callable[[App, str], Awaitable[Client]]]:
    """Serve an app on a free port of a host, with a client session to it; both closed at the end."""
    async with AsyncExitStack() as stack:

        async def serve(app: App, host: str) -> Client:
            running = await run_server(app, host, 0)
            stack.push_async_callback(running.cleanup)
            port = running.addresses[0][1]
            return await stack.enter_async_context(aiohttp.ClientSession(f"http://{host}:{port}"))

        yield serve


@pytest.fixture
async def client(
    served: Callable[[App, str], Awaitable[Client]],
    source: FakeSource,
    registry: CollectorRegistry,
    token_file: Path,
) -> Client:
    """The API on 127.0.0.1, so every request comes from loopback."""
    return await served(make_app(source, metrics_registry=registry, api_token_file=token_file), "127.0.0.1")


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback and can be bound, if there is one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a source address
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    if server.is_loopback(address):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return None
    return address


@pytest.fixture(params=["tcp-peer", "rewritten-peer"])
def remote_client(
    request: pytest.FixtureRequest,
    served: Callable[[App, str], Awaitable[Client]],
    source: FakeSource,
    registry: CollectorRegistry,
) -> Callable[[Path | None], Awaitable[Client]]:
    """A client whose requests do not come from loopback, made in two ways.

    ``tcp-peer``: the server listens on a non-loopback address of this machine and the client connects
    to it, so the TCP peer really is that address. ``rewritten-peer``: a middleware in front of the app
    sets the peer address to 192.0.2.7, as a proxy would; this is also what ``tcp-peer`` falls back to
    on a machine without a non-loopback address (a network-less container).
    """
    address = non_loopback_address() if request.param == "tcp-peer" else None

    async def make(token_file: Path | None) -> Client:
        app = make_app(source, metrics_registry=registry, api_token_file=token_file)
        if address is not None:
            return await served(app, address)

        async def from_elsewhere(request: Request, handler: Handler) -> Response:
            return await handler(dataclasses.replace(request, remote="192.0.2.7"))

        app.middlewares.insert(0, from_elsewhere)
        return await served(app, "127.0.0.1")

    return make


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.7", False),
        ("192.0.2.2", False),
        ("::ffff:10.0.0.7", False),
        ("fe80::1%eth0", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(remote: str | None, expected: bool) -> None:
    """Only 127.0.0.0/8 and ::1 (also IPv4-mapped) count as loopback; names and garbage do not."""
    assert server.is_loopback(remote) is expected


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    """The token is read from 'Bearer <token>' (scheme case-insensitive); anything else gives None."""
    assert server.bearer_token(header) == token


def test_read_token(tmp_path: Path) -> None:
    """The token file is stripped; a missing, blank or undecodable file yields no token at all."""
    path = tmp_path / "token"
    assert server.read_token(path) is None
    path.write_text("  abc\n")
    assert server.read_token(path) == "abc"
    path.write_text(" \n")
    assert server.read_token(path) is None
    path.write_bytes(b"\xff\xfe")
    assert server.read_token(path) is None


def test_tokens_match_is_exact() -> None:
    """Tokens match only when equal, non-ASCII ones included (compared as bytes, in constant time)."""
    assert server.tokens_match("abc", "abc")
    assert not server.tokens_match("abc", "abd")
    assert not server.tokens_match("ab", "abc")
    assert server.tokens_match("päss", "päss")
    assert not server.tokens_match("päss", "pass")


# ---------------------------------------------------------------- probes, status, metrics


async def test_healthz(client: Client, source: FakeSource) -> None:
    """/healthz answers 200 'ok' while the source's loops run and 503 once one of them has ended."""
    watch = Heartbeat("backupSessionWatch", bound=420.0)
    source.heartbeats = [watch]
    response = await call(client, "GET", "/healthz", 200)
    assert await response.text() == "ok"
    watch.stop("failed (Forbidden; see the agent's log)")
    response = await call(client, "GET", "/healthz", 503)
    assert await response.json() == {
        "error": "not alive: backupSessionWatch",
        "wedged": {"backupSessionWatch": "stopped: failed (Forbidden; see the agent's log)"},
    }


async def test_healthz_fails_while_a_heartbeat_is_stale(client: Client, source: FakeSource) -> None:
    """With a frozen clock: /healthz stays 200 within the bounds, answers 503 naming the stale loop (in
    a body the OpenAPI document describes) once its heartbeat is older than its bound, and 200 again
    once that loop goes round."""
    clock = FrozenClock()
    watch = Heartbeat("backupSessionWatch", bound=420.0, clock=clock)
    loop = Heartbeat("eventLoop", bound=30.0, clock=clock)
    source.heartbeats = [watch, loop]

    clock.now += 420.0  # exactly the bound: still alive
    loop.beat()
    await call(client, "GET", "/healthz", 200)

    clock.now += 11.0  # the event loop kept ticking, the watch did not
    loop.beat()
    response = await call(client, "GET", "/healthz", 503)
    body = await response.json()
    assert body == {
        "error": "not alive: backupSessionWatch",
        "wedged": {"backupSessionWatch": "no progress for 431s (bound 420s)"},
    }
    document = openapi_document()
    assert conforms(document, document["components"]["schemas"]["Wedged"], body) == []

    clock.now += 31.0  # now the event loop lags too: both are named
    response = await call(client, "GET", "/healthz", 503)
    assert set((await response.json())["wedged"]) == {"backupSessionWatch", "eventLoop"}

    watch.beat()
    loop.beat()
    response = await call(client, "GET", "/healthz", 200)
    assert await response.text() == "ok"


async def test_readyz(client: Client, source: FakeSource) -> None:
    """/readyz answers 200 when ready and 503 with the source's reason when not."""
    response = await call(client, "GET", "/readyz", 200)
    assert await response.text() == "ok"
    source.readiness = (False, "watch not established")
    response = await call(client, "GET", "/readyz", 503)
    assert await response.text() == "watch not established"


async def test_status_serves_the_source_document(client: Client, source: FakeSource) -> None:
    """/status serves the source's document as JSON, datetimes as RFC 3339."""
    response = await call(client, "GET", "/status", 200)
    assert response.content_type == "application/json"
    assert await response.json() == STATUS
    source.document = {**STATUS, "nextSchedule": datetime(2026, 11, 25, 12, 5, tzinfo=UTC)}
    response = await call(client, "GET", "/status", 200)
    assert (await response.json())["nextSchedule"] == "2026-11-25T12:05:00Z"


async def test_a_failing_handler_answers_500_without_echoing(
    client: Client, source: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the source gives a fixed 500 message: no exception text, no request headers."""
    source.explode = RuntimeError("password=hunter2")
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Custom": "tell-no-one"}
    with caplog.at_level(logging.ERROR, logger="stashlet.agent.http_api.server"):
        response = await call(client, "GET", "/status", 500, headers=headers)
    body = await response.text()
    assert (await response.json()) == {"error": "internal error; see the agent's log"}
    for secret in ("hunter2", TOKEN, "tell-no-one"):
        assert secret not in body
        assert secret not in response.headers.get("X-Custom", "")
    assert any(record.exc_info for record in caplog.records)  # the details are in the log


async def test_metrics_serves_the_registry(client: Client) -> None:
    """/metrics serves the registry in Prometheus text, with the content type prometheus_client gives it."""
    response = await call(client, "GET", "/metrics", 200)
    assert response.headers["Content-Type"] == choose_encoder("")[1]
    assert response.content_type == "text/plain"
    families = {family.name: family for family in text_string_to_metric_families(await response.text())}
    sample = families["stash_backup_session_success"].samples[0]
    assert sample.labels == {"invoker_name": "sample-backup"}
    assert sample.value == 1


async def test_metrics_speaks_openmetrics_when_asked(client: Client) -> None:
    """/metrics answers in OpenMetrics when the Accept header asks for it, as Prometheus does."""
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = await call(client, "GET", "/metrics", 200, headers={"Accept": accept})
    assert response.headers["Content-Type"] == choose_encoder(accept)[1]
    assert response.content_type == "application/openmetrics-text"
    assert (await response.text()).rstrip().endswith("# EOF")


# ---------------------------------------------------------------- instant backups


async def test_backup_from_loopback_needs_no_token(client: Client, source: FakeSource) -> None:
    """POST /backup from loopback creates a BackupSession (202 with its name) without any token."""
    response = await call(client, "POST", "/backup", 202)
    assert await response.json() == {"backupSession": "sample-backup-1764072001"}
    assert len(source.requests) == 1
    assert "127.0.0.1" in source.requests[0]
    assert "loopback" in source.requests[0]


async def test_backup_refused_by_the_agent_is_409(client: Client, source: FakeSource) -> None:
    """When the source refuses (e.g. paused without the opt-in), POST /backup answers 409 with the reason."""
    source.refuse = "Backup Configuration demo/sample-backup is paused"
    response = await call(client, "POST", "/backup", 409)
    assert await response.json() == {"error": "Backup Configuration demo/sample-backup is paused"}


async def test_backup_failure_is_500_without_details(client: Client, source: FakeSource) -> None:
    """An unexpected error creating the session answers 500 with a fixed message."""
    source.explode = RuntimeError("apiserver said: token=hunter2")
    response = await call(client, "POST", "/backup", 500)
    assert "hunter2" not in await response.text()


async def test_backup_from_elsewhere_needs_the_bearer_token(
    remote_client: Callable[[Path | None], Awaitable[Client]],
    source: FakeSource,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Off loopback: no token or a wrong one is 401 with a Bearer challenge; the right one is 202.

    Refusals never reach the source, and the presented token never appears in the logs.
    """
    client = await remote_client(token_file)
    with caplog.at_level(logging.DEBUG, logger="stashlet.agent.http_api.server"):
        response = await call(client, "POST", "/backup", 401)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="stashlet-agent"'
        assert await response.json() == {"error": "a bearer token is required"}
        response = await call(client, "POST", "/backup", 401, headers={"Authorization": "Bearer not-it"})
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert "not-it" not in await response.text()
        await call(client, "POST", "/backup", 401, headers={"Authorization": f"Basic {TOKEN}"})
        await call(client, "POST", "/backup", 401, headers={"Authorization": f"Bearer {TOKEN}x"})
        assert source.requests == []

        response = await call(client, "POST", "/backup", 202, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (await response.json())["backupSession"] == "sample-backup-1764072001"
    assert len(source.requests) == 1
    assert "bearer token" in source.requests[0]
    assert "127.0.0.1" not in source.requests[0]
    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "not-it" not in logged
    assert TOKEN not in logged


async def test_token_rotation_applies_without_restart(
    remote_client: Callable[[Path | None], Awaitable[Client]], source: FakeSource, token_file: Path
) -> None:
    """The token file is read on each request: once it changes, the old token fails and the new one works."""
    client = await remote_client(token_file)
    await call(client, "POST", "/backup", 202, headers={"Authorization": f"Bearer {TOKEN}"})
    await asyncio.to_thread(token_file.write_text, "rotated-token-2\n")
    await call(client, "POST", "/backup", 401, headers={"Authorization": f"Bearer {TOKEN}"})
    await call(client, "POST", "/backup", 202, headers={"Authorization": "Bearer rotated-token-2"})
    assert len(source.requests) == 2


async def test_backup_from_elsewhere_without_a_token_file_is_403(
    remote_client: Callable[[Path | None], Awaitable[Client]], source: FakeSource
) -> None:
    """Off loopback with no token file configured, POST /backup is 403 whatever the caller presents."""
    client = await remote_client(None)
    await call(client, "POST", "/backup", 403)
    await call(client, "POST", "/backup", 403, headers={"Authorization": f"Bearer {TOKEN}"})
    assert source.requests == []


async def test_an_empty_or_missing_token_file_admits_nobody_from_elsewhere(
    remote_client: Callable[[Path | None], Awaitable[Client]], source: FakeSource, token_file: Path
) -> None:
    """A blank token file never matches (not even an empty bearer); a deleted one neither: both 403."""
    client = await remote_client(token_file)
    await asyncio.to_thread(token_file.write_text, "\n")
    await call(client, "POST", "/backup", 403, headers={"Authorization": "Bearer "})
    await asyncio.to_thread(token_file.unlink)
    await call(client, "POST", "/backup", 403, headers={"Authorization": f"Bearer {TOKEN}"})
    assert source.requests == []


# ---------------------------------------------------------------- the OpenAPI document


async def test_openapi_is_served_and_matches_the_router(client: Client) -> None:
    """/openapi.json is OpenAPI 3.1 and lists exactly the app's routes (method and path), no more, no less."""
    response = await call(client, "GET", "/openapi.json", 200)
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    assert document == openapi_document()

    app = make_app(FakeSource(), metrics_registry=CollectorRegistry(), api_token_file=None)
    routes = {(method.lower(), path) for method, path in app.routes}
    documented_routes = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == documented_routes


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_operations_are_complete() -> None:
    """Every operation has an id, a summary and described responses; every $ref resolves."""
    document = openapi_document()
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["summary"], (method, path)
            assert operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                assert response["description"], (method, path, status)
    assert len(ids) == len(set(ids))
    for ref in _refs(document):
        _resolve(document, ref)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "null": type(None),
    "array": list,
}


def conforms(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """The ways ``value`` breaks ``schema`` (the JSON Schema subset the document uses)."""
    if "$ref" in schema:
        return conforms(document, _resolve(document, schema["$ref"]), value, where)
    if "anyOf" in schema:
        failures = [conforms(document, option, value, where) for option in schema["anyOf"]]
        return [] if any(not failure for failure in failures) else [f"{where}: matches no anyOf option"]
    problems: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[name])
            and not (name in ("integer", "number") and isinstance(value, bool))
            for name in names
        )
        if not ok:
            return [f"{where}: {value!r} is not {names}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [
            f"{where}: {name} is missing" for name in schema.get("required", []) if name not in value
        ]
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                problems += conforms(document, properties[name], item, f"{where}.{name}")
            elif extra is False:
                problems.append(f"{where}.{name}: not allowed")
            elif isinstance(extra, dict):
                problems += conforms(document, extra, item, f"{where}.{name}")
    return problems


def test_status_schema_describes_the_status() -> None:
    """The AgentStatus schema admits a full status document and rejects wrongly typed fields."""
    document = openapi_document()
    schema = document["components"]["schemas"]["AgentStatus"]
    assert conforms(document, schema, STATUS) == []
    assert conforms(document, schema, {**STATUS, "paused": "no"}) != []
    assert conforms(document, schema, {**STATUS, "running": {"progress": None}}) != []
    assert conforms(document, schema, {"mode": "sidecar"}) != []


def test_status_schema_matches_the_live_state() -> None:
    """What the sidecar's LiveState serves (idle, running, after a result) fits the schema, key by key."""
    document = openapi_document()
    schema = document["components"]["schemas"]["AgentStatus"]
    state = LiveState(
        invoker={"kind": "BackupConfiguration", "name": "sample-backup", "namespace": "demo"},
        target={"kind": "Deployment", "name": "stash-demo"},
        host="host-0",
        mode="sidecar",
    )
    idle = state.snapshot()
    assert set(idle) <= set(schema["properties"]), set(idle) - set(schema["properties"])
    assert conforms(document, schema, idle) == []
    state.start("sample-backup-1", "backup")
    assert conforms(document, schema, state.snapshot()) == []
    state.finish("sample-backup-1", "Succeeded", duration="4.5s")
    assert conforms(document, schema, state.snapshot()) == []


# ---------------------------------------------------------------- a real TCP port


async def test_run_server_on_a_real_port(source: FakeSource, registry: CollectorRegistry) -> None:
    """run_server listens on a TCP port (0: any free one) and cleanup closes it again."""
    app = make_app(source, metrics_registry=registry, api_token_file=None)
    runner = await run_server(app, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
                assert await response.text() == "ok"
            async with session.post(f"{base}/backup") as response:
                assert response.status == 202
                assert (await response.json())["backupSession"] == "sample-backup-1764072001"
            async with session.get(f"{base}/status") as response:
                assert (await response.json())["host"] == "host-0"
    finally:
        await runner.cleanup()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{base}/healthz")
