"""A 429 answer is sent again after its Retry-After, as client-go does.

The real API server answers 429 while its storage is still starting ("storage is (re)initializing") or
when API Priority and Fairness rejects a request, neither of which a test can bring about on demand; an
HTTP server here stands in for it, answering 429 a given number of times before the real answer. The
kubernetes-asyncio client and stashlet's edge are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from pytest_aiohttp import AiohttpServer

from stashlet.kube import errors
from stashlet.kube.client import THROTTLE_RETRIES, call, call_json, retry_after


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


async def core_for(server: AiohttpServer, throttling: Throttling) -> AsyncIterator[client.CoreV1Api]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/demo", throttling.handle)
    started = await server(app)
    configuration = client.Configuration()
    configuration.host = str(started.make_url(""))
    api = client.ApiClient(configuration)
    try:
        yield client.CoreV1Api(api)
    finally:
        await api.close()


@pytest.mark.parametrize("json_edge", [False, True])
async def test_throttled_requests_are_sent_again_until_answered(
    aiohttp_server: AiohttpServer, json_edge: bool
) -> None:
    throttling = Throttling(refusals=3)
    async for core in core_for(aiohttp_server, throttling):
        if json_edge:
            body = await call_json(core.read_namespace, "demo")
            assert body["metadata"]["name"] == "demo"
        else:
            found = await call(core.read_namespace, "demo")
            assert found.metadata.name == "demo"
    assert throttling.seen == 4


async def test_a_request_throttled_past_the_retries_is_too_many_requests(
    aiohttp_server: AiohttpServer,
) -> None:
    throttling = Throttling(refusals=THROTTLE_RETRIES + 5)
    async for core in core_for(aiohttp_server, throttling):
        with pytest.raises(errors.TooManyRequests, match="storage is"):
            await call_json(core.read_namespace, "demo")
    assert throttling.seen == THROTTLE_RETRIES + 1


def test_retry_after_is_the_servers_word_within_bounds() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "600"}) == 10.0
    assert retry_after({}) == 1.0
    assert retry_after({"Retry-After": "soon"}) == 1.0
