"""One host's part of one BackupSession.

Prepare, back up with restic, record; the host that completes the target then applies retention,
verifies the repository and publishes its status.

A backup is never retried in place: a failure is recorded with its reason and the next session runs
anew. Nothing here deletes a snapshot except ``restic forget`` with the configuration's own policy.

Every restic operation of a session runs guarded (:meth:`BackupRunner._op`): a lock whose holders are
all gone is removed, a live holder is waited for until the session's deadline
(:mod:`stashlet.agent.stale_locks`), and a backend restic keeps retrying is reported on the session
(condition ``BackendReachable``, an event, a log line) and given up after the bound
(:mod:`stashlet.agent.restic.backend_watch`). A check that could not run (a lock, the backend) is
reported as not run, and leaves the Repository's integrity as the last real check left it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.hook_runs import HookRuns, PreBackupHookFailed
from stashlet.agent.backup.plan import BackupPlan, retention_args
from stashlet.agent.context import AgentContext, PreparationError, missing_paths
from stashlet.agent.hooks import HookSet, HookSpecError, backup_hooks
from stashlet.agent.live import progress_dict
from stashlet.agent.metrics.report import MetricsReporter, PushOutcome, merge_outcomes
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import ResticRepository
from stashlet.agent.restic.backend_watch import DEADLINE_MARGIN, BackendState, BackendWatch
from stashlet.agent.restic.errors import (
    BackendUnavailable,
    PartialBackup,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
)
from stashlet.agent.restic.retention import RetentionError
from stashlet.agent.restic.runner import Restic
from stashlet.agent.stale_locks import Judge, agent_pod_judge, run_unlocked
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import (
    BackupProgress,
    BackupSession,
    BackupSessionPhase,
    HostBackupPhase,
    HostBackupStats,
)
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import format_duration, parse_duration
from stashlet.api.repository import Repository, RepositoryStatus
from stashlet.api.timestamps import now_utc
from stashlet.kube.leases import LeaseLost

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_PROGRESS_INTERVAL = 5.0
"""Seconds between progress writes into the BackupSession status (the API server is no log)."""


def session_deadline(session: BackupSession, config: BackupConfiguration) -> float | None:
    """When the session must be over (a ``time.time()``): its creation plus ``spec.timeOut``; None
    without a timeOut."""
    if not config.spec.time_out or session.metadata.creation_timestamp is None:
        return None
    return session.metadata.creation_timestamp.timestamp() + parse_duration(config.spec.time_out)


@dataclass
class SessionRestic:
    """restic for one session: the runner, the watch on its backend, and the session's time."""

    restic: Restic
    watch: BackendWatch
    deadline: float | None
    """The session's deadline (``time.time()``), None without a timeOut."""
    lock_deadline: float
    """Until when a live holder of the repository's lock is waited for: shortly before the deadline
    (time to record the outcome), else the settings' bound."""


@dataclass
class HostOutcome:
    """What happened on this host, for events, metrics and the live status."""

    stats: HostBackupStats
    completed_target: bool = False
    session: BackupSession | None = None
    pushes: list[PushOutcome | None] = field(default_factory=list)


class BackupRunner:
    """Runs this host's part of BackupSessions, one at a time."""

    def __init__(self, ctx: AgentContext, metrics: MetricsReporter) -> None:
        """Share the agent's context and metrics reporter."""
        self.ctx = ctx
        self.metrics = metrics
        self.known_repositories: set[str] = set()
        self.hooks = HookRuns(ctx)

    async def run(self, session: BackupSession, config: BackupConfiguration, plan: BackupPlan) -> HostOutcome:
        """Back up this host for ``session``; always records a final host entry unless cancelled."""
        ctx = self.ctx
        ref, hosts, paths = plan.ref, plan.total_hosts, plan.paths
        name = session.metadata.name or ""
        host = ctx.host.name
        started = time.monotonic()
        ctx.live.start(name, "backup")
        await ctx.stash.update_status(
            BackupSession,
            ctx.namespace,
            name,
            lambda s: ss.put_host(
                s,
                ref,
                hosts,
                HostBackupStats(hostname=host, phase=HostBackupPhase.RUNNING, pod=ctx.settings.pod_name),
                now_utc(),
            ),
        )
        log.info(
            "host backup started",
            extra={"session": f"{ctx.namespace}/{name}", "host": host, "paths": paths},
        )
        repo: Repository | None = None
        restic: SessionRestic | None = None
        hooks = HookSet()
        try:
            hooks = backup_hooks(config.spec.hooks)
            repo, restic_repo = await self._prepare(config, paths)
            restic = self._session_restic(session, config, restic_repo)
            await self._ensure_repository(restic, repo, name)
            if hooks.pre is not None:
                await self.hooks.pre(session, ref, hosts, hooks.pre)
            summary = await self._backup(restic, name, ref, hosts, paths, plan.excludes, plan.args)
            stats = ss.host_stats_from_summary(host, paths, summary, time.monotonic() - started)
        except PartialBackup as exc:
            stats = (
                ss.host_stats_from_summary(
                    host,
                    paths,
                    exc.summary,
                    time.monotonic() - started,
                    phase=HostBackupPhase.FAILED,
                    error=exc.message,
                    reason=exc.reason,
                )
                if exc.summary
                else self._failed(host, exc.reason, exc.message, started)
            )
        except ResticError as exc:
            if isinstance(exc, RepositoryNotFound) and restic is not None and restic.restic.repository:
                self.known_repositories.discard(restic.restic.repository.url)
            stats = self._failed(host, exc.reason, exc.message, started)
        except (PreparationError, PreBackupHookFailed, HookSpecError) as exc:
            stats = self._failed(host, exc.reason, exc.message, started)
        except LeaseLost as exc:
            stats = self._failed(host, "LeaseLost", str(exc), started)
        if hooks.post is not None:
            stats = await self.hooks.post(session, ref, hosts, hooks.post, stats)
        stats.pod = ctx.settings.pod_name
        outcome = await self._record(name, ref, hosts, stats)
        outcome.pushes.append(await self.metrics.host_backup(config, ref, stats))
        if (
            outcome.completed_target
            and repo is not None
            and restic is not None
            and (stats.phase == HostBackupPhase.SUCCEEDED)
        ):
            await self._after_target(outcome, config, repo, restic, plan)
        elif outcome.completed_target:
            await self._finalize(name, config, outcome)
        else:
            await self._report_pushes(name, outcome)
        ctx.live.finish(name, str(stats.phase), stats.error or "", stats.duration or "")
        return outcome

    async def _prepare(
        self, config: BackupConfiguration, paths: list[str]
    ) -> tuple[Repository, ResticRepository]:
        """The Repository and restic's view of it; PreparationError when it or the paths are missing."""
        ctx = self.ctx
        repo_ref = config.spec.repository
        if repo_ref is None:
            raise PreparationError(
                f"BackupConfiguration {ctx.object_ref()}: spec.repository is not set",
                reason="RepositoryNotFound",
            )
        found = await ctx.repository(repo_ref.name, repo_ref.namespace)
        if not paths:
            raise PreparationError(
                f"BackupConfiguration {ctx.object_ref()}: spec.target.paths is empty",
                reason="TargetPathsMissing",
            )
        if gone := missing_paths(paths):
            raise PreparationError(
                f"target path(s) {', '.join(gone)} do not exist in "
                f"pod {ctx.settings.pod_name} (check spec.target.volumeMounts)",
                reason="TargetPathNotFound",
            )
        return found

    def _session_restic(
        self, session: BackupSession, config: BackupConfiguration, repository: ResticRepository
    ) -> SessionRestic:
        """restic for ``session``, its backend watched (reports go to the session's status)."""
        settings = self.ctx.restic_for(config.spec)
        name = session.metadata.name or ""

        async def report(state: BackendState) -> None:
            await self._report_backend(name, state)

        watch = BackendWatch(repository.display_url, settings.backend_give_up, report)
        deadline = session_deadline(session, config)
        return SessionRestic(
            restic=Restic(settings, repository, on_backend=watch.notice),
            watch=watch,
            deadline=deadline,
            lock_deadline=deadline - DEADLINE_MARGIN
            if deadline is not None
            else time.time() + settings.lock_wait,
        )

    async def _op(self, restic: SessionRestic, op: Callable[[], Awaitable[T]]) -> T:
        """Run a restic operation of the session: through locks of gone holders, waiting for live
        ones, with the backend watched and given up after the bound (module docstring)."""

        async def judges() -> Judge:
            return await agent_pod_judge(self.ctx)

        return await restic.watch.guard(
            lambda: run_unlocked(restic.restic, judges, op, deadline=restic.lock_deadline),
            deadline=restic.deadline,
            hurry=restic.restic.hurry,
        )

    async def _report_backend(self, session: str, state: BackendState) -> None:
        """The session's ``BackendReachable`` condition (its transition time is when restic's retries
        began, or ended), an event and a log line."""
        reason = ConditionReason.BACKEND_ANSWERS if state.reachable else ConditionReason.BACKEND_UNREACHABLE
        extra = {"session": f"{self.ctx.namespace}/{session}", "backend": state.location}
        if state.reachable:
            log.info("backend answers again", extra=extra)
        else:
            log.warning("backend unreachable, restic retries", extra={**extra, "error": state.error})
        updated = await self.ctx.stash.update_status(
            BackupSession,
            self.ctx.namespace,
            session,
            lambda s: ss.set_condition(
                s, ConditionType.BACKEND_REACHABLE, state.reachable, reason, state.message, state.since
            ),
        )
        await self.ctx.events.record(
            updated.to_dict(), "Normal" if state.reachable else "Warning", reason, state.message
        )

    def _failed(self, host: str, reason: str, message: str, started: float) -> HostBackupStats:
        log.error(
            "host backup failed",
            extra={"invoker": self.ctx.object_ref(), "host": host, "reason": reason, "error": message},
        )
        return HostBackupStats(
            hostname=host,
            phase=HostBackupPhase.FAILED,
            reason=reason,
            error=message,
            duration=format_duration(time.monotonic() - started),
        )

    async def _ensure_repository(self, work: SessionRestic, repo: Repository, session: str) -> None:
        self._check_lease()
        restic = work.restic
        url = restic.repository.url if restic.repository else ""
        if url in self.known_repositories:
            return  # seen this process; if it vanished, restic fails with RepositoryNotFound and we forget it
        if await self._op(work, restic.exists):
            self.known_repositories.add(url)
            return
        repo_name = f"{repo.metadata.namespace}/{repo.metadata.name}"
        if not self.ctx.may_initialize(repo):
            await self._condition(
                session,
                ConditionType.BACKEND_REPOSITORY_INITIALIZED,
                False,
                ConditionReason.FAILED_TO_INITIALIZE_BACKEND_REPOSITORY,
                f"no restic repository at {restic.repository.display_url if restic.repository else '?'}"
                f" and Repository {repo_name} forbids initialising one",
            )
            raise PreparationError(
                f"no restic repository for Repository {repo_name} and "
                "its init-repository annotation is false",
                reason="RepositoryNotFound",
            )
        await self._op(work, restic.init)
        self.known_repositories.add(url)
        log.info("restic repository initialised", extra={"repository": repo_name})
        await self._condition(
            session,
            ConditionType.BACKEND_REPOSITORY_INITIALIZED,
            True,
            ConditionReason.BACKEND_REPOSITORY_FOUND,
            f"initialised restic repository for {repo_name}",
        )

    async def _backup(
        self,
        work: SessionRestic,
        session: str,
        ref: TargetRef,
        hosts: int,
        paths: list[str],
        excludes: list[str],
        extra_args: list[str],
    ) -> rj.BackupSummary:
        ctx = self.ctx
        last_write = 0.0
        pending: set[asyncio.Task[Any]] = set()

        def progress(status: rj.BackupStatus) -> None:
            nonlocal last_write
            ctx.live.progress(status)
            if time.monotonic() - last_write < STATUS_PROGRESS_INTERVAL:
                return
            last_write = time.monotonic()
            log.info(
                "backup progress",
                extra={
                    "session": f"{ctx.namespace}/{session}",
                    "host": ctx.host.name,
                    "percent": round(status.percent_done * 100, 1),
                    "files_done": status.files_done,
                    "bytes_done": status.bytes_done,
                },
            )
            entry = HostBackupStats(
                hostname=ctx.host.name,
                phase=HostBackupPhase.RUNNING,
                pod=ctx.settings.pod_name,
                progress=BackupProgress.model_validate(progress_dict(status)),
            )
            task = asyncio.create_task(
                ctx.stash.update_status(
                    BackupSession,
                    ctx.namespace,
                    session,
                    lambda s: ss.put_host(s, ref, hosts, entry, now_utc()),
                )
            )
            pending.add(task)
            task.add_done_callback(pending.discard)

        self._check_lease()
        try:
            return await self._op(
                work,
                lambda: work.restic.backup(
                    paths, host=ctx.host.name, excludes=excludes, extra_args=extra_args, progress_cb=progress
                ),
            )
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def _check_lease(self) -> None:
        if self.ctx.host.needs_lease and self.ctx.lease is not None:
            self.ctx.lease.ensure_held()

    async def _record(self, session: str, ref: TargetRef, hosts: int, stats: HostBackupStats) -> HostOutcome:
        outcome = HostOutcome(stats=stats)

        def mutate(s: BackupSession) -> None:
            before = ss.target_complete(s, ref)
            # The host that completes the target ends the session itself, after the repository work.
            ss.put_host(s, ref, hosts, stats, now_utc(), finalize=False)
            outcome.completed_target = not before and ss.target_complete(s, ref) and not ss.is_final(s)

        outcome.session = await self.ctx.stash.update_status(
            BackupSession, self.ctx.namespace, session, mutate
        )
        ok = stats.phase == HostBackupPhase.SUCCEEDED
        reason = "Host Backup Succeeded" if ok else "Host Backup Failed"
        message = (
            f"Successfully backed up host {stats.hostname}"
            if ok
            else f"Failed to back up host {stats.hostname}: {stats.error}"
        )
        obj = outcome.session.to_dict() if outcome.session else {}
        await self.ctx.events.record(obj, "Normal" if ok else "Warning", reason, message)
        log.info(
            "host backup recorded",
            extra={
                "session": f"{self.ctx.namespace}/{session}",
                "host": stats.hostname,
                "phase": str(stats.phase),
                "completed_target": outcome.completed_target,
            },
        )
        return outcome

    async def _after_target(
        self,
        outcome: HostOutcome,
        config: BackupConfiguration,
        repo: Repository,
        restic: SessionRestic,
        plan: BackupPlan,
    ) -> None:
        """Retention, integrity check and Repository status, by the host that completed the target."""
        session = (outcome.session.metadata.name if outcome.session else None) or ""
        hosts = ss.retention_hosts(outcome.session, plan.ref, self.ctx.host.name)
        removed, retained = await self._apply_retention(session, config, restic, hosts, plan)
        integrity = await self._verify(session, restic)
        await self._publish_repository(outcome, config, repo, restic, integrity, removed)
        await self._finalize(session, config, outcome, failed=not (retained and integrity))

    async def _apply_retention(
        self,
        session: str,
        config: BackupConfiguration,
        work: SessionRestic,
        hosts: list[str],
        plan: BackupPlan,
    ) -> tuple[int | None, bool]:
        """Forget by the policy, among this target's snapshots only: (snapshots removed, applied)."""
        policy = config.spec.retention_policy
        scope = f"hosts {', '.join(hosts) or '(none)'}, paths {', '.join(plan.paths) or '(none)'}"
        try:
            self._check_lease()
            args = retention_args(policy, plan, hosts)
            result = await self._op(work, lambda: work.restic.forget(args))
        except (ResticError, RetentionError, LeaseLost) as exc:
            log.error(
                "retention policy not applied",
                extra={"invoker": self.ctx.object_ref(), "scope": scope, "error": str(exc)},
            )
            await self._condition(
                session,
                ConditionType.RETENTION_POLICY_APPLIED,
                False,
                exc.reason
                if isinstance(exc, (RepositoryLocked, BackendUnavailable))
                else ConditionReason.FAILED_TO_APPLY_RETENTION_POLICY,
                f"policy {policy.name}: {exc}",
            )
            return None, False
        await self._condition(
            session,
            ConditionType.RETENTION_POLICY_APPLIED,
            True,
            ConditionReason.SUCCESSFULLY_APPLIED_RETENTION_POLICY,
            f"policy {policy.name} on the snapshots of {scope}: kept {len(result.kept)}, "
            f"removed {result.removed_count}" + (" (dry run)" if policy.dry_run else ""),
        )
        return (0 if policy.dry_run else result.removed_count), True

    async def _verify(self, session: str, work: SessionRestic) -> bool | None:
        """``restic check``, recorded as the session's integrity condition; None when it could not run
        (the lock, the backend, the Lease): reported as not run, with the reason why, never as errors."""
        try:
            self._check_lease()
            integrity = await self._op(work, work.restic.check)
        except (ResticError, LeaseLost) as exc:
            reason = exc.reason if isinstance(exc, ResticError) else "LeaseLost"
            log.warning(
                "repository check did not run",
                extra={"session": f"{self.ctx.namespace}/{session}", "reason": reason, "error": str(exc)},
            )
            await self._condition(
                session,
                ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
                False,
                reason,
                f"restic check did not run, the repository's integrity is unchanged: {exc}",
            )
            return None
        await self._condition(
            session,
            ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
            integrity,
            ConditionReason.SUCCESSFULLY_VERIFIED_REPOSITORY_INTEGRITY
            if integrity
            else ConditionReason.FAILED_TO_VERIFY_REPOSITORY_INTEGRITY,
            "restic check found no errors" if integrity else "restic check found errors",
        )
        return integrity

    async def _publish_repository(
        self,
        outcome: HostOutcome,
        config: BackupConfiguration,
        repo: Repository,
        work: SessionRestic,
        integrity: bool | None,
        removed: int | None,
    ) -> None:
        """The Repository's status (over every snapshot in it, whoever made them) and its metrics."""
        repo_ns, repo_name = repo.metadata.namespace or self.ctx.namespace, repo.metadata.name or ""
        try:
            snapshots = await self._op(work, work.restic.snapshots)
            stats = await self._op(work, lambda: work.restic.stats(mode="raw-data"))
        except ResticError as exc:
            log.error(
                "could not read repository stats",
                extra={"repository": f"{repo_ns}/{repo_name}", "error": exc.message},
            )
            return
        new_status = ss.repository_status(snapshots, stats.total_size, integrity, removed)

        def put_repo_status(r: Repository) -> None:
            merged = (r.status.to_dict() if r.status else {}) | new_status.to_dict()
            r.status = RepositoryStatus.from_dict(merged)

        updated = await self.ctx.stash.update_status(Repository, repo_ns, repo_name, put_repo_status)
        self.ctx.live.repository = {
            "name": f"{repo_ns}/{repo_name}",
            **(updated.status.to_dict() if updated.status else {}),
        }
        outcome.pushes.append(await self.metrics.repository(config, updated))

    async def _finalize(
        self, session: str, config: BackupConfiguration, outcome: HostOutcome, *, failed: bool = False
    ) -> None:
        """End the session: its metrics first, so the final status carries MetricsPushed with it."""

        def end(s: BackupSession) -> None:
            if ss.is_final(s):
                return
            ss.recompute(s, now_utc())
            if failed and s.status is not None and s.status.phase == BackupSessionPhase.SUCCEEDED:
                s.status.phase = BackupSessionPhase.FAILED

        preview = await self.ctx.stash.get(BackupSession, self.ctx.namespace, session)
        end(preview)
        outcome.pushes.append(await self.metrics.session(preview, config))
        pushed = merge_outcomes(outcome.pushes)

        def mutate(s: BackupSession) -> None:
            ss.apply_push_condition(s, pushed)
            end(s)

        final = await self.ctx.stash.update_status(BackupSession, self.ctx.namespace, session, mutate)
        await self._push_event(final, pushed)
        log.info(
            "backup session finished",
            extra={
                "session": f"{self.ctx.namespace}/{session}",
                "phase": str(final.status.phase if final.status else None),
            },
        )

    async def _report_pushes(self, session: str, outcome: HostOutcome) -> None:
        """A host that did not end the session reports how its own pushes went."""
        pushed = merge_outcomes(outcome.pushes)
        if pushed is None:
            return
        updated = await self.ctx.stash.update_status(
            BackupSession, self.ctx.namespace, session, lambda s: ss.apply_push_condition(s, pushed)
        )
        await self._push_event(updated, pushed)

    async def _push_event(self, session: BackupSession, pushed: PushOutcome | None) -> None:
        if pushed is not None and not pushed.ok:
            await self.ctx.events.record(session.to_dict(), "Warning", "MetricsPushFailed", pushed.message)

    async def _condition(self, session: str, type_: str, ok: bool, reason: str, message: str) -> None:
        await self.ctx.stash.update_status(
            BackupSession,
            self.ctx.namespace,
            session,
            lambda s: ss.set_condition(s, type_, ok, reason, message, now_utc()),
        )
