"""What the tests on the real node's CSI add-on share: the add-on itself (a fixture) and a claim of it."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.csi import CsiAddon


@pytest.fixture(scope="module")
def csi_addon(local_cluster: LocalCluster) -> CsiAddon:
    """The CSI add-on, installed once per cluster (the real node must exist)."""
    if local_cluster.node is None:
        pytest.fail(f"the CSI add-on needs the session's real node: {local_cluster.node_unavailable}")
    return local_cluster.ensure_csi()


def claim(name: str, storage_class: str, *, snapshot: str | None = None) -> dict[str, Any]:
    """A small ReadWriteOnce claim of ``storage_class`` (from VolumeSnapshot ``snapshot`` when given)."""
    spec: dict[str, Any] = {
        "storageClassName": storage_class,
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "16Mi"}},
    }
    if snapshot is not None:
        spec["dataSource"] = {
            "apiGroup": "snapshot.storage.k8s.io",
            "kind": "VolumeSnapshot",
            "name": snapshot,
        }
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}
