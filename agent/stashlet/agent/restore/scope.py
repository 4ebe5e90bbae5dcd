"""What one restore process restores into, and whether it takes turns: a workload's pod or a Job.

- :class:`WorkloadScope` (``stashlet-agent restore``, the ``stash-init`` init-container): the session
  must target this workload; the pods take turns on Lease ``lock-<kind>-<name>-restore``; the number of
  hosts follows from the workload (:func:`stashlet.agent.hosts.total_hosts`); the data goes under
  ``spec.target.volumeMounts``.
- :class:`JobScope` (``stashlet-agent restore-job``, one Job per host): the session must restore through
  Jobs (:mod:`stashlet.api.restore_jobs`), naming this Job's claim when the Job was made for one; each
  Job is its own host, so there is no Lease; the session has one host per Job; the data goes where the
  Job mounts the claims (:func:`stashlet.api.restore_jobs.mount_paths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stashlet.agent.context import AgentContext
from stashlet.agent.hosts import total_hosts
from stashlet.agent.restore.plan import PlanError
from stashlet.api import names, restore_jobs
from stashlet.api.common import Snapshotter
from stashlet.api.restoresession import RestoreSession


class RestoreScope(Protocol):
    """Where a restore process writes, and how it shares the work with the session's other hosts."""

    @property
    def leased(self) -> bool:
        """True: hosts take turns on the target's restore Lease."""
        ...

    def check(self, session: RestoreSession) -> None:
        """Raise :class:`PlanError` unless ``session`` is one this process restores."""
        ...

    async def total_hosts(self, ctx: AgentContext, session: RestoreSession) -> int:
        """How many hosts the session has."""
        ...

    def mounts(self, session: RestoreSession) -> list[str]:
        """The mount paths the data may be restored under."""
        ...


def _restic_driver(session: RestoreSession, what: str) -> None:
    if session.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
        message = f"spec.driver VolumeSnapshotter is not restored by {what}"
        raise PlanError(message, reason="UnsupportedDriver")


@dataclass(frozen=True)
class WorkloadScope:
    """The init-container in a pod of workload ``kind/name``."""

    kind: str
    name: str
    leased: bool = True

    def check(self, session: RestoreSession) -> None:
        """The session must target this workload and restore with restic."""
        _restic_driver(session, "an init-container")
        ref = session.spec.target.ref if session.spec.target else None
        if ref is None or not ref.kind or not ref.name:
            raise PlanError("spec.target.ref is not set", reason="RestoreTargetNotFound")
        if (ref.kind, ref.name) != (self.kind, self.name):
            raise PlanError(
                f"spec.target.ref is {ref.kind}/{ref.name}, but this init-container belongs to "
                f"{self.kind}/{self.name}",
                reason="RestoreTargetMismatch",
            )

    async def total_hosts(self, ctx: AgentContext, session: RestoreSession) -> int:
        """From the workload (a StatefulSet's replicas, a DaemonSet's nodes), or ``spec.target.replicas``."""
        target = session.spec.target
        replicas = target.replicas if target is not None else None
        return total_hosts(self.kind, await ctx.read_workload(), replicas)

    def mounts(self, session: RestoreSession) -> list[str]:
        """``spec.target.volumeMounts``' paths."""
        target = session.spec.target
        return [vm.mount_path for vm in (target.volume_mounts or [])] if target else []


@dataclass(frozen=True)
class JobScope:
    """A restore Job; ``claim`` is the PersistentVolumeClaim it was made for (``--target-name``), if any."""

    claim: str = ""
    leased: bool = False

    def check(self, session: RestoreSession) -> None:
        """The session must restore through Jobs, into this Job's claim when it names one."""
        _restic_driver(session, "a restore Job")
        if not restore_jobs.restores_by_job(session):
            raise PlanError(
                "the RestoreSession restores into a workload, not through a Job "
                "(no pvc-restore task, PersistentVolumeClaim target or volumeClaimTemplates)",
                reason="RestoreTargetMismatch",
            )
        target = session.spec.target
        ref = target.ref if target is not None else None
        named = (ref.name or "") if ref is not None and restore_jobs.names_claim(session) else ""
        if named != self.claim:
            raise PlanError(
                f"spec.target is {_claim_text(named)}, but this Job was made for {_claim_text(self.claim)}",
                reason="RestoreTargetMismatch",
            )

    async def total_hosts(self, ctx: AgentContext, session: RestoreSession) -> int:
        """One host per Job: ``spec.target.replicas`` with claim templates, else one."""
        return restore_jobs.total_hosts(session)

    def mounts(self, session: RestoreSession) -> list[str]:
        """Where the Job mounts the claims."""
        return restore_jobs.mount_paths(session)


def _claim_text(claim: str) -> str:
    return f"{names.KIND_PERSISTENT_VOLUME_CLAIM}/{claim}" if claim else "volumeClaimTemplates"
