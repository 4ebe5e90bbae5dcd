"""One host's part of one BackupSession.

The session path costs what its restic work costs: one restic process per target path in the common
case. The host backs up each of the target's paths with its own ``restic backup``, in order, as Stash
does (one snapshot per path, of this host: each path is its own restic group, so its parent is the last
snapshot of that host and path, Stash's included; the host's entry lists one snapshot per path). The
first starts straight away: a missing repository makes restic exit 10, and only then is it initialised,
when the Repository allows it, and the backup run again. A path restic could not read in full (exit 3)
still gets its snapshot and the next paths are backed up, the host ending Failed (``PartialBackup``);
any other failure ends the host's backup there, its entry keeping the snapshots already written. The
host records its entry; the host that completes the target applies retention (``restic forget``, per
path, only when the policy, evaluated over the snapshots this agent knows, would remove something, or
what it knows cannot be trusted: see :mod:`stashlet.agent.backup.retention_step`) and ends the session.

After the session has reported (its final phase written), the same host keeps the Repository up to
date (:meth:`BackupRunner.upkeep`, outside the session's time, still before the next session's
restic): ``restic check`` when it is due (:mod:`stashlet.agent.backup.check_cadence`), then one
``restic stats`` for the Repository's size and snapshot count, its status and its metrics.

A backup is never retried in place: a failure is recorded with its reason and the next session runs
anew. Nothing here deletes a snapshot except ``restic forget`` with the configuration's own policy.

Every restic operation of a session runs guarded (:func:`~stashlet.agent.backup.session_ops.guarded`:
stale locks, live holders, an unreachable backend). A check that could not run is reported as not run,
and leaves the Repository's integrity as the last real check left it.

When a host is done with a session it logs ``backup session host finished`` with the session's
seconds, the seconds and number of its restic processes, its own seconds beyond them and the largest
resident size of any restic so far (the figures the benchmark reads).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.check_cadence import CheckSettings, CheckSettingsRefused, check_due, check_settings
from stashlet.agent.backup.hook_runs import HookRuns, PreBackupHookFailed
from stashlet.agent.backup.plan import BackupPlan, target_paths
from stashlet.agent.backup.retention_step import RetentionStep
from stashlet.agent.backup.session_ops import (
    Condition,
    SessionRestic,
    check_lease,
    guarded,
    push_event,
    report_pushes,
    set_condition,
)
from stashlet.agent.backup.upkeep import RepositoryUpkeep, Upkeep
from stashlet.agent.context import AgentContext, PreparationError, missing_paths
from stashlet.agent.hooks import HookSet, HookSpecError, backup_hooks
from stashlet.agent.live import progress_dict
from stashlet.agent.metrics.report import MetricsReporter, PushOutcome, merge_outcomes
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import ResticRepository
from stashlet.agent.restic.backend_watch import DEADLINE_MARGIN, BackendState, BackendWatch
from stashlet.agent.restic.endpoint import probe_for
from stashlet.agent.restic.errors import (
    PartialBackup,
    RepositoryNotFound,
    ResticError,
)
from stashlet.agent.restic.forget_policy import KnownSnapshot
from stashlet.agent.restic.runner import Restic
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
from stashlet.api.names import ANNOTATION_CHECK_INTERVAL
from stashlet.api.repository import Repository
from stashlet.api.timestamps import now_utc
from stashlet.kube.errors import KubeError
from stashlet.kube.leases import LeaseLost

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_PROGRESS_INTERVAL = 5.0
"""Seconds between progress writes into the BackupSession status (the API server is no log)."""

REASON_CHECK_NOT_DUE = "CheckNotDue"


def session_deadline(session: BackupSession, config: BackupConfiguration) -> float | None:
    """When the session must be over (a ``time.time()``): its creation plus ``spec.timeOut``; None
    without a timeOut."""
    if not config.spec.time_out or session.metadata.creation_timestamp is None:
        return None
    return session.metadata.creation_timestamp.timestamp() + parse_duration(config.spec.time_out)


@dataclass
class HostOutcome:
    """What happened on this host, for events, metrics and the live status."""

    stats: HostBackupStats
    completed_target: bool = False
    session: BackupSession | None = None
    pushes: list[PushOutcome | None] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    """Conditions the session's final write sets (one write, not one each)."""


@dataclass
class _HostWork:
    """What preparing and backing up learned, for recording and the work after the session."""

    hooks: HookSet = field(default_factory=HookSet)
    repo: Repository | None = None
    restic: SessionRestic | None = None
    check: CheckSettings | None = None
    snapshot: KnownSnapshot | None = None
    conditions: list[Condition] = field(default_factory=list)


class BackupRunner:
    """Runs this host's part of BackupSessions, one at a time."""

    def __init__(self, ctx: AgentContext, metrics: MetricsReporter) -> None:
        """Share the agent's context and metrics reporter."""
        self.ctx = ctx
        self.metrics = metrics
        self.hooks = HookRuns(ctx)
        self.retention = RetentionStep(ctx)
        self.repository_upkeep = RepositoryUpkeep(ctx, metrics)
        self._upkeep: Upkeep | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def run(
        self,
        session: BackupSession,
        config: BackupConfiguration,
        plan: BackupPlan,
        *,
        picked_up: float | None = None,
        upkeep: bool = True,
    ) -> HostOutcome:
        """Back up this host for ``session``; always records a final host entry unless cancelled.

        ``picked_up`` (``time.monotonic()``) is when the agent took the session up (default: now), for
        the session's seconds. With ``upkeep`` False the Repository's work after the session is left
        for the caller's :meth:`upkeep` (the sidecar runs it outside the session's deadline).
        """
        ctx = self.ctx
        ref, hosts, paths = plan.ref, plan.total_hosts, plan.paths
        name = session.metadata.name or ""
        host = ctx.host.name
        started = time.monotonic() if picked_up is None else picked_up
        ctx.live.start(name, "backup")
        # "Running" is written while restic starts, not before: restic waits for no API call.
        running = asyncio.create_task(
            ctx.stash.update_status(
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
            ),
            name="host-running",
        )
        log.info(
            "host backup started",
            extra={"session": f"{ctx.namespace}/{name}", "host": host, "paths": paths},
        )
        work = _HostWork()
        try:
            stats = await self._back_up(session, config, plan, work, running, started)
        finally:
            await _settle(running)
        hooks, repo, restic, check = work.hooks, work.repo, work.restic, work.check
        if hooks.post is not None:
            stats = await self.hooks.post(session, ref, hosts, hooks.post, stats)
        stats.pod = ctx.settings.pod_name
        outcome = await self._record(name, ref, hosts, stats)
        outcome.conditions += work.conditions
        outcome.pushes.append(await self.metrics.host_backup(config, ref, stats))
        if (
            outcome.completed_target
            and repo is not None
            and restic is not None
            and (stats.phase == HostBackupPhase.SUCCEEDED)
        ):
            removed, applied = await self.retention.apply(outcome.session, config, repo, restic, plan)
            outcome.conditions.append(applied)
            due = check is not None and check_due(check, _last_check(repo), now_utc())
            if check is not None and not due:
                outcome.conditions.append(_not_due(check, repo))
            await self._finalize(name, config, outcome, failed=removed is None)
            scope = self.retention.known(restic, outcome.session, plan)
            self._upkeep = Upkeep(
                name, config, repo, restic, check if due else None, removed, work.snapshot, scope
            )
        elif outcome.completed_target:
            await self._finalize(name, config, outcome)
        else:
            await report_pushes(self.ctx, name, merge_outcomes(outcome.pushes))
        ctx.live.finish(name, str(stats.phase), stats.error or "", stats.duration or "")
        self._log_finished(name, started, restic)
        if upkeep:
            await self.upkeep()
        return outcome

    # --- the session path ----------------------------------------------------------------------

    async def _back_up(
        self,
        session: BackupSession,
        config: BackupConfiguration,
        plan: BackupPlan,
        work: _HostWork,
        running: asyncio.Task[Any],
        started: float,
    ) -> HostBackupStats:
        """Prepare and back up; the host's final entry (Failed with the reason when something failed)."""
        host, name = self.ctx.host.name, session.metadata.name or ""
        done: list[tuple[str, rj.BackupSummary]] = []
        try:
            work.hooks = backup_hooks(config.spec.hooks)
            work.repo, restic_repo = await self._prepare(config, plan.paths)
            work.check = self._check_settings(work.repo, work.conditions)
            work.restic = self._session_restic(session, config, restic_repo)
            if work.hooks.pre is not None:
                await running
                await self.hooks.pre(session, plan.ref, plan.total_hosts, work.hooks.pre)
            partial: PartialBackup | None = None
            for path in target_paths(plan):
                try:
                    summary = await self._backup_or_init(work.restic, work.repo, name, plan, path)
                except PartialBackup as exc:
                    if exc.summary is None:
                        raise
                    partial, summary = partial or exc, exc.summary
                done.append((path, summary))
                wrote = self.retention.learn_backup(work.restic, plan, path, summary)
                work.snapshot = _newest(work.snapshot, wrote)
            if partial is None:
                return ss.host_stats_from_summaries(host, done, time.monotonic() - started)
            return ss.host_stats_from_summaries(
                host,
                done,
                time.monotonic() - started,
                phase=HostBackupPhase.FAILED,
                error=partial.message,
                reason=partial.reason,
            )
        except ResticError as exc:
            return self._failed(host, exc.reason, exc.message, started, done)
        except (PreparationError, PreBackupHookFailed, HookSpecError) as exc:
            return self._failed(host, exc.reason, exc.message, started, done)
        except LeaseLost as exc:
            return self._failed(host, "LeaseLost", str(exc), started, done)

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

    def _check_settings(self, repo: Repository, conditions: list[Condition]) -> CheckSettings | None:
        """The Repository's check settings; a refused one is logged, set on the session (with the
        session's final write) and recorded as a Warning event on the Repository; None then."""
        try:
            return check_settings(repo)
        except CheckSettingsRefused as exc:
            log.error(
                "repository check settings refused",
                extra={
                    "repository": f"{repo.metadata.namespace}/{repo.metadata.name}",
                    "error": exc.message,
                },
            )
            conditions.append(
                Condition(
                    ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
                    False,
                    exc.reason,
                    f"restic check did not run, the repository's integrity is unchanged: {exc.message}",
                )
            )
            self._later(self.ctx.events.record(repo.to_dict(), "Warning", exc.reason, exc.message))
            return None

    def _session_restic(
        self, session: BackupSession, config: BackupConfiguration, repository: ResticRepository
    ) -> SessionRestic:
        """restic for ``session``, its backend watched (reports go to the session's status)."""
        settings = self.ctx.restic_for(config.spec)
        name = session.metadata.name or ""

        async def report(state: BackendState) -> None:
            await self._report_backend(name, state)

        probe = probe_for(repository, settings.base_env)
        watch = BackendWatch(repository.display_url, settings.backend_give_up, report, probe=probe)
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
        return await guarded(self.ctx, restic, op)

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

    def _failed(
        self,
        host: str,
        reason: str,
        message: str,
        started: float,
        done: list[tuple[str, rj.BackupSummary]] | None = None,
    ) -> HostBackupStats:
        """The host's Failed entry; the snapshots of the paths ``done`` before the failure are in it."""
        log.error(
            "host backup failed",
            extra={"invoker": self.ctx.object_ref(), "host": host, "reason": reason, "error": message},
        )
        return ss.host_stats_from_summaries(
            host,
            done or [],
            time.monotonic() - started,
            phase=HostBackupPhase.FAILED,
            error=message,
            reason=reason,
        )

    async def _backup_or_init(
        self,
        work: SessionRestic,
        repo: Repository,
        session: str,
        plan: BackupPlan,
        path: str,
    ) -> rj.BackupSummary:
        """``restic backup`` of ``path``; when restic finds no repository (exit 10: only the first path
        can), initialise it (if the Repository allows) and back up again: the first session pays for the
        repository, no other."""
        try:
            return await self._backup(work, session, plan, path)
        except RepositoryNotFound:
            await self._initialize(work, repo, session)
        self.retention.learn_empty(work, plan)
        return await self._backup(work, session, plan, path)

    async def _initialize(self, work: SessionRestic, repo: Repository, session: str) -> None:
        self._check_lease()
        restic = work.restic
        location = restic.repository.display_url if restic.repository else "?"
        repo_name = f"{repo.metadata.namespace}/{repo.metadata.name}"
        if not self.ctx.may_initialize(repo):
            await self._condition(
                session,
                ConditionType.BACKEND_REPOSITORY_INITIALIZED,
                False,
                ConditionReason.FAILED_TO_INITIALIZE_BACKEND_REPOSITORY,
                f"no restic repository at {location} and Repository {repo_name} forbids initialising one",
            )
            raise PreparationError(
                f"no restic repository for Repository {repo_name} and "
                "its init-repository annotation is false",
                reason="RepositoryNotFound",
            )
        await self._op(work, restic.init)
        log.info("restic repository initialised", extra={"repository": repo_name})
        await self._condition(
            session,
            ConditionType.BACKEND_REPOSITORY_INITIALIZED,
            True,
            ConditionReason.BACKEND_REPOSITORY_FOUND,
            f"initialised restic repository for {repo_name}",
        )

    async def _backup(
        self, work: SessionRestic, session: str, plan: BackupPlan, path: str
    ) -> rj.BackupSummary:
        """One ``restic backup`` of one of the target's paths: one snapshot (host, path), as Stash's."""
        ctx = self.ctx
        ref, hosts = plan.ref, plan.total_hosts
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
                    "path": path,
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
                    [path],
                    host=ctx.host.name,
                    excludes=plan.excludes,
                    extra_args=plan.args,
                    progress_cb=progress,
                ),
            )
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def _check_lease(self) -> None:
        check_lease(self.ctx)

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
        self._later(self.ctx.events.record(obj, "Normal" if ok else "Warning", reason, message))
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

    async def _finalize(
        self, session: str, config: BackupConfiguration, outcome: HostOutcome, *, failed: bool = False
    ) -> None:
        """End the session: its metrics first, so the final status carries MetricsPushed with it, and
        the conditions gathered on the way, in one write."""
        now = now_utc()

        def end(s: BackupSession) -> None:
            if ss.is_final(s):
                return
            ss.recompute(s, now_utc())
            if failed and s.status is not None and s.status.phase == BackupSessionPhase.SUCCEEDED:
                s.status.phase = BackupSessionPhase.FAILED

        preview = (
            outcome.session.model_copy(deep=True)
            if outcome.session is not None
            else await self.ctx.stash.get(BackupSession, self.ctx.namespace, session)
        )
        end(preview)
        outcome.pushes.append(await self.metrics.session(preview, config))
        pushed = merge_outcomes(outcome.pushes)

        def mutate(s: BackupSession) -> None:
            for c in outcome.conditions:
                ss.set_condition(s, c.type, c.ok, c.reason, c.message, now)
            ss.apply_push_condition(s, pushed)
            end(s)

        final = await self.ctx.stash.update_status(BackupSession, self.ctx.namespace, session, mutate)
        if pushed is not None and not pushed.ok:
            self._later(push_event(self.ctx, final, pushed))
        log.info(
            "backup session finished",
            extra={
                "session": f"{self.ctx.namespace}/{session}",
                "phase": str(final.status.phase if final.status else None),
            },
        )

    async def _condition(self, session: str, type_: str, ok: bool, reason: str, message: str) -> None:
        await set_condition(self.ctx, session, type_, ok, reason, message)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (an event) beside the session; :meth:`upkeep` waits for it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def upkeep(self) -> None:
        """The Repository's work the last session left (:mod:`stashlet.agent.backup.upkeep`), then the
        events the session recorded on the way."""
        work, self._upkeep = self._upkeep, None
        try:
            if work is not None:
                await self.repository_upkeep.run(work)
        finally:
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)

    def _log_finished(self, session: str, started: float, restic: SessionRestic | None) -> None:
        seconds = time.monotonic() - started
        restic_seconds = restic.restic.seconds if restic is not None else 0.0
        log.info(
            "backup session host finished",
            extra={
                "session": f"{self.ctx.namespace}/{session}",
                "host": self.ctx.host.name,
                "session_seconds": round(seconds, 4),
                "restic_seconds": round(restic_seconds, 4),
                "restic_processes": restic.restic.processes if restic is not None else 0,
                "own_seconds": round(seconds - restic_seconds, 4),
                "restic_max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            },
        )


def _newest(known: KnownSnapshot | None, new: KnownSnapshot | None) -> KnownSnapshot | None:
    """The newer of two snapshots a session wrote (either may be unknown)."""
    if known is None or (new is not None and new.time >= known.time):
        return new
    return known


def _last_check(repo: Repository) -> dt.datetime | None:
    return repo.status.last_check_time if repo.status else None


def _not_due(check: CheckSettings, repo: Repository) -> Condition:
    """The session's integrity condition when no check is due: the last check's verdict, and when."""
    integrity = bool(repo.status.integrity) if repo.status else False
    last = _last_check(repo)
    return Condition(
        ConditionType.REPOSITORY_INTEGRITY_VERIFIED,
        integrity,
        REASON_CHECK_NOT_DUE,
        f"restic check not due: it last ran at {last.isoformat() if last else '?'} "
        f"(integrity {str(integrity).lower()}); the next runs {format_duration(check.interval)} after it "
        f"(annotation {ANNOTATION_CHECK_INTERVAL} of Repository "
        f"{repo.metadata.namespace}/{repo.metadata.name})",
    )


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait for ``task``; a failure of its own is logged (the final write that follows supersedes it)."""
    try:
        await task
    except (KubeError, OSError) as exc:
        log.warning("could not mark the host running", extra={"error": str(exc)})
