"""A 429 answer is sent again after its Retry-After, as client-go does.

The real API server answers 429 while its storage is still starting ("storage is (re)initializing") or
when API Priority and Fairness rejects a request, neither of which a test can bring about on demand; an
HTTP server here stands in for it, answering 429 a given number of times before the real answer. The
clients are the real ones: the agent's RestClient, and the operator's kubernetes-asyncio ApiClient both
through the shared layer's ``send`` and through ``call``/``call_json`` over a generated function.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from pytest_aiohttp import AiohttpServer

from stashlet.kube import errors
from stashlet.kube.config import ClusterConfig
from stashlet.kube.rest import THROTTLE_RETRIES, RestClient, retry_after
from stashlet.operator.core.apiclient import ApiClient, call, call_json


@dataclass
class Throttling:
    """Answers 429 ``refusals`` times (Retry-After 0), then the namespace."""

    refusals: int
    seen: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen <= self.refusals:
            return web.json_response(
                {
                    "kind": "Status",
                    "code": 429,
                    "reason": "TooManyRequests",
                    "message": "storage is (re)initializing",
                },
                status=429,
                headers={"Retry-After": "0"},
            )
        return web.json_response({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "demo"}})


Read = Callable[[], Awaitable[str]]
"""Reads namespace ``demo`` and returns its name."""

WAYS = ["rest", "operator-send", "call", "call_json"]


async def reader(server: AiohttpServer, throttling: Throttling, way: str) -> AsyncIterator[Read]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/demo", throttling.handle)
    started = await server(app)
    host = str(started.make_url("")).rstrip("/")
    if way == "rest":
        async with RestClient(ClusterConfig(server=host, source="test")) as rest:

            async def by_rest() -> str:
                return str((await rest.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"])

            yield by_rest
        return
    configuration = client.Configuration()
    configuration.host = host
    api = ApiClient(configuration)
    core = client.CoreV1Api(api)

    async def by_send() -> str:
        return str((await api.send("GET", "/api/v1/namespaces/demo"))["metadata"]["name"])

    async def by_call() -> str:
        found: Any = await call(core.read_namespace, "demo")
        return str(found.metadata.name)

    async def by_call_json() -> str:
        return str((await call_json(core.read_namespace, "demo"))["metadata"]["name"])

    ways = {"operator-send": by_send, "call": by_call, "call_json": by_call_json}
    try:
        yield ways[way]
    finally:
        await api.close()


@pytest.mark.parametrize("way", WAYS)
async def test_throttled_requests_are_sent_again_until_answered(
    aiohttp_server: AiohttpServer, way: str
) -> None:
    throttling = Throttling(refusals=3)
    async for read in reader(aiohttp_server, throttling, way):
        assert await read() == "demo"
    assert throttling.seen == 4


@pytest.mark.parametrize("way", WAYS)
async def test_a_request_throttled_past_the_retries_is_too_many_requests(
    aiohttp_server: AiohttpServer, way: str
) -> None:
    throttling = Throttling(refusals=THROTTLE_RETRIES + 5)
    async for read in reader(aiohttp_server, throttling, way):
        with pytest.raises(errors.TooManyRequests, match="storage is"):
            await read()
    assert throttling.seen == THROTTLE_RETRIES + 1


def test_retry_after_is_the_servers_word_within_bounds() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "600"}) == 10.0
    assert retry_after({}) == 1.0
    assert retry_after({"Retry-After": "soon"}) == 1.0
