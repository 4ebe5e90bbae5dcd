"""The push of one metrics registry to the Pushgateway, retried while the failure is transient.

``push`` sends one registry with POST (``pushadd_to_gateway``): within the group ``job`` + ``hostname``
it replaces only the families it carries, so a host's session and repository metrics do not delete the
per-host metrics it pushed before; and the ``hostname`` grouping key keeps one host's push from
replacing another host's metrics under the same job (which a PUT, or a POST without the grouping key,
would do).
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
from collections.abc import Callable
from functools import partial
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import basic_auth_handler, default_handler, pushadd_to_gateway

from stashlet.agent.errors import RefuseInput, ReportFailure, RetryLater
from stashlet.agent.metrics.catalog import GROUPING_KEY_HOST


class MetricsPushFailed(ReportFailure):
    """Metrics could not be pushed, after the retries a transient failure earns; the caller records it
    (condition, event). The message names the gateway (without credentials) and the job."""

    def __init__(self, gateway: str, job: str, cause: str) -> None:
        """Name the gateway, the job and the cause in the message."""
        super().__init__(f"pushing metrics of job {job!r} to the Pushgateway at {gateway} failed: {cause}")
        self.gateway = gateway
        self.job = job
        self.cause = cause


def job_name(invoker_kind: str, namespace: str, invoker_name: str) -> str:
    """The Pushgateway job: ``<invoker kind lower-cased>-<namespace>-<invoker name>``."""
    return f"{invoker_kind.lower()}-{namespace}-{invoker_name}"


def host_grouping_key(host: str) -> dict[str, str]:
    """The grouping key that keeps each host's metrics apart: ``{"hostname": host}``."""
    return {GROUPING_KEY_HOST: host}


def redact_url(url: str) -> str:
    """``url`` without a user name or password, fit for messages and logs."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.username is None and parts.password is None:
        return urlunsplit(parts)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


Handler = Callable[..., Callable[[], None]]


def _handler_for(url: str) -> Handler:
    """The push handler: credentials in the URL go as basic auth (urllib would not send them)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.username is None:
        return default_handler
    return partial(
        basic_auth_handler, username=unquote(parts.username), password=unquote(parts.password or "")
    )


class _GatewayBusy(RetryLater):
    """The gateway answered 5xx; its response is already read and closed."""


class _GatewayRejected(RefuseInput):
    """The gateway answered 4xx (bad metrics, credentials or path); its response is read and closed."""


def _push_once(
    gateway: str,
    job: str,
    registry: CollectorRegistry,
    grouping_key: dict[str, str],
    timeout: float,
    handler: Handler,
) -> None:
    """One POST; an error status becomes ``_GatewayBusy`` or ``_GatewayRejected`` (no response left open)."""
    try:
        pushadd_to_gateway(
            gateway, job, registry, grouping_key=grouping_key, timeout=timeout, handler=handler
        )
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                body = exc.read(2048).decode("utf-8", "replace").strip()
            except OSError:
                body = ""
        answer = f"HTTP {exc.code} {exc.reason}" + (f": {body}" if body else "")
        raise (_GatewayBusy if exc.code >= 500 else _GatewayRejected)(answer) from None


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: no connection, a timeout, a dropped connection, or a 5xx from the gateway."""
    return isinstance(
        exc, RetryLater | urllib.error.URLError | ConnectionError | TimeoutError | http.client.HTTPException
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        cause = exc.reason
        return f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
    if isinstance(exc, _GatewayBusy | _GatewayRejected):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def push(
    url: str,
    job: str,
    grouping_key: dict[str, str],
    registry: CollectorRegistry,
    *,
    attempts: int = 3,
    timeout: float = 5,  # noqa: ASYNC109 - per HTTP request, handed to the blocking client
    backoff: float = 0.2,
) -> None:
    """Push ``registry`` to the Pushgateway at ``url`` under ``job`` and ``grouping_key`` (POST).

    Runs the blocking client in a worker thread. Connection errors, timeouts and 5xx answers are
    tried up to ``attempts`` times in all, waiting ``backoff`` seconds, then twice that, ...; a 4xx
    (e.g. the gateway's consistency check) is not retried. Raises MetricsPushFailed when the push did
    not land. A user name and password in ``url`` go as basic auth and never appear in messages.
    """
    # tenacity is imported on the first push, not with the module: a sidecar idles for hours between
    # sessions and would carry it (~0.9 MiB) in every backed-up pod for nothing.
    from tenacity import (  # noqa: PLC0415
        AsyncRetrying,
        RetryError,
        retry_if_exception,
        stop_after_attempt,
        wait_exponential,
    )

    clean = redact_url(url)
    send = partial(
        _push_once,
        clean,
        job,
        registry,
        grouping_key=grouping_key,
        timeout=timeout,
        handler=_handler_for(url),
    )
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff, max=5 * backoff),
        retry=retry_if_exception(_is_transient),
        reraise=False,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await asyncio.to_thread(send)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        tries = exc.last_attempt.attempt_number
        reason = _reason(last) if last is not None else "unknown error"
        raise MetricsPushFailed(clean, job, f"{reason} (after {tries} attempts)") from last
    except (_GatewayBusy, _GatewayRejected, OSError, ValueError, http.client.HTTPException) as exc:
        raise MetricsPushFailed(clean, job, _reason(exc)) from exc
