"""``stashlet-agent restore`` and ``restore-job``: one host's part of a RestoreSession.

The ``stash-init`` init-container restores into its workload's volumes; a restore Job into the claims it
mounts (:mod:`.scope` says which, how many hosts there are, and whether hosts take turns).

On every start of its pod it reads its RestoreSession (``--invoker-name``, in its namespace) and:

- does nothing and exits 0 when the session Succeeded or this host already has a Succeeded entry (no
  write at all: a restarted pod starts at once);
- otherwise (an init-container) waits for its turn on Lease ``lock-<kind>-<name>-restore`` (one host at
  a time; the other replicas of a Deployment, which all play ``host-0``, find the work done when their
  turn comes; a Job is its own host and takes no turn), then restores what the matching rule asks for
  (see :mod:`.plan`), verifies it, and records its host's entry in ``status.stats`` with ``totalHosts``;
  the session's phase and, once all hosts are in, its duration and ``RestoreCompleted`` follow from the
  entries (see :mod:`.status`);
- records the events "Host Restore Succeeded"/"Host Restore Failed" (component "RestoreSession
  Controller"), and "RestoreSessionSucceeded"/"RestoreSessionFailed" when its entry completes the
  session; pushes the Stash restore metrics (a failed push sets ``MetricsPushed=False`` and never fails
  the restore);
- exits 0 only when its host Succeeded. Any failure exits non-zero with the reason in the host's
  entry (when the session still exists), so the application never starts on partial data; an
  init-container's restart is the retry, and a Failed entry is restored again (a restore Job is not
  restarted: its Failed entry fails the session).

``spec.hooks`` (see :mod:`stashlet.agent.hooks`), from this pod as the executor pod, on every attempt:

- ``preRestore`` runs after the session's checks and before the Repository is read and restic runs; if
  it fails, nothing is restored and the host is Failed with reason ``FailedToExecutePreRestoreHook``;
- ``postRestore`` runs once the host's outcome is known (also after a failed ``preRestore``, as Stash's
  deferred hook does), if its ``executionPolicy`` admits that outcome (``.Status.Phase`` is ``Failed``
  when this host or another one failed, else ``Succeeded``); if it fails, a host that had succeeded is
  Failed with reason ``FailedToExecutePostRestoreHook``, so the session is Failed (as Stash marks it)
  and the pod's restart runs the restore and the hooks again;
- each hook that runs (or is skipped by its policy) sets Stash's condition
  ``PreRestoreHookExecutionSucceeded`` / ``PostRestoreHookExecutionSucceeded`` on the session and records
  an event with the condition's reason; a wrong ``spec.hooks`` fails the host with reason ``InvalidHook``.

SIGTERM interrupts restic (so it removes its lock), records the host Failed with reason Interrupted
and exits 143. ``spec.timeOut`` bounds the wait for the turn and the restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from stashlet.agent.context import AgentContext, PreparationError, target_lease
from stashlet.agent.errors import RefuseInput, ReportFailure
from stashlet.agent.hooks import (
    PHASE_FAILED,
    PHASE_SUCCEEDED,
    Hook,
    HookData,
    HookKind,
    HookResult,
    HookSet,
    HookSpecError,
    PodRef,
    hook_condition,
    restore_data,
    restore_hooks,
    run_hook,
)
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.endpoint import probe_for
from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.runner import Restic
from stashlet.agent.restore import status as rs
from stashlet.agent.restore.extract import HostRestore, ResticRestore, RestoreIncomplete
from stashlet.agent.restore.listing import RestoreItem
from stashlet.agent.restore.plan import PlanError, check_extra_args, match_rule
from stashlet.agent.restore.report import RestoreReport
from stashlet.agent.restore.scope import RestoreScope, WorkloadScope
from stashlet.api import names
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import format_duration, parse_duration
from stashlet.api.restore_rules import rule_problems, rules_of
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase, RestoreSession
from stashlet.api.timestamps import now_utc
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.leases import LeaseLock, LeaseLost

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 143

TURN_POLL = 2.0
"""Seconds between looks at the session while waiting for the Lease."""
LEASE_DURATION = 15
LEASE_RENEW = 2.0
PROGRESS_LOG_INTERVAL = 5.0

REASON_INTERRUPTED = "Interrupted"
REASON_DEADLINE = "DeadlineExceeded"


class SessionGone(RefuseInput):
    """The RestoreSession does not exist (any more)."""


class DeadlineExceeded(ReportFailure):
    """``spec.timeOut`` ran out while waiting for the turn."""


class PreRestoreHookFailed(ReportFailure):
    """The ``preRestore`` hook failed: nothing is restored."""

    reason = str(ConditionReason.FAILED_TO_EXECUTE_PRE_RESTORE_HOOK)


class RestoreRunner:
    """Runs this host's part of its RestoreSession once (one init-container start)."""

    def __init__(
        self,
        ctx: AgentContext,
        *,
        scope: RestoreScope | None = None,
        turn_poll: float = TURN_POLL,
        startup_error: PreparationError | None = None,
    ) -> None:
        """Serve ``ctx``'s invoker (a RestoreSession) as ``ctx.host``, into ``scope`` (by default the
        init-container's workload, ``ctx``'s target).

        ``startup_error`` is a problem found while starting (restic missing): it is recorded as this
        host's failure, so the session says why the pod does not start.
        """
        self.ctx = ctx
        self.scope = scope or WorkloadScope(ctx.settings.target_kind, ctx.settings.target_name)
        self.report = RestoreReport(ctx)
        self.startup_error = startup_error
        self.turn_poll = turn_poll
        self._last_progress_log = 0.0

    @property
    def name(self) -> str:
        """The RestoreSession's name."""
        return self.report.name

    @property
    def ref(self) -> str:
        """``namespace/name`` of the RestoreSession, for logs."""
        return self.report.ref

    async def run(self) -> int:
        """Restore this host if it must; the process's exit code."""
        ctx = self.ctx
        host = ctx.host.name
        if ctx.settings.invoker_kind != names.KIND_RESTORE_SESSION:
            log.error(
                "restore needs a RestoreSession invoker", extra={"invoker_kind": ctx.settings.invoker_kind}
            )
            return EXIT_FAILED
        try:
            session = await self._get()
            if rs.nothing_to_do(session, host):
                log.info(
                    "restore already done for this host; nothing to do",
                    extra={"session": self.ref, "host": host},
                )
                return EXIT_OK
            if rs.phase(session) == RestorePhase.INVALID:
                log.error(
                    "RestoreSession is Invalid; not restoring",
                    extra={"session": self.ref, "conditions": _conditions(session)},
                )
                return EXIT_FAILED
            deadline = _deadline(session)
            async with self._turn(deadline) as mine:
                if not mine:
                    return EXIT_OK
                session = await self._get()
                if rs.nothing_to_do(session, host):
                    log.info("another replica restored this host", extra={"session": self.ref, "host": host})
                    return EXIT_OK
                return await self._restore(session, deadline)
        except SessionGone:
            log.error(
                "RestoreSession not found; not starting the application without its data",
                extra={"session": self.ref, "host": host},
            )
            return EXIT_FAILED
        except DeadlineExceeded:
            await self._fail_quietly(
                REASON_DEADLINE, "spec.timeOut ran out while waiting for the restore turn", 0.0
            )
            return EXIT_FAILED
        except KubeError as exc:
            log.error(
                "restore failed: Kubernetes API error", extra={"session": self.ref, "error": exc.message}
            )
            return EXIT_FAILED

    # --- the session and the turn ----------------------------------------------------------------------

    async def _get(self) -> RestoreSession:
        try:
            return await self.ctx.stash.get(RestoreSession, self.ctx.namespace, self.name)
        except NotFound as exc:
            raise SessionGone(self.ref) from exc

    @contextlib.asynccontextmanager
    async def _turn(self, deadline: float | None) -> AsyncIterator[bool]:
        """Hold Lease ``lock-<kind>-<name>-restore`` while restoring; False: the work got done meanwhile.
        A scope without turns (a Job) holds nothing."""
        if not self.scope.leased:
            yield True
            return
        lease = target_lease(
            self.ctx.api, self.ctx.settings, "restore", duration=LEASE_DURATION, renew_every=LEASE_RENEW
        )
        renewer = asyncio.create_task(lease.run(), name="restore-lease")
        try:
            mine = await self._wait_for(lease, deadline)
            if mine:
                self.ctx.lease = lease
                log.info("took the restore turn", extra={"session": self.ref, "lease": lease.name})
            yield mine
        finally:
            self.ctx.lease = None
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await lease.release()

    async def _wait_for(self, lease: LeaseLock, deadline: float | None) -> bool:
        announced = False
        while not lease.held:
            try:
                async with asyncio.timeout(self.turn_poll):  # not wait_for: it may lose a cancellation
                    await lease.wait_held()
            except TimeoutError:
                session = await self._get()
                if rs.nothing_to_do(session, self.ctx.host.name):
                    log.info("restored by another replica meanwhile", extra={"session": self.ref})
                    return False
                if deadline is not None and time.time() > deadline:
                    raise DeadlineExceeded(self.ref) from None
                if not announced:
                    log.info("waiting for the restore turn", extra={"session": self.ref, "lease": lease.name})
                    announced = True
        return True

    # --- this host's restore ---------------------------------------------------------------------------

    async def _restore(self, session: RestoreSession, deadline: float | None) -> int:
        ctx = self.ctx
        host = ctx.host.name
        started = time.monotonic()
        ctx.live.start(self.name, "restore")
        total = session.status.total_hosts if session.status and session.status.total_hosts else 1
        done: HostRestore | None = None
        repository = ""
        hooks = HookSet()
        try:
            hooks = restore_hooks(session.spec.hooks)
            total = await self.scope.total_hosts(ctx, session)
            await ctx.stash.update_status(
                RestoreSession,
                ctx.namespace,
                self.name,
                lambda s: rs.put_host(
                    s, total, HostRestoreStats(hostname=host, phase=HostRestorePhase.RUNNING), now_utc()
                ),
            )
            log.info("host restore started", extra={"session": self.ref, "host": host, "total_hosts": total})
            work = self._work(session, hooks.pre, deadline)
            if deadline is None:
                done, repository = await work
            else:
                done, repository = await asyncio.wait_for(work, max(0.0, deadline - time.time()))
            stats = HostRestoreStats(
                hostname=host,
                phase=HostRestorePhase.SUCCEEDED,
                duration=format_duration(time.monotonic() - started),
            )
        except TimeoutError as exc:
            if deadline is None or time.time() < deadline:
                stats = self._failed("Timeout", f"timed out: {exc}", started)
            else:
                message = f"the restore did not finish within spec.timeOut ({session.spec.time_out})"
                stats = self._failed(REASON_DEADLINE, message, started)
        except (PreparationError, PlanError, RestoreIncomplete, PreRestoreHookFailed, HookSpecError) as exc:
            stats = self._failed(exc.reason, exc.message, started)
        except ResticError as exc:
            stats = self._failed(exc.reason, exc.message, started)
        except LeaseLost as exc:
            stats = self._failed("LeaseLost", str(exc), started)
        except asyncio.CancelledError:
            message = f"the init-container of pod {ctx.settings.pod_name} was stopped mid-restore"
            await asyncio.shield(
                self._fail_quietly(REASON_INTERRUPTED, message, time.monotonic() - started, total)
            )
            raise
        if hooks.post is not None:
            stats = await self._post_restore(session, hooks.post, stats, started)
        try:
            recorded = await self.report.record(total, stats, done)
        except NotFound as exc:
            raise SessionGone(self.ref) from exc
        await self.report.publish(recorded, total, stats, repository)
        ctx.live.finish(self.name, str(stats.phase), stats.error or "", stats.duration or "")
        return EXIT_OK if stats.phase == HostRestorePhase.SUCCEEDED else EXIT_FAILED

    async def _work(
        self, session: RestoreSession, pre_restore: Hook | None, deadline: float | None
    ) -> tuple[HostRestore, str]:
        """Plan, check, restore and verify, the backend watched as a backup's is (an outage reported, and
        given up after the agent's bound or before ``deadline``); returns what was restored and the
        Repository's name."""
        ctx = self.ctx
        if self.startup_error is not None:
            raise self.startup_error
        self.scope.check(session)
        where, rules = rules_of(session)
        problems = rule_problems(rules, where)
        if problems:
            raise PlanError("; ".join(problems), reason="InvalidRestoreRule")
        target = session.spec.target
        extra_args = check_extra_args(target.args or [] if target else [])
        if pre_restore is not None:
            await self._pre_restore(session, pre_restore)
        rule = match_rule(rules, ctx.host.name)
        if rule is None:
            log.info(
                "no rule of the RestoreSession applies to this host; nothing to restore here (as in Stash)",
                extra={"session": self.ref, "host": ctx.host.name},
            )
            return HostRestore(), ""
        repo_ref = session.spec.repository
        if repo_ref is None:
            raise PreparationError(
                f"RestoreSession {self.ref}: spec.repository is not set", reason="RepositoryNotFound"
            )
        repo, restic_repo = await ctx.repository(repo_ref.name, repo_ref.namespace)
        repository = f"{repo.metadata.namespace or ctx.namespace}/{repo.metadata.name}"
        probe = probe_for(restic_repo, ctx.restic.base_env)
        watch = BackendWatch(
            restic_repo.display_url, ctx.restic.backend_give_up, self._report_backend, probe=probe
        )
        restic = Restic(ctx.restic, restic_repo, on_backend=watch.notice)
        runner = ResticRestore(ctx, restic, repository, self._progress)
        mounts = self.scope.mounts(session)
        done = await watch.guard(
            lambda: runner.run(rule, mounts, extra_args, before_each=self._check_lease),
            deadline=deadline,
            hurry=restic.hurry,
        )
        return done, repo.metadata.name or ""

    async def _report_backend(self, state: BackendState) -> None:
        """The RestoreSession's ``BackendReachable`` condition (its transition time is when restic's
        retries began, or ended), an event and a log line."""
        reason = ConditionReason.BACKEND_ANSWERS if state.reachable else ConditionReason.BACKEND_UNREACHABLE
        extra = {"session": self.ref, "host": self.ctx.host.name, "backend": state.location}
        if state.reachable:
            log.info("backend answers again", extra=extra)
        else:
            log.warning("backend unreachable, restic retries", extra={**extra, "error": state.error})
        updated = await self.ctx.stash.update_status(
            RestoreSession,
            self.ctx.namespace,
            self.name,
            lambda s: rs.set_condition(
                s, ConditionType.BACKEND_REACHABLE, state.reachable, reason, state.message, state.since
            ),
        )
        await self.ctx.events.record(
            updated.to_dict(), "Normal" if state.reachable else "Warning", reason, state.message
        )

    # --- hooks ------------------------------------------------------------------------------------------

    async def _pre_restore(self, session: RestoreSession, hook: Hook) -> None:
        """Run the preRestore hook; PreRestoreHookFailed when it fails."""
        data = restore_data(session, phase=str(RestorePhase.RUNNING), now=now_utc())
        result = await self._run_hook(HookKind.PRE_RESTORE, hook, data)
        if not result.succeeded:
            raise PreRestoreHookFailed(result.message)

    async def _post_restore(
        self, session: RestoreSession, hook: Hook, stats: HostRestoreStats, started: float
    ) -> HostRestoreStats:
        """Run the postRestore hook for this host's outcome; the outcome, Failed if the hook failed."""
        phase, error = _outcome(session, stats)
        data = restore_data(session, phase=phase, error=error, now=now_utc())
        result = await self._run_hook(HookKind.POST_RESTORE, hook, data)
        if result.succeeded or stats.phase != HostRestorePhase.SUCCEEDED:
            return stats
        return self._failed(str(ConditionReason.FAILED_TO_EXECUTE_POST_RESTORE_HOOK), result.message, started)

    async def _run_hook(self, kind: HookKind, hook: Hook, data: HookData) -> HookResult:
        """Run one hook from this pod, then set its condition on the session and record its event."""
        pod = PodRef(self.ctx.namespace, self.ctx.settings.pod_name)
        result = await run_hook(kind, hook, pod, data, api=self.ctx.api)
        condition = hook_condition(kind, result)
        try:
            updated = await self.ctx.stash.update_status(
                RestoreSession,
                self.ctx.namespace,
                self.name,
                lambda s: rs.set_condition(
                    s, condition.type, condition.ok, condition.reason, condition.message, now_utc()
                ),
            )
        except KubeError as exc:
            log.error(
                "could not record the hook's outcome", extra={"session": self.ref, "error": exc.message}
            )
            return result
        await self.ctx.events.record(
            updated.to_dict(),
            condition.event_type,
            str(condition.reason),
            f"host {self.ctx.host.name}: {condition.message}",
        )
        return result

    def _check_lease(self) -> None:
        if self.ctx.lease is not None:
            self.ctx.lease.ensure_held()

    def _progress(self, item: RestoreItem, status: rj.RestoreStatus) -> None:
        progress = {
            "path": item.path,
            "snapshot": item.snapshot_id[:8],
            "percentDone": round(status.percent_done, 4),
            "totalFiles": status.total_files,
            "filesRestored": status.files_restored,
            "filesSkipped": status.files_skipped,
            "totalBytes": status.total_bytes,
            "bytesRestored": status.bytes_restored,
            "bytesSkipped": status.bytes_skipped,
            "secondsElapsed": status.seconds_elapsed,
        }
        if self.ctx.live.running is not None:
            self.ctx.live.running["progress"] = progress
        if time.monotonic() - self._last_progress_log >= PROGRESS_LOG_INTERVAL:
            self._last_progress_log = time.monotonic()
            log.info("restore progress", extra={"session": self.ref, "host": self.ctx.host.name, **progress})

    def _failed(self, reason: str, message: str, started: float) -> HostRestoreStats:
        log.error(
            "host restore failed",
            extra={"session": self.ref, "host": self.ctx.host.name, "reason": reason, "error": message},
        )
        return HostRestoreStats(
            hostname=self.ctx.host.name,
            phase=HostRestorePhase.FAILED,
            duration=format_duration(time.monotonic() - started),
            error=f"{reason}: {message}",
        )

    async def _fail_quietly(
        self, reason: str, message: str, seconds: float, total: int | None = None
    ) -> None:
        """Record this host Failed without letting an API error hide the original one."""
        stats = self._failed(reason, message, time.monotonic() - seconds)
        try:
            session = await self._get()
            hosts = total or (session.status.total_hosts if session.status else None) or 1
            recorded = await self.report.record(hosts, stats, None)
            await self.report.publish(recorded, hosts, stats, "")
        except (KubeError, SessionGone) as exc:
            log.error("could not record the failure", extra={"session": self.ref, "error": str(exc)})


def _outcome(session: RestoreSession, stats: HostRestoreStats) -> tuple[str, str]:
    """The phase and error a postRestore hook sees: Failed when this host or another one failed (with the
    first error found, this host's first; the other hosts' entries as the session stood when this host's
    turn came), else Succeeded."""
    others = [
        s for s in (session.status.stats if session.status else None) or [] if s.hostname != stats.hostname
    ]
    failed = [s for s in [stats, *others] if s.phase == HostRestorePhase.FAILED]
    if failed:
        return PHASE_FAILED, failed[0].error or ""
    return PHASE_SUCCEEDED, ""


def _deadline(session: RestoreSession) -> float | None:
    """When ``spec.timeOut`` runs out (from the session's creation), as a Unix time."""
    created = session.metadata.creation_timestamp
    if not session.spec.time_out or created is None:
        return None
    try:
        return created.timestamp() + parse_duration(session.spec.time_out)
    except ValueError:
        log.warning("ignoring unreadable spec.timeOut", extra={"time_out": session.spec.time_out})
        return None


def _conditions(session: RestoreSession) -> list[dict[str, Any]]:
    return [c.to_dict() for c in (session.status.conditions if session.status else None) or []]
