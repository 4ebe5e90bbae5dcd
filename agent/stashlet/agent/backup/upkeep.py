"""The Repository's work after a session has reported: outside the session's time, before the next.

The host that ended a session then (:class:`RepositoryUpkeep`):

- runs ``restic check`` when one is due (:mod:`stashlet.agent.backup.check_cadence`), reading the
  configured subset of the data; its verdict goes to the session's ``RepositoryIntegrityVerified``
  condition, the Repository's ``integrity`` and ``lastCheckTime``, and the integrity metric; a check that
  found errors also records a Warning event ``RepositoryIntegrityCheckFailed`` on the Repository and on
  the session. A check that could not run (the lock, the backend, the Lease) is reported not run and
  leaves the Repository's integrity and last check time as the last real check left them, so the next
  session checks again;
- runs one ``restic stats --mode raw-data`` for the repository's stored size and snapshot count (every
  configuration's), and writes the Repository's status
  (:func:`~stashlet.agent.backup.status.updated_repository_status`) and its metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.check_cadence import CheckSettings
from stashlet.agent.backup.session_ops import (
    SessionRestic,
    check_lease,
    guarded,
    report_pushes,
    set_condition,
)
from stashlet.agent.context import AgentContext
from stashlet.agent.metrics.report import MetricsReporter
from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.forget_policy import KnownSnapshot
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository, RepositoryStatus
from stashlet.api.timestamps import now_utc
from stashlet.kube.errors import KubeError
from stashlet.kube.leases import LeaseLost

log = logging.getLogger(__name__)

REASON_CHECK_FAILED = "RepositoryIntegrityCheckFailed"


@dataclass
class Upkeep:
    """The Repository's work a session left."""

    session: str
    config: BackupConfiguration
    repo: Repository
    restic: SessionRestic
    check: CheckSettings | None
    """How to check the repository, the check being due; None: no check (not due, or refused)."""
    removed: int | None
    """Snapshots the session's retention removed; None when it failed."""
    snapshot: KnownSnapshot | None
    """The snapshot the session wrote, when the agent could describe it."""
    scope: list[KnownSnapshot]
    """The snapshots the agent knows of the target's retention scope after the session."""


class RepositoryUpkeep:
    """Does the work sessions leave for their Repository (module docstring)."""

    def __init__(self, ctx: AgentContext, metrics: MetricsReporter) -> None:
        """Share the agent's context and metrics reporter."""
        self.ctx = ctx
        self.metrics = metrics

    async def run(self, work: Upkeep) -> None:
        """Check when due, read the size and count, write the status and metrics; never raises for the
        API or restic (logged: the session has reported already)."""
        try:
            await self._run(work)
        except (KubeError, ResticError, LeaseLost) as exc:
            log.error(
                "repository upkeep failed",
                extra={"session": f"{self.ctx.namespace}/{work.session}", "error": str(exc)},
            )

    async def _run(self, work: Upkeep) -> None:
        repo = work.repo
        repo_ns, repo_name = repo.metadata.namespace or self.ctx.namespace, repo.metadata.name or ""
        integrity: bool | None = None
        checked_at: dt.datetime | None = None
        if work.check is not None:
            checked_at = now_utc()
            integrity = await self._verify(work, f"{repo_ns}/{repo_name}")
        try:
            stats = await guarded(self.ctx, work.restic, lambda: work.restic.restic.stats(mode="raw-data"))
        except ResticError as exc:
            log.error(
                "could not read repository stats",
                extra={"repository": f"{repo_ns}/{repo_name}", "error": exc.message},
            )
            stats = None

        def put_repo_status(r: Repository) -> None:
            r.status = ss.updated_repository_status(
                r.status or RepositoryStatus(),
                stats=stats,
                snapshot=work.snapshot,
                scope=work.scope,
                integrity=integrity,
                checked_at=checked_at if integrity is not None else None,
                removed=work.removed,
            )

        updated = await self.ctx.stash.update_status(Repository, repo_ns, repo_name, put_repo_status)
        self.ctx.live.repository = {
            "name": f"{repo_ns}/{repo_name}",
            **(updated.status.to_dict() if updated.status else {}),
        }
        pushed = await self.metrics.repository(work.config, updated)
        if pushed is not None and not pushed.ok:
            await report_pushes(self.ctx, work.session, pushed)
        log.info(
            "repository updated",
            extra={
                "repository": f"{repo_ns}/{repo_name}",
                "session": f"{self.ctx.namespace}/{work.session}",
                "checked": integrity is not None,
                "snapshot_count": updated.status.snapshot_count if updated.status else None,
            },
        )

    async def _verify(self, work: Upkeep, repository: str) -> bool | None:
        """``restic check``, recorded on the session (module docstring); None when it could not run."""
        ctx, session = self.ctx, work.session
        subset = work.check.read_data_subset if work.check is not None else None
        try:
            check_lease(ctx)
            integrity = await guarded(
                ctx, work.restic, lambda: work.restic.restic.check(read_data_subset=subset)
            )
        except (ResticError, LeaseLost) as exc:
            reason = exc.reason if isinstance(exc, ResticError) else "LeaseLost"
            log.warning(
                "repository check did not run",
                extra={"session": f"{ctx.namespace}/{session}", "reason": reason, "error": str(exc)},
            )
            await set_condition(
                ctx,
                session,
                ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
                False,
                reason,
                f"restic check did not run, the repository's integrity is unchanged: {exc}",
            )
            return None
        read = f" (reading data subset {subset})" if subset else ""
        message = f"restic check{read} found no errors" if integrity else f"restic check{read} found errors"
        await set_condition(
            ctx,
            session,
            ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
            integrity,
            ConditionReason.SUCCESSFULLY_VERIFIED_REPOSITORY_INTEGRITY
            if integrity
            else ConditionReason.FAILED_TO_VERIFY_REPOSITORY_INTEGRITY,
            message,
        )
        log.info(
            "repository checked",
            extra={"repository": repository, "session": f"{ctx.namespace}/{session}", "integrity": integrity},
        )
        if not integrity:
            event = f"Repository {repository}: {message} (after BackupSession {ctx.namespace}/{session})"
            await ctx.events.record(work.repo.to_dict(), "Warning", REASON_CHECK_FAILED, event)
            ended = await ctx.stash.get(BackupSession, ctx.namespace, session)
            await ctx.events.record(ended.to_dict(), "Warning", REASON_CHECK_FAILED, event)
        return integrity
