"""A BackupConfiguration's ``spec.hooks`` around one host's backup (see :mod:`stashlet.agent.hooks`).

The executor pod is this agent's own pod (an ``exec`` hook runs in its ``containerName``, an HTTP or TCP
hook without a host reaches the pod's IP), on every host, as Stash's sidecar does:

- ``preBackup`` runs right before restic (whose first backup creates the repository); if it fails, restic
  does not run and the host is Failed with reason ``FailedToExecutePreBackupHook`` (a hook that quiesces a
  database must not be followed by a backup that looks consistent);
- ``postBackup`` runs after the backup (also after a failed one), when its ``executionPolicy`` admits the
  outcome (``.Status.Phase`` is the host's); if it fails, a host that had succeeded becomes Failed with
  reason ``FailedToExecutePostBackupHook`` (its snapshot stays), so the session says so;
- each hook that runs, or that its policy skips, sets Stash's condition
  ``PreBackupHookExecutionSucceeded`` / ``PostBackupHookExecutionSucceeded`` on the session's target (as
  Stash does) and records an event with the condition's reason.
"""

from __future__ import annotations

import logging

from stashlet.agent.backup import status as ss
from stashlet.agent.context import AgentContext
from stashlet.agent.errors import ReportFailure
from stashlet.agent.hooks import (
    PHASE_FAILED,
    PHASE_SUCCEEDED,
    Hook,
    HookData,
    HookKind,
    HookResult,
    PodRef,
    backup_data,
    hook_condition,
    run_hook,
)
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupPhase, HostBackupStats
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionReason
from stashlet.api.timestamps import now_utc
from stashlet.kube.errors import KubeError

log = logging.getLogger(__name__)


class PreBackupHookFailed(ReportFailure):
    """The ``preBackup`` hook failed: restic did not run."""

    reason = str(ConditionReason.FAILED_TO_EXECUTE_PRE_BACKUP_HOOK)


class HookRuns:
    """Runs a session's backup hooks from this pod and records their outcome on the session."""

    def __init__(self, ctx: AgentContext) -> None:
        """Act as ``ctx``'s pod and host."""
        self.ctx = ctx

    async def pre(self, session: BackupSession, ref: TargetRef, hosts: int, hook: Hook) -> None:
        """Run ``preBackup`` for target ``ref`` (of ``hosts`` hosts); PreBackupHookFailed when it fails."""
        data = backup_data(session, ref, phase=str(BackupSessionPhase.RUNNING), now=now_utc())
        result = await self._run(HookKind.PRE_BACKUP, hook, session, (ref, hosts), data)
        if not result.succeeded:
            raise PreBackupHookFailed(result.message)

    async def post(
        self, session: BackupSession, ref: TargetRef, hosts: int, hook: Hook, stats: HostBackupStats
    ) -> HostBackupStats:
        """Run ``postBackup`` for this host's outcome ``stats``; the outcome, Failed if the hook failed."""
        ok = stats.phase == HostBackupPhase.SUCCEEDED
        phase = PHASE_SUCCEEDED if ok else PHASE_FAILED
        data = backup_data(session, ref, phase=phase, error=stats.error or "", now=now_utc())
        result = await self._run(HookKind.POST_BACKUP, hook, session, (ref, hosts), data)
        if result.succeeded or not ok:
            return stats
        return stats.model_copy(
            update={
                "phase": HostBackupPhase.FAILED,
                "reason": str(ConditionReason.FAILED_TO_EXECUTE_POST_BACKUP_HOOK),
                "error": result.message,
            }
        )

    async def _run(
        self,
        kind: HookKind,
        hook: Hook,
        session: BackupSession,
        target: tuple[TargetRef, int],
        data: HookData,
    ) -> HookResult:
        ctx = self.ctx
        name = session.metadata.name or ""
        result = await run_hook(kind, hook, PodRef(ctx.namespace, ctx.settings.pod_name), data, api=ctx.api)
        condition = hook_condition(kind, result)
        log.info(
            "backup hook ran",
            extra={"session": f"{ctx.namespace}/{name}", "host": ctx.host.name, "hook": str(kind),
                   "succeeded": result.succeeded},
        )  # fmt: skip
        try:
            updated = await ctx.stash.update_status(
                BackupSession,
                ctx.namespace,
                name,
                lambda s: ss.set_target_condition(
                    s, *target, condition.type, condition.ok, condition.reason, condition.message, now_utc()
                ),
            )
        except KubeError as exc:
            log.error("could not record the hook's outcome", extra={"session": name, "error": exc.message})
            return result
        await ctx.events.record(
            updated.to_dict(),
            condition.event_type,
            str(condition.reason),
            f"host {ctx.host.name}: {condition.message}",
        )
        return result
