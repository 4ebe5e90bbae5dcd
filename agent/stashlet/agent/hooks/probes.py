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
import ssl
from urllib.parse import urlencode

from stashlet.agent.hooks.outcome import HookFailed, Scrubber
from stashlet.api.hooks import HTTPAction
from stashlet.kube.errors import TransportError
from stashlet.kube.http import Connection, Origin

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
    data = _payload(action, body)
    headers = _headers(action, body, address(host, port))
    if not action.path.startswith("/") or any(c.isspace() for c in action.path):
        raise ProbeFailed(f"{action.method} {base}: not a valid URL (check host and path)")
    try:
        connection = await Connection.open(Origin(action.scheme.lower(), host, port), _unverified())
    except OSError as exc:
        raise ProbeFailed(
            f"{action.method} {base}: cannot connect: {scrub(exc.strerror or str(exc))}"
        ) from None
    try:
        answer = await connection.request(action.method, action.path, headers, data)
        text = await answer.read(MAX_RESPONSE)
        status = answer.status
    except ValueError:
        raise ProbeFailed(f"{action.method} {base}: not a valid URL (check host and path)") from None
    except (TransportError, OSError) as exc:
        raise ProbeFailed(f"{action.method} {base}: {scrub(str(exc) or type(exc).__name__)}") from None
    finally:
        await connection.aclose()
    if not 200 <= status < 400:
        raise ProbeFailed(f"{action.method} {base}: HTTP status {status}: {scrub.quote(text)}".rstrip(": "))
    return f"{action.method} {base}: HTTP status {status}"


def _unverified() -> ssl.SSLContext:
    """TLS without verifying the server, as Stash's prober does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _headers(action: HTTPAction, body: str, authority: str) -> list[tuple[str, str]]:
    headers = [(h.name, h.value) for h in action.headers]
    names = {name.lower() for name, _ in headers}
    if "host" not in names:
        headers.insert(0, ("Host", authority))
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    if action.method == "POST" and action.form:
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    elif action.method == "POST" and body and "content-type" not in names:
        headers.append(("Content-Type", _content_type(body)))
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
