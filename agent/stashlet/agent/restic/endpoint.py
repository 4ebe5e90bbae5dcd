"""Where a repository's backend is on the network, and whether it accepts a connection there.

restic says nothing of a GCS endpoint that does not answer: Google's storage client retries a refused
connection inside one call until its context ends, so ``restic init`` or ``restic cat config`` stay
silent for as long as they run. Against a refused port the REST, S3 and Azure backends do print restic's
``returned error, retrying`` lines (Azure's SDK retries inside first, so its lines come seconds apart);
all measured with restic 0.18.1. :func:`probe_for` gives a
:class:`~stashlet.agent.restic.backend_watch.BackendWatch` a TCP probe of the host and port restic
connects to, so a silent restic does not hide an endpoint that is down.

The endpoint, from the repository's URL and the environment restic runs with (the agent's inherited
names plus the repository's own):

- ``s3:<endpoint>/<bucket>``: the endpoint (``https`` unless written ``http://``);
- ``gs:``: ``STORAGE_EMULATOR_HOST`` (``http`` unless a scheme is given), else
  ``storage.googleapis.com:443``;
- ``azure:``: ``<AZURE_ACCOUNT_NAME>.blob.<AZURE_ENDPOINT_SUFFIX or core.windows.net>``, always ``https``;
- ``rest:<url>``: the URL's host and port;
- ``b2:``: ``api.backblazeb2.com:443``, where B2 authorizes every session (the hosts it then hands out
  are not known before);
- ``swift:``: ``OS_STORAGE_URL`` when a token is given with it, else the auth URL (``ST_AUTH``,
  ``OS_AUTH_URL``): the storage URL comes from the auth service's catalogue;
- ``local`` (and anything else): no endpoint, no probe.

A proxy: restic's HTTP transport uses Go's ``http.ProxyFromEnvironment``, so when ``HTTPS_PROXY`` /
``HTTP_PROXY`` applies to the endpoint (not excluded by ``NO_PROXY``, not a loopback host) restic's
connections go to the proxy, and the proxy is what is probed: a proxy that refuses means restic cannot
reach the backend either, while the endpoint itself may well be unreachable from the pod by design. A
proxy that accepts says nothing of the endpoint behind it; then restic's own retry lines (the proxy's
502s) are the watch's only evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from stashlet.agent.restic.backend import ResticRepository

PROBE_TIMEOUT = 3.0
"""Seconds a TCP connect may take before the endpoint counts as not answering."""
GCS_HOST = "storage.googleapis.com"
AZURE_SUFFIX = "core.windows.net"
B2_HOST = "api.backblazeb2.com"
S3_HOST = "s3.amazonaws.com"
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

PROBE_PREFIX = "probe: "
"""What starts a probe's error (the watch words its message after it)."""
Probe = Callable[[], Awaitable[str | None]]
"""One look at the endpoint: None when it accepts a connection, else why not (Go's wording)."""


@dataclass(frozen=True)
class Endpoint:
    """A host and port restic connects to; ``via_proxy`` when that is the proxy in front of the
    backend's own endpoint."""

    host: str
    port: int
    via_proxy: bool = False

    @property
    def address(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def backend_endpoint(url: str, env: Mapping[str, str]) -> tuple[str, str, int] | None:
    """The backend's own ``(scheme, host, port)`` for restic location ``url`` run with ``env``; None for
    a local repository or a location without a network endpoint known beforehand."""
    scheme, _, rest = url.partition(":")
    if scheme == "s3":
        return _split(rest if "://" in rest else f"https://{rest or S3_HOST}")
    if scheme == "gs":
        emulator = env.get("STORAGE_EMULATOR_HOST", "")
        if emulator:
            return _split(emulator if "://" in emulator else f"http://{emulator}")
        return ("https", GCS_HOST, 443)
    if scheme == "azure":
        account = env.get("AZURE_ACCOUNT_NAME", "")
        suffix = env.get("AZURE_ENDPOINT_SUFFIX", "") or AZURE_SUFFIX
        return _split(f"https://{account}.blob.{suffix}") if account else None
    if scheme == "rest":
        return _split(rest)
    if scheme == "b2":
        return ("https", B2_HOST, 443)
    if scheme == "swift":
        storage = env.get("OS_STORAGE_URL", "") if env.get("OS_AUTH_TOKEN") else ""
        auth = storage or env.get("ST_AUTH", "") or env.get("OS_AUTH_URL", "")
        return _split(auth) if auth else None
    return None


def endpoint_for(url: str, env: Mapping[str, str]) -> Endpoint | None:
    """What restic connects to for ``url``: the backend's endpoint, or the proxy in front of it."""
    found = backend_endpoint(url, env)
    if found is None:
        return None
    scheme, host, port = found
    proxy = proxy_for(scheme, host, port, env)
    if proxy is not None:
        return Endpoint(proxy[1], proxy[2], via_proxy=True)
    return Endpoint(host, port)


def proxy_for(scheme: str, host: str, port: int, env: Mapping[str, str]) -> tuple[str, str, int] | None:
    """The proxy Go's ``http.ProxyFromEnvironment`` picks for ``scheme://host:port``, or None.

    Upper-case names win over lower-case ones; loopback hosts and ``NO_PROXY`` matches (``*``, an IP,
    a CIDR, a domain and its subdomains, ``.domain`` for subdomains only, each optionally with a port)
    are never proxied; a proxy without a scheme is ``http``."""
    name = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
    proxy = env.get(name) or env.get(name.lower()) or ""
    if not proxy or _loopback(host) or _no_proxy(host, port, env):
        return None
    return _split(proxy if "://" in proxy else f"http://{proxy}")


def probe_for(repository: ResticRepository, base_env: Mapping[str, str]) -> Probe | None:
    """A probe of what restic connects to for ``repository`` (run with ``base_env``, the settings'
    inherited environment), or None when it has no network endpoint."""
    endpoint = endpoint_for(repository.url, {**base_env, **repository.env})
    if endpoint is None:
        return None

    async def probe() -> str | None:
        return await connect_error(endpoint)

    return probe


async def connect_error(endpoint: Endpoint, within: float = PROBE_TIMEOUT) -> str | None:
    """None when ``endpoint`` accepts a TCP connection within ``within`` seconds; else why not, worded as Go
    words it (``dial tcp <addr>: connect: connection refused``), the proxy named when it is one."""
    target = f"proxy {endpoint.address}" if endpoint.via_proxy else endpoint.address
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), within)
    except TimeoutError:
        return f"{PROBE_PREFIX}dial tcp {target}: i/o timeout (no answer within {within:g}s)"
    except socket.gaierror:
        return f"{PROBE_PREFIX}dial tcp: lookup {endpoint.host}: no such host"
    except OSError as exc:
        return f"{PROBE_PREFIX}dial tcp {target}: connect: {_words(exc)}"
    writer.close()
    with contextlib.suppress(OSError):  # closed is closed: the connect is what was asked
        await writer.wait_closed()
    return None


def _words(exc: OSError) -> str:
    words = {
        errno.ECONNREFUSED: "connection refused",
        errno.EHOSTUNREACH: "no route to host",
        errno.ENETUNREACH: "network is unreachable",
        errno.ETIMEDOUT: "connection timed out",
    }
    return words.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()


def _split(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in _DEFAULT_PORTS:
        return None
    return (parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy(host: str, port: int, env: Mapping[str, str]) -> bool:
    """Whether ``NO_PROXY`` (or ``no_proxy``) exempts ``host:port``, by Go's httpproxy rules."""
    listed = env.get("NO_PROXY") or env.get("no_proxy") or ""
    for raw in (entry.strip().lower() for entry in listed.split(",")):
        if not raw:
            continue
        if raw == "*":
            return True
        entry, entry_port = raw, 0
        if not _is_ip_or_cidr(raw) and raw.rpartition(":")[2].isdigit():
            entry, _, port_text = raw.rpartition(":")
            entry_port = int(port_text)
        if entry_port and entry_port != port:
            continue
        if _is_ip_or_cidr(entry):
            if _in_network(host, entry):
                return True
            continue
        name = host.lower()
        if entry.startswith("*."):
            entry = entry[1:]
        if entry.startswith("."):
            if name.endswith(entry):
                return True
        elif name == entry or name.endswith("." + entry):
            return True
    return False


def _is_ip_or_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return False
