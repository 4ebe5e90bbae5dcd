"""The one way stashlet talks to Kubernetes: an ApiClient from in-cluster config or a kubeconfig.

In a pod (the service-account token and CA are mounted and KUBERNETES_SERVICE_HOST is set) the
pod's own identity is used; elsewhere the kubeconfig in ``$KUBECONFIG`` or ``~/.kube/config``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stashlet.kube.errors import from_status_object, translate

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

T = TypeVar("T")


def in_cluster() -> bool:
    """True when this process runs with a pod's service-account identity."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()


async def new_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A configured ApiClient; ``kubeconfig`` wins over in-cluster config when given."""
    configuration = client.Configuration()
    if kubeconfig is None and in_cluster():
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


@asynccontextmanager
async def api_client(kubeconfig: str | None = None) -> AsyncIterator[client.ApiClient]:
    """An ApiClient closed on exit."""
    api = await new_api_client(kubeconfig)
    try:
        yield api
    finally:
        await api.close()


THROTTLE_RETRIES = 10
"""As client-go does: an answer 429 (throttled, or the API server's storage still starting up) means the
request was not carried out; it is sent again after the server's ``Retry-After``, up to ten times."""
MAX_RETRY_AFTER = 10.0


def retry_after(headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before sending a throttled request again (``Retry-After``; 1 when absent)."""
    value = (headers or {}).get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


async def call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await one API call, turning ApiException into the stashlet.kube.errors taxonomy (a 429 is sent
    again first: :data:`THROTTLE_RETRIES`)."""
    for attempt in range(THROTTLE_RETRIES + 1):
        try:
            return await fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status != 429 or attempt == THROTTLE_RETRIES:
                raise translate(exc) from exc
            await asyncio.sleep(retry_after(exc.headers))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def call_json(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Like :func:`call`, but return the server's JSON as a plain dict (no generated model classes)."""
    for attempt in range(THROTTLE_RETRIES + 1):
        try:
            response = await fn(*args, **kwargs, _preload_content=False)
            try:
                raw = await response.read()
            finally:
                response.release()
        except ApiException as exc:
            if exc.status != 429 or attempt == THROTTLE_RETRIES:
                raise translate(exc) from exc
            await asyncio.sleep(retry_after(exc.headers))
            continue
        if response.status == 429 and attempt < THROTTLE_RETRIES:
            await asyncio.sleep(retry_after(response.headers))
            continue
        if not 200 <= response.status < 300:
            # Without content preloading the generated client does not check the status; we do.
            raise from_status_object(status_body(raw, response.status, response.reason))
        body: dict[str, Any] = json.loads(raw)
        return body
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def status_body(raw: bytes, status: int, reason: str | None) -> dict[str, Any]:
    """The metav1.Status of a failed response (or one made from its text)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        return parsed
    return {"code": status, "message": raw.decode(errors="replace").strip() or (reason or "")}


def own_namespace() -> str | None:
    """The namespace of this pod, from the service-account mount or $NAMESPACE."""
    path = SERVICE_ACCOUNT_DIR / "namespace"
    if path.is_file():
        return path.read_text().strip()
    return os.environ.get("NAMESPACE")
