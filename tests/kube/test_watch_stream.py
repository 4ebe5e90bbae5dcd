"""The watch's own edge over real HTTP, with both clients of the shared layer (the agent's RestClient and
the operator's kubernetes-asyncio ApiClient): a connection that goes quiet is dropped after the inactivity
timeout and the watch resumes from the last version it saw; an event split across chunks arrives whole; a
metadata-only collection asks for ``PartialObjectMetadata`` when listing and when watching.

A real API server sends a bookmark about every minute and cannot be made to go silent on demand; an HTTP
server here stands in for it (as for throttling), speaking the same list and watch protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from pytest_aiohttp import AiohttpServer

from stashlet.kube.config import ClusterConfig
from stashlet.kube.rest import KubeApi, RestClient
from stashlet.kube.watch import ADDED, SYNCED, Collection, WatchEvent, WatchSettings, watch
from stashlet.operator.core.apiclient import ApiClient

PATH = "/apis/example.com/v1/namespaces/demo/things"


def thing(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "demo", "resourceVersion": version}}


@dataclass
class QuietThenTalking:
    """Lists one object; the first watch says nothing at all, the second sends one event in two chunks."""

    watches: list[dict[str, str]] = field(default_factory=list)
    lists: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = {"accept": request.headers.get("Accept", ""), **request.query}
        if request.query.get("watch") != "true":
            self.lists.append(seen)
            return web.json_response({"items": [thing("a", "1")], "metadata": {"resourceVersion": "1"}})
        self.watches.append(seen)
        response = web.StreamResponse()
        await response.prepare(request)
        if len(self.watches) > 1:
            line = json.dumps({"type": "ADDED", "object": thing("b", "2")}).encode() + b"\n"
            await response.write(line[:10])
            await asyncio.sleep(0.05)
            await response.write(line[10:])
        await asyncio.sleep(30)
        return response


async def client_for(kind: str, host: str) -> AsyncIterator[KubeApi]:
    if kind == "agent":
        async with RestClient(ClusterConfig(server=host, source="test")) as rest:
            yield rest
        return
    configuration = client.Configuration()
    configuration.host = host
    api = ApiClient(configuration)
    try:
        yield api
    finally:
        await api.close()


@pytest.mark.parametrize("kind", ["agent", "operator"])
async def test_a_quiet_watch_is_resumed_and_split_events_arrive_whole(
    aiohttp_server: AiohttpServer, kind: str
) -> None:
    server = QuietThenTalking()
    app = web.Application()
    app.router.add_get(PATH, server.handle)
    started = await aiohttp_server(app)
    settings = WatchSettings(inactivity_timeout=0.5, backoff_initial=0.01)
    async for api in client_for(kind, str(started.make_url("")).rstrip("/")):
        events: list[WatchEvent] = []
        stream = watch(Collection(api, PATH, metadata_only=True), settings=settings)
        try:
            async with asyncio.timeout(10):
                async for event in stream:
                    events.append(event)
                    if len(events) == 3:
                        break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.key) for e in events] == [(ADDED, "demo/a"), (SYNCED, "None"), (ADDED, "demo/b")]
    assert len(server.lists) == 1
    assert [w["resourceVersion"] for w in server.watches] == ["1", "1"]
    assert all(w["allowWatchBookmarks"] == "true" for w in server.watches)
    assert server.lists[0]["accept"].startswith("application/json;as=PartialObjectMetadataList;")
    assert server.watches[0]["accept"].startswith("application/json;as=PartialObjectMetadata;")
