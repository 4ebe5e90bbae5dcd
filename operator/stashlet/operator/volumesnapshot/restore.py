"""One VolumeSnapshotter RestoreSession carried out, a step at a time: async.

:meth:`SnapshotRestores.step` is called for a session until it returns None. The first step checks the
session (the field table and :mod:`.validation`), then each claim it would make
(:func:`.restore_plan.planned_claims`): its VolumeSnapshot and its StorageClass exist, and no claim of
that name exists that this session did not make. A problem there fails the session with
``ValidationPassed`` False naming ``spec.target.volumeClaimTemplates[i]``, before any claim is made.
Then the claims are created and the session is Running. Later steps read the claims: Bound is a
restored host; a claim whose class binds on first consumer is ``Unknown`` at once (Stash's rule: only
the first pod to use it will have it provisioned); a Lost claim fails. At the deadline (creation +
``spec.timeOut``, :data:`~stashlet.operator.volumesnapshot.backup.DEFAULT_TIME_OUT` without one) the
claims not yet Bound fail. The claims are never deleted by stashlet: they are the restored data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from stashlet.api import names
from stashlet.api.common import Snapshotter
from stashlet.api.durations import parse_duration
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase, RestoreSession
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, NotFound
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.volumesnapshot import restore_plan as rp
from stashlet.operator.volumesnapshot import validation
from stashlet.operator.volumesnapshot.backup import DEFAULT_TIME_OUT, POLL_SECONDS
from stashlet.operator.volumesnapshot.cluster import SnapshotCluster

log = logging.getLogger(__name__)


class SnapshotRestores:
    """Carries out VolumeSnapshotter RestoreSessions (module docstring)."""

    def __init__(
        self,
        api: ApiClient,
        events: Events,
    ) -> None:
        """Act with ``api`` (the operator's identity)."""
        self.stash = StashClient(api)
        self.cluster = SnapshotCluster(api)
        self.events = events

    async def step(self, namespace: str, name: str) -> float | None:
        """Take the session one step further; the seconds until the next step, or None when done."""
        try:
            rs = await self.stash.get(RestoreSession, namespace, name)
        except NotFound:
            return None
        if rp.is_final(rs) or rs.spec.driver != Snapshotter.VOLUME_SNAPSHOTTER:
            return None
        planned = rp.planned_claims(rs)
        if rs.status is None or rs.status.phase != RestorePhase.RUNNING:
            problems = validation.restore_problems(rs)
            if not problems:
                problems = await self._claim_problems(rs, planned)
            now = now_utc()
            if problems:
                updated = await self.stash.update_status(
                    RestoreSession, namespace, name, lambda s: rp.refuse(s, problems, now)
                )
                message = "; ".join(problems)
                await self.events.emit(
                    updated,
                    EventSpec(
                        "Warning", "ResourceValidationFailed", message, names.COMPONENT_RESTORE_SESSION
                    ),
                )
                log.info(
                    "volume snapshot restore refused",
                    extra={"object": f"{namespace}/{name}", "reason": message},
                )
                return None
            for claim in planned:
                # Conflict: made by an earlier step of this session (_claim_problems checked its label).
                with contextlib.suppress(Conflict):
                    await self.cluster.create_claim(claim.claim)
            deadline = None
            if rs.spec.time_out:
                created = rs.metadata.creation_timestamp or now
                deadline = created + dt.timedelta(seconds=parse_duration(rs.spec.time_out))
            claims = [c.name for c in planned]
            await self.stash.update_status(
                RestoreSession, namespace, name, lambda s: rp.start(s, claims, deadline, now)
            )
            log.info(
                "claims created from volume snapshots",
                extra={"object": f"{namespace}/{name}", "claims": claims},
            )
        return await self._follow(namespace, name, planned)

    async def _claim_problems(self, rs: RestoreSession, planned: list[rp.PlannedClaim]) -> list[str]:
        namespace = rs.metadata.namespace or ""
        problems: list[str] = []
        for claim in planned:
            where = f"spec.target.volumeClaimTemplates[{claim.index}]"
            try:
                await self.cluster.snapshot(namespace, claim.snapshot)
            except NotFound:
                problems.append(
                    f"{where}.spec.dataSource.name: VolumeSnapshot {namespace}/{claim.snapshot} "
                    "does not exist"
                )
            if claim.storage_class:
                try:
                    await self.cluster.storage_class(claim.storage_class)
                except NotFound:
                    problems.append(
                        f"{where}.spec.storageClassName: StorageClass {claim.storage_class} does not exist"
                    )
            try:
                existing = await self.cluster.claim(namespace, claim.name)
            except NotFound:
                continue
            if not rp.made_for(existing, rs):
                problems.append(
                    f"{where}.metadata.name: PersistentVolumeClaim {namespace}/{claim.name} already exists "
                    "(a restore never writes into an existing claim)"
                )
        return problems

    async def _follow(self, namespace: str, name: str, planned: list[rp.PlannedClaim]) -> float | None:
        rs = await self.stash.get(RestoreSession, namespace, name)
        done = {
            s.hostname for s in (rs.status.stats if rs.status else None) or [] if s.phase in rp.FINAL_HOSTS
        }
        binding: dict[str, str] = {}
        results: list[HostRestoreStats] = []
        pending: list[str] = []
        for claim in planned:
            if claim.name in done:
                continue
            try:
                found = await self.cluster.claim(namespace, claim.name)
            except NotFound:
                results.append(
                    _failed(claim.name, f"PersistentVolumeClaim {namespace}/{claim.name} was deleted")
                )
                continue
            phase = (found.get("status") or {}).get("phase")
            if phase == "Bound":
                results.append(HostRestoreStats(hostname=claim.name, phase=HostRestorePhase.SUCCEEDED))
            elif phase == "Lost":
                results.append(_failed(claim.name, "the claim lost its volume"))
            elif await self._binding_mode(found, binding) == rp.WAIT_FOR_FIRST_CONSUMER:
                results.append(
                    HostRestoreStats(
                        hostname=claim.name, phase=HostRestorePhase.UNKNOWN, error=rp.UNKNOWN_MESSAGE
                    )
                )
            else:
                pending.append(claim.name)
        now = now_utc()
        total = len(planned)
        changed: list[str] = []
        was_final = rp.is_final(rs)

        def mutate(s: RestoreSession) -> None:
            changed[:] = rp.record(s, results, total, now)

        if results:
            rs = await self.stash.update_status(RestoreSession, namespace, name, mutate)
            await self._emit(rs, rp.events(rs, changed, rp.is_final(rs) and not was_final))
        if rp.is_final(rs):
            return None
        deadline = (rs.status.session_deadline if rs.status else None) or (
            (rs.metadata.creation_timestamp or now) + dt.timedelta(seconds=parse_duration(DEFAULT_TIME_OUT))
        )
        if now >= deadline:
            time_out = rs.spec.time_out or DEFAULT_TIME_OUT

            def expire(s: RestoreSession) -> None:
                changed[:] = pending
                rp.deadline_exceeded(s, pending, time_out, total, now)

            rs = await self.stash.update_status(RestoreSession, namespace, name, expire)
            await self._emit(rs, rp.events(rs, changed, True))
            return None
        return min(POLL_SECONDS, max(0.1, (deadline - now).total_seconds()))

    async def _binding_mode(self, claim: dict[str, Any], cache: dict[str, str]) -> str:
        name = str((claim.get("spec") or {}).get("storageClassName") or "")
        if not name:
            return ""
        if name not in cache:
            try:
                cache[name] = str(
                    (await self.cluster.storage_class(name)).get("volumeBindingMode") or "Immediate"
                )
            except NotFound:
                cache[name] = ""
        return cache[name]

    async def _emit(self, rs: RestoreSession, events: list[EventSpec]) -> None:
        for event in events:
            await self.events.emit(rs, event)


def _failed(claim: str, why: str) -> HostRestoreStats:
    return HostRestoreStats(
        hostname=claim, phase=HostRestorePhase.FAILED, error=f"failed to restore the volume. Reason: {why}"
    )
