"""The small interface the shared Kubernetes layer talks through, and the agent's implementation of it.

:class:`KubeApi` is all :mod:`stashlet.kube` needs of a client: send one request and get the server's
JSON back, or open a watch and read its lines. Two things implement it: :class:`RestClient`, the agent's
own client (HTTP/1.1 with h11 on asyncio streams, :mod:`stashlet.kube.http`: a few keep-alive
connections, an SSL context holding only the cluster's CA, a bearer token read again every minute or a
client certificate), and the operator's kubernetes-asyncio ApiClient
(:mod:`stashlet.operator.core.apiclient`), so both sides share one layer without the agent importing the
generated client.

Every failure arrives as the :mod:`stashlet.kube.errors` taxonomy, built from the server's metav1.Status;
a 429 is sent again after the server's ``Retry-After`` (:data:`THROTTLE_RETRIES` times), as client-go does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from stashlet.kube.config import ClusterConfig
from stashlet.kube.errors import from_response
from stashlet.kube.http import Answer, Origin, Pool, open_stream
from stashlet.kube.websocket import WebSocket

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

REQUEST_TIMEOUT = 300.0
"""A request's overall limit unless the caller gives one (a watch: until its head arrives)."""


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


class RestClient:
    """:class:`KubeApi` over a few keep-alive HTTP/1.1 connections (h11 on asyncio streams) to one API
    server, as one identity; TLS trusts the cluster's CA only."""

    def __init__(self, config: ClusterConfig, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        """Talk to ``config.server`` as ``config`` says; :meth:`close` when done (or ``async with``)."""
        self.config = config
        self.origin = Origin.parse(config.server)
        self.ssl: ssl.SSLContext | None = config.ssl_context() if self.origin.scheme == "https" else None
        self.request_timeout = request_timeout
        self.pool = Pool(self.origin, self.ssl)

    def target(self, path: str, query: Query | list[tuple[str, str]] | None = None) -> str:
        """The request target of an API path with its query."""
        pairs = query if isinstance(query, list) else encode_query(query)
        return self.origin.prefix + path + ("?" + urlencode(pairs) if pairs else "")

    def headers(self, *, accept: str | None = None, content_type: str | None = None) -> dict[str, str]:
        """Host, authorization and content negotiation for one request."""
        headers = {"Host": self.origin.authority, "Accept": accept or JSON, "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _answered(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        accept: str | None = None,
        content_type: str | None = None,
    ) -> Answer:
        """The first answer that is not a 429 (after :data:`THROTTLE_RETRIES` more, the 429 too), raised
        as a KubeError unless it is a success. The caller reads and releases a successful answer."""
        for attempt in range(THROTTLE_RETRIES + 1):
            answer = await self.pool.request(
                method, target, self.headers(accept=accept, content_type=content_type).items(), body
            )
            if answer.status == 429 and attempt < THROTTLE_RETRIES:
                await _drain(answer)
                await asyncio.sleep(retry_after({"Retry-After": answer.headers.get("retry-after", "")}))
                continue
            if 200 <= answer.status < 300:
                return answer
            raw = await _drain(answer)
            raise from_response(raw, answer.status, answer.reason)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

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
        async with asyncio.timeout(within or self.request_timeout):
            answer = await self._answered(
                method,
                self.target(path, query),
                body=data,
                accept=accept,
                content_type=(content_type or JSON) if data is not None else None,
            )
            raw = await _drain(answer)
        if not raw.strip():
            return {}
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    async def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """GET ``path`` with no overall timeout and yield the non-empty lines of its body as they arrive
        (a line the connection cut short is dropped: the server ends every watch event with a newline)."""
        async with asyncio.timeout(self.request_timeout):
            answer = await self._answered("GET", self.target(path, query), accept=accept)
        buffer = b""
        try:
            async for chunk in answer.chunks():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line
        finally:
            answer.release()

    async def websocket(
        self, path: str, query: list[tuple[str, str]], protocols: tuple[str, ...]
    ) -> WebSocket:
        """Open a WebSocket to ``path`` (``pods/exec``) offering ``protocols``, on a connection of its own;
        :class:`~stashlet.kube.websocket.UpgradeRefused` (with the HTTP status) when the server refuses."""
        reader, writer = await open_stream(self.origin.host, self.origin.port, self.ssl)
        headers = [(name, value) for name, value in self.headers().items() if name != "Host"]
        try:
            return await WebSocket.connect(
                reader, writer, self.origin.authority, self.target(path, query), protocols, headers
            )
        except BaseException:
            writer.close()
            raise

    async def close(self) -> None:
        """Close the idle connections."""
        await self.pool.close()

    async def __aenter__(self) -> RestClient:
        """Use as ``async with``."""
        return self

    async def __aexit__(self, *_: object) -> None:
        """Close on exit."""
        await self.close()


async def _drain(answer: Answer) -> bytes:
    """The whole body of ``answer``, the answer released."""
    try:
        return await answer.read()
    finally:
        answer.release()
