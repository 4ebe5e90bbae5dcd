"""An async kubernetes client on the shared control plane, as the admin."""

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from stashlet.kube.client import new_api_client
from stashlet.localcluster.controlplane import ControlPlane


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An ApiClient with the admin kubeconfig."""
    api_client = await new_api_client(str(control_plane.kubeconfig))
    try:
        yield api_client
    finally:
        await api_client.close()
