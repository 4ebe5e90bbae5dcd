"""The one way stashlet talks to Kubernetes: an ApiClient from in-cluster config or a kubeconfig.

In a pod (the service-account token and CA are mounted and KUBERNETES_SERVICE_HOST is set) the
pod's own identity is used; elsewhere the kubeconfig in ``$KUBECONFIG`` or ``~/.kube/config``. A process
given a token of its own (``$STASHLET_KUBE_TOKEN_DIR``, a mounted ServiceAccount token Secret: ``token``
and ``ca.crt``; see :mod:`stashlet.api.agent_identity`) talks as that account instead, in or out of a pod
whose own account it then never uses; the token is read again every minute, so a new one is taken up
without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

from stashlet.api import agent_identity
from stashlet.kube.errors import from_status_object, translate

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_WAIT_SECONDS = 180.0
"""How long a process given a token directory waits for the token to be there: the token controller fills
the Secret moments after the operator makes it, but a pod that mounted it still empty sees the token only
at the kubelet's next sync of the volume (about a minute)."""

log = logging.getLogger(__name__)


class TokenUnavailable(RuntimeError):
    """The token directory this process was given holds no token (and CA) within the wait."""


T = TypeVar("T")


def in_cluster() -> bool:
    """True when this process runs with a pod's service-account identity."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()


def own_token_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The token directory this process was given (``$STASHLET_KUBE_TOKEN_DIR``), or None."""
    value = (os.environ if environ is None else environ).get(agent_identity.ENV_KUBE_TOKEN_DIR)
    return Path(value) if value else None


def token_ready(directory: Path) -> bool:
    """True when ``directory`` holds a non-empty ``token`` and ``ca.crt``."""
    try:
        return all((directory / name).stat().st_size > 0 for name in ("token", "ca.crt"))
    except OSError:
        return False


async def wait_for_token(directory: Path, *, within: float = TOKEN_WAIT_SECONDS, every: float = 2.0) -> None:
    """Return once ``directory`` holds a token and CA; :class:`TokenUnavailable` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    told = False
    while not await asyncio.to_thread(token_ready, directory):
        if loop.time() >= deadline:
            raise TokenUnavailable(
                f"no ServiceAccount token in {directory} after {within:.0f} s (its Secret is filled by the "
                "token controller of kube-controller-manager)"
            )
        if not told:
            log.info("waiting for the service account token", extra={"directory": str(directory)})
            told = True
        await asyncio.sleep(every)


async def token_configuration(configuration: client.Configuration, directory: Path) -> None:
    """Set ``configuration`` to reach the API server of this pod (``$KUBERNETES_SERVICE_HOST``) as the
    account whose token is in ``directory``; the token is read again every minute."""
    await wait_for_token(directory)
    loader = InClusterConfigLoader(
        token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt")
    )
    loader.load_and_set(configuration)


async def new_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A configured ApiClient; ``kubeconfig`` wins over a token directory given (:func:`own_token_dir`),
    which wins over in-cluster config."""
    configuration = client.Configuration()
    token_dir = own_token_dir()
    if kubeconfig is None and token_dir is not None:
        await token_configuration(configuration, token_dir)
    elif kubeconfig is None and in_cluster():
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
