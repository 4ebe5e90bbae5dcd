"""A Kubernetes client on the shared control plane, as the admin (the agent's and the operator's, in turn);
a control plane of a test's own."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stashlet.kube.client import new_api_client
from stashlet.kube.rest import KubeApi
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.core import apiclient

CRDS = Path(__file__).resolve().parents[2] / "charts" / "stashlet" / "crds"


@pytest.fixture(params=["agent", "operator"])
async def api(control_plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[KubeApi]:
    """The shared layer's client with the admin kubeconfig (client certificates): the agent's own
    RestClient, then the operator's kubernetes-asyncio ApiClient; both must behave alike."""
    kubeconfig = str(control_plane.kubeconfig)
    client = await (
        new_api_client(kubeconfig) if request.param == "agent" else apiclient.new_api_client(kubeconfig)
    )
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane (etcd, kube-apiserver, no node) with the CRDs, for one test that disturbs it."""
    cluster = LocalCluster(tmp_path / "plane", node=False, controller_manager=False)
    cluster.up(crds=CRDS)
    try:
        yield cluster.plane
    finally:
        cluster.down()
