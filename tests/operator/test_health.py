"""The operator's health endpoint: alive at once, ready only once every watch has listed."""

import asyncio
from typing import Any

from stashlet.operator.health import health_app


async def test_readyz_waits_for_every_watch_and_healthz_answers_at_once(aiohttp_client: Any) -> None:
    """/healthz is 200 from the start; /readyz is 503 naming what it waits for until both events are
    set, then 200."""
    main, auto = asyncio.Event(), asyncio.Event()
    client = await aiohttp_client(
        health_app({"backup and restore watches": main, "auto-backup watches": auto})
    )
    assert (await client.get("/healthz")).status == 200
    waiting = await client.get("/readyz")
    assert waiting.status == 503
    assert (await waiting.json())["waitingFor"] == ["auto-backup watches", "backup and restore watches"]
    main.set()
    assert (await (await client.get("/readyz")).json())["waitingFor"] == ["auto-backup watches"]
    auto.set()
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready"}
