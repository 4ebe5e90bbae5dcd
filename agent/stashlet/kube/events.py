"""Kubernetes Events on stashlet's objects, shown by ``kubectl describe`` under Events.

core/v1 Events, because ``kubectl describe`` prints their ``source.component`` in its From column, and
that column reads as Stash's does (e.g. "Backup Triggering CronJob", "BackupSession Controller"). A
repeated event increments the count of the existing one, as the kubelet's recorder does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any, Literal

from stashlet.kube import paths
from stashlet.kube.errors import Conflict, KubeError
from stashlet.kube.rest import MERGE_PATCH, KubeApi

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Writes events as one component (and host, when several processes share the component)."""

    def __init__(self, api: KubeApi, component: str, host: str = "") -> None:
        """Record as ``component``; ``host`` tells replicas apart in ``source.host``."""
        self.api = api
        self.component = component
        self.host = host

    async def record(self, obj: dict[str, Any], type_: EventType, reason: str, message: str) -> None:
        """Record an event about ``obj``; never raises (an event is worth less than the work it reports)."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        digest = hashlib.sha256(
            f"{meta.get('uid')}|{type_}|{reason}|{message}|{self.component}|{self.host}".encode()
        ).hexdigest()[:12]
        name = f"{meta.get('name')}.{digest}"
        try:
            try:  # most events are new: made straight away, one request
                await self.api.send(
                    "POST",
                    paths.core("events", namespace),
                    body=self._body(obj, name, namespace, type_=type_, reason=reason, message=message),
                )
            except Conflict:  # recorded before: counted once more
                existing = await self.api.send("GET", paths.core("events", namespace, name))
                await self.api.send(
                    "PATCH",
                    paths.core("events", namespace, name),
                    body={"count": int(existing.get("count") or 1) + 1, "lastTimestamp": _now()},
                    content_type=MERGE_PATCH,
                )
        except KubeError as exc:
            log.warning(
                "could not record event",
                extra={"object": f"{namespace}/{meta.get('name')}", "reason": reason, "error": exc.message},
            )

    def _body(
        self, obj: dict[str, Any], name: str, namespace: str, *, type_: EventType, reason: str, message: str
    ) -> dict[str, Any]:
        meta = obj.get("metadata", {})
        now = _now()
        source: dict[str, str] = {"component": self.component}
        if self.host:
            source["host"] = self.host
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": source,
            "reportingComponent": self.component.lower().replace(" ", "-"),
            "reportingInstance": self.host or self.component.lower().replace(" ", "-"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
