"""The operator's health endpoint: ``/healthz`` while it runs, ``/readyz`` once every watch has listed.

Served on ``--health-port`` for the Deployment's liveness and readiness probes (the image has no shell
for an exec probe). Readiness waits for both controllers' watches to list their collections, so a
rollout of the operator only proceeds once the new one has the whole picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web


def health_app(ready: Mapping[str, asyncio.Event]) -> web.Application:
    """The two routes; ``ready`` names each event that must be set for ``/readyz`` to answer 200."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        waiting = sorted(name for name, event in ready.items() if not event.is_set())
        if waiting:
            return web.json_response({"status": "waiting", "waitingFor": waiting}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_health(port: int, ready: Mapping[str, asyncio.Event], host: str = "0.0.0.0") -> None:
    """Serve :func:`health_app` on ``host:port`` until cancelled."""
    runner = web.AppRunner(health_app(ready), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
