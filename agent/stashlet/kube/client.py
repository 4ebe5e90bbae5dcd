"""The agent's way to the API server: a :class:`~stashlet.kube.rest.RestClient` as
:func:`stashlet.kube.config.load_config` finds it (kubeconfig given, token directory, in-cluster, or
``$KUBECONFIG``). The operator has its own kubernetes-asyncio ApiClient
(:mod:`stashlet.operator.core.apiclient`) implementing the same :class:`~stashlet.kube.rest.KubeApi`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stashlet.kube.config import load_config
from stashlet.kube.rest import RestClient


async def new_api_client(kubeconfig: str | None = None) -> RestClient:
    """A client as this process's identity; close it when done."""
    return RestClient(await load_config(kubeconfig))


@asynccontextmanager
async def api_client(kubeconfig: str | None = None) -> AsyncIterator[RestClient]:
    """A client closed on exit."""
    api = await new_api_client(kubeconfig)
    try:
        yield api
    finally:
        await api.close()
