"""The operator's one way to the API server: kubernetes-asyncio's ApiClient, also a :class:`KubeApi`.

Everything kubernetes-asyncio lives here: the ApiClient factory (kubeconfig given, a token directory,
in-cluster config, or ``$KUBECONFIG``; see :mod:`stashlet.kube.config`), :func:`call` and :func:`call_json`
over the generated API functions (errors as the :mod:`stashlet.kube.errors` taxonomy, a 429 sent again
after its ``Retry-After``), and :class:`ApiClient`, which also answers the shared layer's
:class:`~stashlet.kube.rest.KubeApi` (``send``/``stream``), so ``StashClient(api)``,
``EventRecorder(api, ...)`` and :func:`stashlet.kube.watch.watch` use the operator's one connection pool
and one config; aiohttp's own failures reach the shared layer as
:class:`~stashlet.kube.errors.TransportError`. The agent never imports this module (its own client is
:class:`stashlet.kube.rest.RestClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from yarl import URL

from stashlet.kube.config import in_cluster, own_token_dir, wait_for_token
from stashlet.kube.errors import KubeError, TransportError, from_response
from stashlet.kube.rest import JSON, THROTTLE_RETRIES, Query, encode_query, retry_after

T = TypeVar("T")

WATCH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)


async def answered(send: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> aiohttp.ClientResponse:
    """The first answer of ``send`` that is not a 429 (after :data:`THROTTLE_RETRIES` more, the 429 too),
    raised as a KubeError unless it is a success. The caller releases a successful response."""
    for attempt in range(THROTTLE_RETRIES + 1):
        response = await send()
        if response.status == 429 and attempt < THROTTLE_RETRIES:
            response.release()
            await asyncio.sleep(retry_after(response.headers))
            continue
        if 200 <= response.status < 300:
            return response
        try:
            raw = await response.read()
        finally:
            response.release()
        raise from_response(raw, response.status, response.reason)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def read_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON body of a successful response (empty: ``{}``), the response released."""
    try:
        raw = await response.read()
    finally:
        response.release()
    if not raw.strip():
        return {}
    body: dict[str, Any] = json.loads(raw)
    return body


async def lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed response as they arrive (a line the connection cut short is
    dropped: the server ends every watch event with a newline); the response released at the end."""
    buffer = b""
    try:
        while chunk := await response.content.readany():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                if line.strip():
                    yield line
    finally:
        response.release()


def translate(exc: ApiException) -> KubeError:
    """Turn kubernetes-asyncio's ApiException into our class for its status, keeping the server's words."""
    body: Any = exc.body
    raw = body if isinstance(body, bytes) else str(body or "").encode()
    if not raw.strip():
        raw = str(exc.reason or "").encode()
    return from_response(raw, int(exc.status or 0), str(exc.reason or ""))


class ApiClient(client.ApiClient):
    """kubernetes-asyncio's ApiClient that is also a :class:`~stashlet.kube.rest.KubeApi`."""

    def _raw(
        self,
        method: str,
        path: str,
        query: Query | None,
        headers: dict[str, str],
        body: Any = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Callable[[], Awaitable[aiohttp.ClientResponse]]:
        """A sender of one request whose answer is the bare aiohttp response (no model, no status check)."""

        async def attempt() -> aiohttp.ClientResponse:
            try:
                response: aiohttp.ClientResponse = await self.call_api(
                    path,
                    method,
                    query_params=encode_query(query),
                    header_params=dict(headers),
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=timeout,
                )
            except ApiException as exc:
                raise translate(exc) from exc
            return response

        return attempt

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str | None = None,
        within: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`stashlet.kube.rest.KubeApi.send` through this client's pool and identity."""
        headers = {"Accept": accept or JSON, "Content-Type": content_type or JSON}
        limit = aiohttp.ClientTimeout(total=within) if within else None
        try:
            return await read_json(await answered(self._raw(method, path, query, headers, body, limit)))
        except aiohttp.ClientError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc

    async def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """:meth:`stashlet.kube.rest.KubeApi.stream` through this client's pool and identity."""
        sender = self._raw("GET", path, query, {"Accept": accept or JSON}, timeout=WATCH_TIMEOUT)
        try:
            async for line in lines(await answered(sender)):
                yield line
        except aiohttp.ClientError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc


async def token_configuration(configuration: client.Configuration, directory: Path) -> None:
    """Set ``configuration`` to reach the API server of this pod (``$KUBERNETES_SERVICE_HOST``) as the
    account whose token is in ``directory``; the token is read again every minute."""
    await wait_for_token(directory)
    loader = InClusterConfigLoader(
        token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt")
    )
    loader.load_and_set(configuration)


async def new_api_client(kubeconfig: str | None = None) -> ApiClient:
    """A configured ApiClient; ``kubeconfig`` wins over a token directory given, which wins over in-cluster
    config, which wins over ``$KUBECONFIG`` / ``~/.kube/config``."""
    configuration = client.Configuration()
    token_dir = own_token_dir()
    if kubeconfig is None and token_dir is not None:
        await token_configuration(configuration, token_dir)
    elif kubeconfig is None and in_cluster():
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    if configuration.proxy is None and configuration.host:
        configuration.proxy = environment_proxy(configuration.host)
    api = ApiClient(configuration)
    # kubernetes-asyncio's session trusts the environment: aiohttp would look the proxy up and read
    # ~/.netrc in a worker thread before every request (two thread hops a call, a quarter of the
    # operator's CPU at 1,000 configurations). The proxy is looked up once, above; the credentials are the
    # configuration's, never a netrc's. aiohttp has no public setter for it.
    api.rest_client.pool_manager._trust_env = False
    return api


def environment_proxy(server: str) -> str | None:
    """The proxy ``$HTTPS_PROXY`` / ``$HTTP_PROXY`` name for ``server``, unless ``$NO_PROXY`` exempts it."""
    with contextlib.suppress(LookupError):
        proxy, _ = get_env_proxy_for_url(URL(server))
        return str(proxy)
    return None


@asynccontextmanager
async def api_client(kubeconfig: str | None = None) -> AsyncIterator[ApiClient]:
    """An ApiClient closed on exit."""
    api = await new_api_client(kubeconfig)
    try:
        yield api
    finally:
        await api.close()


async def call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await one generated API call, turning ApiException into the stashlet.kube.errors taxonomy (a 429
    is sent again first: :data:`~stashlet.kube.rest.THROTTLE_RETRIES`)."""
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

    async def attempt() -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await fn(*args, **kwargs, _preload_content=False)
        except ApiException as exc:
            raise translate(exc) from exc
        return response

    # Without content preloading the generated client checks no status: :func:`answered` does.
    return await read_json(await answered(attempt))
