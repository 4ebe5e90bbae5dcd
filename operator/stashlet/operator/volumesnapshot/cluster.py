"""The objects the VolumeSnapshotter driver reads and writes, as plain dicts: async.

VolumeSnapshots and VolumeSnapshotClasses (``snapshot.storage.k8s.io/v1``, through the custom-objects
API), PersistentVolumeClaims, StorageClasses and the target workloads. Errors arrive as the
:mod:`stashlet.kube.errors` taxonomy.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from stashlet.operator.core.apiclient import ApiClient, call, call_json
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.volumesnapshot import snapshots


class SnapshotCluster:
    """Read and write what the driver touches."""

    def __init__(self, api: ApiClient) -> None:
        """Use ``api`` (the operator's own identity) for every call."""
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.storage = client.StorageV1Api(api)

    async def snapshot(self, namespace: str, name: str) -> dict[str, Any]:
        """One VolumeSnapshot; NotFound when absent."""
        get = self.custom.get_namespaced_custom_object
        return await call_json(get, snapshots.GROUP, snapshots.VERSION, namespace, snapshots.PLURAL, name)

    async def snapshots(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The VolumeSnapshots matching ``selector``."""
        found = await call_json(
            self.custom.list_namespaced_custom_object,
            snapshots.GROUP,
            snapshots.VERSION,
            namespace,
            snapshots.PLURAL,
            label_selector=selector,
        )
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    async def create_snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a VolumeSnapshot; Conflict when it exists."""
        create = self.custom.create_namespaced_custom_object
        namespace = obj["metadata"]["namespace"]
        return await call_json(create, snapshots.GROUP, snapshots.VERSION, namespace, snapshots.PLURAL, obj)

    async def delete_snapshot(self, namespace: str, name: str) -> None:
        """Delete a VolumeSnapshot (NotFound when already gone)."""
        delete = self.custom.delete_namespaced_custom_object
        await call(delete, snapshots.GROUP, snapshots.VERSION, namespace, snapshots.PLURAL, name)

    async def snapshot_class(self, name: str) -> dict[str, Any]:
        """One VolumeSnapshotClass; NotFound when absent."""
        get = self.custom.get_cluster_custom_object
        return await call_json(get, snapshots.GROUP, snapshots.VERSION, snapshots.CLASS_PLURAL, name)

    async def snapshot_classes(self) -> list[dict[str, Any]]:
        """Every VolumeSnapshotClass."""
        listed = self.custom.list_cluster_custom_object
        found = await call_json(listed, snapshots.GROUP, snapshots.VERSION, snapshots.CLASS_PLURAL)
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    async def claim(self, namespace: str, name: str) -> dict[str, Any]:
        """One PersistentVolumeClaim; NotFound when absent."""
        return await call_json(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    async def create_claim(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a PersistentVolumeClaim; Conflict when it exists."""
        create = self.core.create_namespaced_persistent_volume_claim
        return await call_json(create, obj["metadata"]["namespace"], obj)

    async def storage_class(self, name: str) -> dict[str, Any]:
        """One StorageClass; NotFound when absent."""
        return await call_json(self.storage.read_storage_class, name)

    async def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A Deployment, StatefulSet, DaemonSet or ReplicaSet; NotFound when absent."""
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in WORKLOAD_KINDS[kind].kind).lstrip("_")
        return await call_json(getattr(self.apps, f"read_namespaced_{snake}"), name, namespace)
