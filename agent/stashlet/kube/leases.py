"""Leader election on a coordination.k8s.io/v1 Lease, for "one replica at a time" work.

The holder renews every ``renew_every`` seconds; another candidate takes over only after the lease
has not been renewed for ``duration`` seconds. A holder that cannot renew before its own lease would
expire counts itself as having lost it at once (``held`` turns false), so it never works on a
repository alongside the next holder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from stashlet.kube.errors import Conflict, KubeError, NotFound
from stashlet.kube.paths import collection_path, object_path
from stashlet.kube.rest import KubeApi

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The lease is not (or no longer) held by this process."""


def _micro(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """Compete for one Lease; ``held`` says whether this identity holds it right now."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: int = 15,
        renew_every: float = 5.0,
    ) -> None:
        """Prepare; nothing is sent until :meth:`run`."""
        self.api = api
        self.namespace = namespace
        self.name = name
        self.path = object_path("coordination.k8s.io", "v1", "leases", namespace, name)
        self.identity = identity
        self.duration = duration
        self.renew_every = renew_every
        self._valid_until = 0.0
        self._acquired = asyncio.Event()

    @property
    def held(self) -> bool:
        """True while this identity holds an unexpired lease."""
        return time.monotonic() < self._valid_until

    def ensure_held(self) -> None:
        """Raise LeaseLost unless held: call it before each piece of repository work."""
        if not self.held:
            raise LeaseLost(f"lease {self.namespace}/{self.name} is not held by {self.identity}")

    async def wait_held(self) -> None:
        """Wait until this identity holds the lease."""
        while not self.held:
            self._acquired.clear()
            await self._acquired.wait()

    async def run(self) -> None:
        """Try to acquire, then keep renewing, forever (cancel to stop; see :meth:`release`)."""
        while True:
            started = time.monotonic()
            try:
                if await self._try_acquire_or_renew():
                    self._valid_until = started + self.duration * 0.8
                    self._acquired.set()
            except KubeError as exc:
                log.warning(
                    "lease renewal failed",
                    extra={"lease": f"{self.namespace}/{self.name}", "error": exc.message},
                )
            await asyncio.sleep(self.renew_every)

    async def release(self) -> None:
        """Give the lease up (if held) so the next candidate need not wait for it to expire."""
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            lease = await self.api.send("GET", self.path)
            if lease["spec"].get("holderIdentity") == self.identity:
                lease["spec"].pop("holderIdentity", None)
                lease["spec"].pop("renewTime", None)
                await self.api.send("PUT", self.path, body=lease)
        except KubeError as exc:
            log.info("lease release failed; it will expire", extra={"lease": self.name, "error": exc.message})

    async def _try_acquire_or_renew(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            lease = await self.api.send("GET", self.path)
        except NotFound:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.duration,
                    "acquireTime": _micro(now),
                    "renewTime": _micro(now),
                    "leaseTransitions": 0,
                },
            }
            try:
                await self.api.send(
                    "POST", collection_path("coordination.k8s.io", "v1", "leases", self.namespace), body=body
                )
            except Conflict:
                return False
            log.info(
                "lease acquired", extra={"lease": f"{self.namespace}/{self.name}", "holder": self.identity}
            )
            return True
        spec = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity:
            renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
            duration = int(spec.get("leaseDurationSeconds") or self.duration)
            if renewed is not None and renewed + dt.timedelta(seconds=duration) > now:
                return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            log.info(
                "lease taken over",
                extra={"lease": f"{self.namespace}/{self.name}", "holder": self.identity, "previous": holder},
            )
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = self.duration
        spec["renewTime"] = _micro(now)
        try:
            await self.api.send("PUT", self.path, body=lease)
        except Conflict:
            return False
        return True


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
