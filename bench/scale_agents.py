"""Many sidecars' API work in one process, for ``bench.scale``: each simulated agent runs the sidecar's own
BackupSession watch, with a client of its own.

    .venv/bin/python -m bench.scale_agents < spec.json

A real sidecar process costs about 44 MiB; 200 of them do not fit beside a control plane on a 2-core
machine, and what the API server sees of a sidecar at rest is exactly its watch of its sessions (the
Lease of a Deployment's replicas is taken only while a session runs; the rest of an idle agent reads
files, not the API). So each agent here is the agent's real code
(:func:`stashlet.agent.backup.daemon.own_sessions` or, for the mode ``namespace``, the namespace-wide
collection the sidecar watched before; :func:`stashlet.kube.watch.watch`) on the agent's own HTTP client
(:class:`stashlet.kube.rest.RestClient`, one connection pool per agent, as one per pod), presenting its
configuration's ServiceAccount token.

The first line of stdin is the spec (JSON: ``mode``, ``agents``: ``id``, ``namespace``, ``invoker``,
``kubeconfig``). The process prints ``{"ready": N}`` once every watch has listed;
then on each line ``count`` the requests its agents have sent so far (``{"requests": N}``: every list
and watch, counted as the client sends them); on the line ``stop`` (or stdin's end)
``{"events": {id: count}, "requests": N}``: the watch events each agent received (ADDED, MODIFIED,
DELETED; not the SYNCED marker), and it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from stashlet.agent.backup.daemon import own_sessions
from stashlet.api import names
from stashlet.api.backupsession import BackupSession
from stashlet.kube.client import new_api_client
from stashlet.kube.custom import StashClient
from stashlet.kube.rest import KubeApi, Query
from stashlet.kube.watch import SYNCED, Collection, watch

MODES = ("namespace", "selected")
"""``namespace``: every session of the namespace, selected by the agent (the sidecar before issue 19);
``selected``: only its configuration's, selected by the API server."""


class CountingApi:
    """An agent's client that counts the requests it sends (a watch once, when it opens)."""

    def __init__(self, api: KubeApi, counter: list[int]) -> None:
        self.api = api
        self.counter = counter

    async def send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.counter[0] += 1
        return await self.api.send(method, path, **kwargs)

    def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.counter[0] += 1
        return self.api.stream(path, query, accept=accept)

    async def close(self) -> None:
        await self.api.close()


@dataclass
class SimulatedAgent:
    """One sidecar's API loops."""

    id: str
    namespace: str
    invoker: str
    kubeconfig: str
    events: int = 0

    def sessions(self, api: KubeApi, mode: str) -> Collection:
        stash = StashClient(api)
        if mode == "namespace":
            return stash.list_fn(BackupSession, self.namespace)
        return own_sessions(stash, self.namespace, names.KIND_BACKUP_CONFIGURATION, self.invoker)

    async def run(self, mode: str, synced: asyncio.Event, counter: list[int]) -> None:
        api = CountingApi(await new_api_client(self.kubeconfig), counter)
        try:
            async for event in watch(self.sessions(api, mode)):
                if event.type == SYNCED:
                    synced.set()
                else:
                    self.events += 1
        finally:
            await api.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the spec's agents until ``stop``: the events each received, and the requests of them all."""
    mode = spec["mode"]
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: not one of {MODES}")
    agents = [SimulatedAgent(**a) for a in spec["agents"]]
    synced = [asyncio.Event() for _ in agents]
    requests = [0]
    tasks = [asyncio.create_task(a.run(mode, s, requests)) for a, s in zip(agents, synced, strict=True)]
    waiting: asyncio.Future[Any] = asyncio.gather(*(s.wait() for s in synced))
    either: set[asyncio.Future[Any]] = {waiting, *tasks}
    done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:  # an agent ended before every watch listed: say why
        failed = next(t for t in tasks if t.done())
        waiting.cancel()
        failed.result()
        raise RuntimeError("an agent's watch ended before listing")
    print(json.dumps({"ready": len(agents)}), flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip() == "count":
        print(json.dumps({"requests": requests[0]}), flush=True)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {"events": {a.id: a.events for a in agents}, "requests": requests[0]}


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(run(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
