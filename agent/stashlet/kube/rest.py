"""The small interface the shared Kubernetes layer talks through, and its aiohttp implementation.

:class:`KubeApi` is all :mod:`stashlet.kube` needs of a client: send one request and get the server's
JSON back, or open a watch and read its lines. Two things implement it: :class:`RestClient`, the agent's
own client (one aiohttp session, an SSL context holding only the cluster's CA, a bearer token read again
every minute or a client certificate), and the operator's kubernetes-asyncio ApiClient
(:mod:`stashlet.operator.core.apiclient`), so both sides share one layer without the agent importing the
generated client.

Every failure arrives as the :mod:`stashlet.kube.errors` taxonomy, built from the server's metav1.Status;
a 429 is sent again after the server's ``Retry-After`` (:data:`THROTTLE_RETRIES` times), as client-go does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp

from stashlet.kube.config import ClusterConfig
from stashlet.kube.errors import from_response

Query = Mapping[str, str | int | bool | None]
"""Query parameters by their API names (``labelSelector``, ``resourceVersion``); None is left out."""

JSON = "application/json"
USER_AGENT = "stashlet-agent"
"""How the agent's requests name themselves in the API server's audit log."""
MERGE_PATCH = "application/merge-patch+json"

THROTTLE_RETRIES = 10
"""As client-go does: an answer 429 (throttled, or the API server's storage still starting up) means the
request was not carried out; it is sent again after the server's ``Retry-After``, up to ten times."""
MAX_RETRY_AFTER = 10.0

READ_BUFFER = 2**21
"""A watch event carries a whole object; etcd's default request limit is 1.5 MiB."""


class KubeApi(Protocol):
    """What the shared layer needs of a Kubernetes client."""

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
        """Send one request to ``path`` (``/api/v1/...``) within ``within`` seconds (None: the client's
        default); the answer's JSON, or a KubeError."""
        ...

    def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """GET ``path`` and yield the answer line by line as it arrives (a watch); KubeError if refused."""
        ...

    async def close(self) -> None:
        """Close the client's connections."""
        ...


def encode_query(query: Query | None) -> list[tuple[str, str]]:
    """The query as URL pairs: booleans as ``true``/``false``, None left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        if value is None:
            continue
        pairs.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return pairs


def retry_after(headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before sending a throttled request again (``Retry-After``; 1 when absent)."""
    value = (headers or {}).get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


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


class RestClient:
    """:class:`KubeApi` over one aiohttp session (keep-alive) to one API server, as one identity."""

    def __init__(self, config: ClusterConfig) -> None:
        """Talk to ``config.server`` as ``config`` says; :meth:`close` when done (or ``async with``)."""
        self.config = config
        self.ssl: ssl.SSLContext | bool = config.ssl_context() if config.server.startswith("https") else False
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one session (made on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl),
                read_bufsize=READ_BUFFER,
                json_serialize=json.dumps,
            )
        return self._session

    def url(self, path: str) -> str:
        """The full URL of an API path."""
        return self.config.server.rstrip("/") + path

    def headers(self, *, accept: str | None = None, content_type: str | None = None) -> dict[str, str]:
        """Authorization and content negotiation for one request."""
        headers = {"Accept": accept or JSON, "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

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
        """Send one request; the answer's JSON (a 429 sent again; any other failure a KubeError)."""
        data = None if body is None else json.dumps(body).encode()
        limit = aiohttp.ClientTimeout(total=within) if within else self.session.timeout

        def attempt() -> Awaitable[aiohttp.ClientResponse]:
            return self.session.request(
                method,
                self.url(path),
                params=encode_query(query),
                data=data,
                headers=self.headers(accept=accept, content_type=(content_type or JSON) if data else None),
                timeout=limit,
            )

        return await read_json(await answered(attempt))

    async def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """GET ``path`` with no overall timeout and yield its lines (a watch)."""

        def attempt() -> Awaitable[aiohttp.ClientResponse]:
            return self.session.get(
                self.url(path),
                params=encode_query(query),
                headers=self.headers(accept=accept),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )

        async for line in lines(await answered(attempt)):
            yield line

    async def websocket(
        self, path: str, query: list[tuple[str, str]], protocols: tuple[str, ...]
    ) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket to ``path`` (``pods/exec``) offering ``protocols``; aiohttp's
        WSServerHandshakeError (with the HTTP status) when the server refuses the upgrade."""
        return await self.session.ws_connect(
            self.url(path), params=query, protocols=protocols, headers=self.headers(), max_msg_size=0
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> RestClient:
        """Use as ``async with``."""
        return self

    async def __aexit__(self, *_: object) -> None:
        """Close on exit."""
        await self.close()
