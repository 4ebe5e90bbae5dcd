"""pods/exec's WebSocket (wsproto) against a real WebSocket server speaking the channel protocol.

As the API server does: the subprotocol offered, the query and token sent, stdout and stderr gathered
from many messages (frames arriving with the upgrade's answer too), the exit code from the final Status,
a refused upgrade named by its status. test_exec_cluster.py runs the same against the real API server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from stashlet.agent.hooks.podexec import ExecFailed, exec_in_container
from stashlet.kube.config import ClusterConfig
from stashlet.kube.rest import RestClient

EXIT_3 = {
    "status": "Failure",
    "reason": "NonZeroExitCode",
    "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
}


async def serve(aiohttp_server: AiohttpServer, seen: list[dict[str, Any]]) -> str:
    async def exec_(request: web.Request) -> web.StreamResponse:
        if request.match_info["pod"] == "forbidden":
            return web.json_response({"kind": "Status", "code": 403}, status=403)
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        seen.append(
            {
                "protocol": ws.ws_protocol,
                "command": request.query.getall("command"),
                "container": request.query["container"],
                "authorization": request.headers.get("Authorization"),
            }
        )
        await ws.send_bytes(b"\x01hello ")
        await ws.send_bytes(b"\x01world\n")
        await ws.send_bytes(b"\x02" + b"e" * 20_000)
        await ws.send_bytes(b"\x03" + json.dumps(EXIT_3).encode())
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{namespace}/pods/{pod}/exec", exec_)
    started = await aiohttp_server(app)
    return str(started.make_url("")).rstrip("/")


async def test_exec_gathers_output_and_the_exit_code(aiohttp_server: AiohttpServer) -> None:
    seen: list[dict[str, Any]] = []
    host = await serve(aiohttp_server, seen)
    async with RestClient(ClusterConfig(server=host, source="test", token="tok-1")) as api:
        out = await exec_in_container(api, "demo", "app-0", "c", ["sh", "-c", "echo hello world; exit 3"])
    assert out.exit_code == 3
    assert out.stdout == b"hello world\n"
    assert out.stderr == b"e" * 10 * 1024
    assert seen == [
        {
            "protocol": "v4.channel.k8s.io",
            "command": ["sh", "-c", "echo hello world; exit 3"],
            "container": "c",
            "authorization": "Bearer tok-1",
        }
    ]


async def test_a_refused_exec_names_the_status(aiohttp_server: AiohttpServer) -> None:
    host = await serve(aiohttp_server, [])
    async with RestClient(ClusterConfig(server=host, source="test")) as api:
        with pytest.raises(ExecFailed, match=r"HTTP 403 \(forbidden: the agent's service account needs"):
            await exec_in_container(api, "demo", "forbidden", "c", ["true"])
