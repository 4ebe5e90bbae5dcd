"""The failure metrics of what the operator ended itself, as the agent pushes them for a failure: async.

- a session nobody took up, whose Job failed or whose invoker is missing: ``<kind>_session_success 0``;
- a restore drill whose Job ended without the agent's verdict: ``restore_drill_success 0`` (stashlet's
  own gauge; the drill's other gauges stay as the last drill that reported left them).

The same job (``<invoker kind lower-cased>-<namespace>-<invoker name>``), the same grouping (none: the
session's metrics live under the job alone), the same label names (``invoker_kind``, ``invoker_name``,
``namespace``, ``driver``, ``repository``) and both of Stash's name prefixes (``stash_`` and
``stash_appscode_com_``). POST (push-add), so the last success time an earlier session left stays. The
operator may not import the agent: the few names it needs are written here, and a test checks them
against the agent's catalogue.

A push that fails is logged (naming the gateway without credentials) and never stops the operator.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
from dataclasses import dataclass
from functools import partial
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import basic_auth_handler, default_handler, pushadd_to_gateway

from stashlet.api.common import Snapshotter

log = logging.getLogger(__name__)

PREFIXES: Final = ("stash", "stash_appscode_com")
BACKUP_SESSION_SUCCESS: Final = (
    "backup_session_success",
    "Indicates whether the entire backup session was succeeded or not",
)
RESTORE_SESSION_SUCCESS: Final = (
    "restore_session_success",
    "Indicates whether the entire restore session was succeeded or not",
)
RESTORE_DRILL_SUCCESS: Final = (
    "restore_drill_success",
    "Indicates whether the last restore drill restored the latest snapshots completely (and its command "
    "passed)",
)
PUSH_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class SessionLabels:
    """Who the failure belongs to (the session's invoker; a drill's configuration), as the agent labels its
    metrics."""

    invoker_kind: str
    invoker_name: str
    namespace: str
    repository: str = ""
    driver: str = Snapshotter.RESTIC.value

    @property
    def job(self) -> str:
        """The Pushgateway job: ``<invoker kind lower-cased>-<namespace>-<invoker name>``."""
        return f"{self.invoker_kind.lower()}-{self.namespace}-{self.invoker_name}"

    def values(self) -> dict[str, str]:
        """The label values by label name."""
        return {
            "driver": self.driver,
            "invoker_kind": self.invoker_kind,
            "invoker_name": self.invoker_name,
            "namespace": self.namespace,
            "repository": self.repository,
        }


def failure_registry(labels: SessionLabels, gauge: tuple[str, str]) -> CollectorRegistry:
    """``stash_<gauge> 0`` (and its ``stash_appscode_com_`` twin) for ``labels``; ``gauge``: one of
    :data:`BACKUP_SESSION_SUCCESS`, :data:`RESTORE_SESSION_SUCCESS`, :data:`RESTORE_DRILL_SUCCESS`."""
    name, help_text = gauge
    registry = CollectorRegistry(auto_describe=True)
    values = labels.values()
    for prefix in PREFIXES:
        Gauge(f"{prefix}_{name}", help_text, labelnames=sorted(values), registry=registry).labels(
            **values
        ).set(0)
    return registry


def redact_url(url: str) -> str:
    """``url`` without a user name or password, fit for logs."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.username is None and parts.password is None:
        return urlunsplit(parts)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def push_failure(url: str | None, labels: SessionLabels, gauge: tuple[str, str]) -> bool:
    """Push ``gauge`` 0 for ``labels`` to the Pushgateway at ``url`` (:func:`failure_registry`); False
    (logged) when it did not land, or when there is no gateway."""
    if not url:
        return False
    registry = failure_registry(labels, gauge)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    handler = (
        default_handler
        if parts.username is None
        else partial(
            basic_auth_handler, username=unquote(parts.username), password=unquote(parts.password or "")
        )
    )
    clean = redact_url(url)
    send = partial(
        pushadd_to_gateway, clean, labels.job, registry, timeout=PUSH_TIMEOUT_SECONDS, handler=handler
    )
    try:
        await asyncio.to_thread(send)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning(
            "failure metrics not pushed",
            extra={
                "object": f"{labels.namespace}/{labels.invoker_name}",
                "gateway": clean,
                "error": str(exc),
            },
        )
        return False
    log.info(
        "failure metrics pushed",
        extra={"object": f"{labels.namespace}/{labels.invoker_name}", "job": labels.job, "gateway": clean},
    )
    return True
