"""``httpGet``, ``httpPost`` and ``tcpSocket`` hooks, as kmodules' prober runs them.

HTTP: the request goes to ``<scheme>://<host>:<port><path>`` with the hook's headers (a ``Host`` header
sets the request's host; ``User-Agent`` is stashlet's unless given), no proxy from the environment,
redirects not followed, and, as Stash's prober does, no verification of an HTTPS server's certificate.
``httpPost`` sends its ``form`` URL-encoded when it has entries, else its ``body`` (``Content-Type``:
the hook's header when it sets one, else ``application/json`` for a JSON body, else ``text/plain``).
A status from 200 to 399 succeeds, anything else fails; at most 10 KiB of the response is read.

TCP: a connection is opened and closed; that it opens is the success.

Each function raises :class:`ProbeFailed` with a message that names the request by scheme, host and
port only (never the path, the headers or the body).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict

from stashlet.agent.hooks.outcome import HookFailed, Scrubber
from stashlet.api.hooks import HTTPAction

USER_AGENT = "stashlet-hook"
MAX_RESPONSE = 10 * 1024


class ProbeFailed(HookFailed):
    """The hook's request or connection failed; the message says how, without secrets."""


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def where(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``."""
    return f"{scheme.lower()}://{address(host, port)}"


async def http_request(action: HTTPAction, host: str, port: int, body: str, scrub: Scrubber) -> str:
    """Send the hook's request; its status and the start of the response on success."""
    base = where(action.scheme, host, port)
    headers = _headers(action, body)
    data = _payload(action, body)
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            session.request(
                action.method,
                base + action.path,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("User-Agent",),
            ) as response,
        ):
            text = await response.content.read(MAX_RESPONSE)
            status = response.status
    except aiohttp.InvalidURL:
        raise ProbeFailed(f"{action.method} {base}: not a valid URL (check host and path)") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ProbeFailed(f"{action.method} {base}: {scrub(_client_error(exc))}") from None
    if not 200 <= status < 400:
        raise ProbeFailed(f"{action.method} {base}: HTTP status {status}: {scrub.quote(text)}".rstrip(": "))
    return f"{action.method} {base}: HTTP status {status}"


def _headers(action: HTTPAction, body: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict((h.name, h.value) for h in action.headers)
    headers.setdefault("User-Agent", USER_AGENT)
    if action.method == "POST" and action.form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif action.method == "POST" and body and "Content-Type" not in headers:
        headers["Content-Type"] = _content_type(body)
    return headers


def _payload(action: HTTPAction, body: str) -> bytes | None:
    if action.method != "POST":
        return None
    if action.form:
        return urlencode([(e.key, v) for e in action.form for v in e.values]).encode()
    return body.encode() if body else None


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def _client_error(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return str(exc) or type(exc).__name__


async def tcp_connect(host: str, port: int) -> str:
    """Open and close a connection to ``host:port``."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise ProbeFailed(f"tcp {address(host, port)}: cannot connect: {exc.strerror or exc}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"tcp {address(host, port)}: connected"
