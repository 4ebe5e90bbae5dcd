"""URL paths of the Kubernetes API: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...``."""

from __future__ import annotations


def collection_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    """The URL path of a collection: ``/api/v1/secrets``, ``/apis/apps/v1/namespaces/demo/deployments``."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def object_path(
    group: str, version: str, plural: str, namespace: str | None, name: str, subresource: str = ""
) -> str:
    """The URL path of one object (or its subresource: ``status``, ``exec``)."""
    path = f"{collection_path(group, version, plural, namespace)}/{name}"
    return f"{path}/{subresource}" if subresource else path


def core(plural: str, namespace: str | None, name: str = "", subresource: str = "") -> str:
    """A core/v1 path: ``core("pods", "demo", "web-0")`` is ``/api/v1/namespaces/demo/pods/web-0``."""
    if not name:
        return collection_path("", "v1", plural, namespace)
    return object_path("", "v1", plural, namespace, name, subresource)
