"""List functions that ask the API server for metadata only (``PartialObjectMetadata``).

The operator watches Secrets, workloads and namespaces only to learn *that* something a configuration
depends on changed; the reconciler then reads the object itself. Asking for metadata only keeps Secret
values out of the operator's memory altogether and keeps the watch cache small (no pod templates of every
ReplicaSet in the cluster). The functions fit :func:`stashlet.kube.watch.watch`.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from stashlet.kube.watch import ListFn

_QUERY_NAMES = {
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "limit": "limit",
    "_continue": "continue",
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
}


def collection_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    """The URL path of a collection: ``/api/v1/secrets``, ``/apis/apps/v1/namespaces/demo/deployments``."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def metadata_list_fn(api: client.ApiClient, path: str) -> ListFn:
    """A list (and watch) function over ``path`` that returns ``PartialObjectMetadata`` objects."""

    async def list_fn(**kwargs: Any) -> Any:
        watching = bool(kwargs.pop("watch", False))
        preload = kwargs.pop("_preload_content", True)
        query: list[tuple[str, Any]] = [(_QUERY_NAMES[k], v) for k, v in kwargs.items() if v is not None]
        if watching:
            query.append(("watch", "true"))
        kind = "PartialObjectMetadata" if watching else "PartialObjectMetadataList"
        accept = f"application/json;as={kind};g=meta.k8s.io;v=v1,application/json"
        return await api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
            _preload_content=preload,
            _return_http_data_only=True,
            response_types_map={200: "object"},
        )

    return list_fn
