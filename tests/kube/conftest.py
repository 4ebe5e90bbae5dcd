"""An async kubernetes client on the shared control plane, as the admin; a control plane of a test's own."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from stashlet.kube.client import new_api_client
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane

CRDS = Path(__file__).resolve().parents[2] / "charts" / "stashlet" / "crds"


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An ApiClient with the admin kubeconfig."""
    api_client = await new_api_client(str(control_plane.kubeconfig))
    try:
        yield api_client
    finally:
        await api_client.close()


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane (etcd, kube-apiserver, no node) with the CRDs, for one test that disturbs it."""
    cluster = LocalCluster(tmp_path / "plane", node=False, controller_manager=False)
    cluster.up(crds=CRDS)
    try:
        yield cluster.plane
    finally:
        cluster.down()
