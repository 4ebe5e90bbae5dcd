"""The process kubelet's side of the API: what a kubelet reads and writes, as the cluster admin.

Plain JSON dicts in and out (``_preload_content=False``: no generated model classes), an error status
raised as :class:`ApiError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from kubernetes_asyncio import client, config

from stashlet.localcluster.podspec import NodeResources, Obj, Objects, referenced_objects

MERGE_PATCH = "application/merge-patch+json"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


def kubeconfig_endpoint(path: Path) -> tuple[str, int, bytes]:
    """The API server's host, port and CA certificate from a kubeconfig's current context."""
    data = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in data["contexts"] if c["name"] == data["current-context"])
    cluster = next(c["cluster"] for c in data["clusters"] if c["name"] == context["cluster"])
    url = urlparse(cluster["server"])
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        ca = (path.parent / cluster["certificate-authority"]).read_bytes()
    else:
        ca = b""
    return url.hostname or "127.0.0.1", url.port or 443, ca


class ApiError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, body: bytes, what: str) -> None:
        """Keep the status; the message carries the server's."""
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = body.decode(errors="replace")[:300]
        super().__init__(f"{what}: HTTP {status}: {message}")
        self.status = status


class KubeApi:
    """CoreV1 calls of a kubelet, with an admin kubeconfig."""

    def __init__(self, api_client: client.ApiClient) -> None:
        """Use an ApiClient (see :meth:`connect`)."""
        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)

    @classmethod
    async def connect(cls, kubeconfig: Path) -> KubeApi:
        """An ApiClient for ``kubeconfig``."""
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.api_client.close()

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Obj:
        """One call; the body as a dict; ApiError on an error status."""
        response = await fn(*args, **kwargs, _preload_content=False)
        try:
            body = await response.read()
            status = response.status
        finally:
            response.release()
        if not 200 <= status < 300:
            raise ApiError(status, body, f"{fn.__name__}{args[:2]}")
        result: Obj = json.loads(body) if body else {}
        return result

    async def get_or_none(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Obj | None:
        """Like :meth:`call`, None when not found."""
        try:
            return await self.call(fn, *args)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def kubernetes_service(self) -> tuple[str, int]:
        """The ``kubernetes`` Service's cluster IP and HTTPS port, which pods dial."""
        service = await self.call(self.core.read_namespaced_service, "kubernetes", "default")
        https = next(p for p in service["spec"]["ports"] if p.get("name") == "https")
        return str(service["spec"]["clusterIP"]), int(https["port"])

    async def register_node(self, name: str, address: str, resources: NodeResources) -> bool:
        """Create (or adopt) a Ready, untainted Node; True when it was created here."""
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        try:
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
            await self.call(self.core.create_node, body)
            created = True
        except ApiError as exc:
            if exc.status != 409:
                raise
            created = False
        # The NodeTaint admission marks a new node not-ready; no node controller runs here to lift it.
        await self.call(self.core.patch_node, name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        capacity = {"cpu": resources.cpu, "memory": resources.memory, "pods": "110"}
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "the stashlet process kubelet is ready",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        info = {
            "operatingSystem": "linux",
            "architecture": arch,
            "kubeletVersion": "stashlet-process-kubelet",
            "containerRuntimeVersion": "process://",
            "kernelVersion": platform.release(),
            "osImage": "host",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kubeProxyVersion": "",
        }
        status = {
            "conditions": [ready],
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": info,
        }
        await self.call(self.core.patch_node_status, name, {"status": status}, _content_type=MERGE_PATCH)
        return created

    async def bind(self, namespace: str, pod_name: str, node: str) -> None:
        """Bind a pod to a node, as the scheduler would."""
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod_name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.call(self.core.create_namespaced_pod_binding, pod_name, namespace, binding)

    async def token(self, pod: Obj, audience: str, seconds: int) -> str:
        """A token of the pod's service account bound to the pod (TokenRequest API)."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        response = await self.call(
            self.core.create_namespaced_service_account_token, account, meta["namespace"], request
        )
        return str(response["status"]["token"])

    async def objects(self, pod: Obj) -> Objects:
        """The Secrets and ConfigMaps the pod refers to (None for missing ones)."""
        namespace = pod["metadata"]["namespace"]
        secret_names, configmap_names = referenced_objects(pod)
        secrets = {
            n: await self.get_or_none(self.core.read_namespaced_secret, n, namespace) for n in secret_names
        }
        configmaps: dict[str, Obj | None] = {}
        for name in configmap_names:
            obj = await self.get_or_none(self.core.read_namespaced_config_map, name, namespace)
            deadline = time.monotonic() + 10
            # The controller manager publishes the CA into a new namespace moments after it appears.
            while obj is None and name == ROOT_CA_CONFIGMAP and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                obj = await self.get_or_none(self.core.read_namespaced_config_map, name, namespace)
            configmaps[name] = obj
        return Objects(secrets=secrets, configmaps=configmaps)

    async def patch_pod_status(self, pod: Obj, status: Obj) -> None:
        """Write a pod's status (a merge patch: the lists given replace the old ones)."""
        meta = pod["metadata"]
        await self.call(
            self.core.patch_namespaced_pod_status,
            meta["name"],
            meta["namespace"],
            {"status": status},
            _content_type=MERGE_PATCH,
        )

    async def pods_on(self, node: str) -> list[Obj]:
        """Every pod bound to ``node``."""
        listing = await self.call(
            self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}"
        )
        items: list[Obj] = listing["items"]
        return items

    async def delete_pod_now(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Finish a pod's deletion (grace 0), only while it is still the pod ``uid`` when given."""
        # With a body, the API server reads the options from it only (query parameters are ignored).
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.call(self.core.delete_namespaced_pod, name, namespace, body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    async def wait_for_pods(
        self,
        namespace: str,
        label_selector: str,
        count: int,
        *,
        timeout: float,  # noqa: ASYNC109 - the error says which pods are missing
        include_terminal: bool,
    ) -> list[Obj]:
        """Pods matching ``label_selector``, once there are ``count`` (see ProcessKubelet)."""
        deadline = time.monotonic() + timeout
        while True:
            listing = await self.call(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
            pods = [
                pod
                for pod in listing["items"]
                if not pod["metadata"].get("deletionTimestamp")
                and (include_terminal or pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"))
            ]
            if len(pods) >= count:
                return sorted(pods, key=lambda pod: str(pod["metadata"]["name"]))
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(pods)} of {count} pods matching {label_selector!r} in namespace {namespace} "
                    f"after {timeout}s"
                )
            await asyncio.sleep(0.2)
