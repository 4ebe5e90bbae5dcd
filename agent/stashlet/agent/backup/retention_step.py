"""The target's retention: ``restic forget`` by the configuration's policy, only when it removes something,
and what this agent knows of its retention scope's snapshots (:mod:`stashlet.agent.backup.snapshot_book`).

The host that completes a session's target applies its retention (:meth:`RetentionStep.apply`). Each
target path is its own snapshot group (one ``restic backup`` per path, as Stash runs them), so the scope
is one per path, and so is ``forget`` (restic's ``--path`` filters are all required of a snapshot): for
each path the book says whether the policy, evaluated over the snapshots this agent knows, would remove
one; only then (or when the book cannot be trusted) does that path's ``restic forget`` run, and its
output is learned. Per group this removes what Stash's unscoped ``forget`` removes; the policy's
``prune`` goes with the last ``forget`` of the session (one prune, not one per path). Each backup's
snapshot is learned too (:meth:`RetentionStep.learn_backup`), and the session that created the repository
knows its scope held nothing before (:meth:`RetentionStep.learn_empty`).

A sidecar lives for many sessions and usually starts long before its first: once its watch has listed, it
learns its own scope in the background (:meth:`RetentionStep.warm_up`): one ``restic snapshots --no-lock``
of this host, split per path as ``forget --path`` would select them (the snapshots holding the path).
``--no-lock`` writes no lock, so the listing neither blocks nor waits for any backup, forget, check or prune
of any agent sharing the repository; a listing that misses a concurrent change can only make the next
``forget`` run (a snapshot another process removed still counts as present) or be caught by the book's own
rules (a backup another process made is newer than the Repository's ``lastBackupTime`` allows). The first
session then runs one restic process per path (its backups) when the policy removes nothing. The warm-up
lists nothing, and logs why, when the target has several hosts (the book never trusts a scope of several
hosts), the configuration is paused, or the restic repository does not exist yet (its first backup creates
it and knows the scope is empty); any failure is logged naming the configuration and the Repository and
leaves the book empty, so the first session runs ``forget`` as before. A replica that must hold the
workload's Lease lists only once it holds it (the others never back up). The sidecar cancels the warm-up as
soon as a session is about to run (:class:`~stashlet.agent.backup.daemon.Sidecar`): a session never waits
for it.

A changed configuration needs no new listing: the book's key is the repository URL, the hosts (the
alias) and the paths, so a new Repository, alias or path is a scope the book does not know (its next
session runs ``forget``, which lists it), and a new policy is evaluated over the snapshots known.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.plan import (
    BackupPlan,
    plan_from_config,
    retention_args,
    retention_paths,
    target_paths,
)
from stashlet.agent.backup.session_ops import Condition, SessionRestic, check_lease, guarded
from stashlet.agent.backup.snapshot_book import ScopeKey, SnapshotBook, describes_snapshot, scope_key
from stashlet.agent.context import AgentContext, PreparationError
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.endpoint import probe_for
from stashlet.agent.restic.errors import (
    BackendUnavailable,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
)
from stashlet.agent.restic.forget_policy import KnownSnapshot
from stashlet.agent.restic.retention import RetentionError
from stashlet.agent.restic.runner import Restic
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.kube.errors import KubeError
from stashlet.kube.leases import LeaseLost

log = logging.getLogger(__name__)

BackendReport = Callable[[BackendState], Awaitable[None]]

BOOK_MAX_AGE = 24 * 3600.0
"""Seconds after which what the agent knows of a scope's snapshots is listed again by ``forget``."""


class RetentionStep:
    """The target's retention and the agent's book of its scope (module docstring)."""

    def __init__(self, ctx: AgentContext) -> None:
        """Share the agent's context; the book starts empty."""
        self.ctx = ctx
        self.book = SnapshotBook()

    # --- the scope's keys ----------------------------------------------------------------------

    def own_scope(self, work: SessionRestic, path: str) -> ScopeKey:
        """The book's key of this host's own snapshots of one of the target's paths."""
        return scope_key(_url(work.restic), [self.ctx.host.name], retention_paths([path]))

    def scopes(self, work: SessionRestic, session: BackupSession | None, plan: BackupPlan) -> list[ScopeKey]:
        """The book's keys of the target's retention scope, one per path: the repository, the hosts, the
        path."""
        hosts = ss.retention_hosts(session, plan.ref, self.ctx.host.name)
        return [scope_key(_url(work.restic), hosts, [path]) for path in target_paths(plan)]

    # --- what sessions teach the book ----------------------------------------------------------

    def learn_empty(self, work: SessionRestic, plan: BackupPlan) -> None:
        """The session created the repository: this host's scope holds nothing yet, for any path."""
        for path in target_paths(plan):
            self.book.learn_empty(self.own_scope(work, path))

    def learn_backup(
        self, work: SessionRestic, plan: BackupPlan, path: str, summary: rj.BackupSummary
    ) -> KnownSnapshot | None:
        """Tell the book of the snapshot the backup of ``path`` wrote (in the scope of this host alone)."""
        snapshot = None
        if summary.snapshot_id and summary.backup_start is not None and describes_snapshot(plan.args):
            snapshot = KnownSnapshot(
                summary.snapshot_id, summary.backup_start, self.ctx.host.name, tuple(retention_paths([path]))
            )
        self.book.learn_backup(self.own_scope(work, path), snapshot)
        return snapshot

    def known(
        self, work: SessionRestic, session: BackupSession | None, plan: BackupPlan
    ) -> list[KnownSnapshot]:
        """The snapshots known in the target's retention scope (every path's, each once)."""
        found = {s.id: s for key in self.scopes(work, session, plan) for s in self.book.snapshots(key)}
        return list(found.values())

    # --- the session's retention ---------------------------------------------------------------

    async def apply(
        self,
        session: BackupSession | None,
        config: BackupConfiguration,
        repo: Repository,
        work: SessionRestic,
        plan: BackupPlan,
    ) -> tuple[int | None, Condition]:
        """Forget by the policy, among this target's snapshots only: (snapshots removed, None when the
        policy could not be applied; the session's ``RetentionPolicyApplied`` condition).

        One ``restic forget`` per path (each path is its own snapshot group), and only for the paths whose
        book cannot tell that it would remove nothing; the last of them prunes (with the policy's
        ``prune``), or, when it removed nothing but an earlier one did, one ``restic prune`` follows."""
        ctx = self.ctx
        policy = config.spec.retention_policy
        hosts = ss.retention_hosts(session, plan.ref, ctx.host.name)
        paths = target_paths(plan)
        scope = f"hosts {', '.join(hosts) or '(none)'}, paths {', '.join(paths) or '(none)'}"
        keys = dict(zip(paths, self.scopes(work, session, plan), strict=True))
        last_backup = repo.status.last_backup_time if repo.status else None
        kept = removed = 0
        try:
            check_lease(ctx)
            for path in paths:  # a policy restic would refuse is refused before any forget runs
                retention_args(policy, path, hosts)
            why: dict[str, str] = {}
            for path, key in keys.items():
                reason = self.book.why_forget(
                    key, policy, max_age=BOOK_MAX_AGE, repository_last_backup=last_backup
                )
                if reason is None:
                    kept += len(self.book.snapshots(key))
                else:
                    why[path] = reason
            if not why:
                log.info(
                    "retention policy removes nothing; restic forget not run",
                    extra={"invoker": ctx.object_ref(), "scope": scope, "known_snapshots": kept},
                )
                return 0, Condition(
                    ConditionType.RETENTION_POLICY_APPLIED,
                    True,
                    ConditionReason.SUCCESSFULLY_APPLIED_RETENTION_POLICY,
                    f"policy {policy.name} on the snapshots of {scope}: kept {kept}, removed 0 "
                    "(restic forget not run: the policy removes none of the snapshots this agent knows)",
                )
            removed_before_last = 0
            for number, (path, reason) in enumerate(why.items(), start=1):
                last = number == len(why)
                args = retention_args(policy, path, hosts, prune=bool(policy.prune) and last)
                log.info(
                    "running restic forget", extra={"invoker": ctx.object_ref(), "path": path, "why": reason}
                )
                result = await guarded(ctx, work, functools.partial(work.restic.forget, args))
                self.book.learn_forget(keys[path], result, dry_run=bool(policy.dry_run))
                kept += len(result.kept)
                removed += result.removed_count
                if not last:
                    removed_before_last += result.removed_count
                elif policy.prune and not policy.dry_run and removed_before_last and not result.removed_count:
                    log.info("running restic prune", extra={"invoker": ctx.object_ref(), "scope": scope})
                    await guarded(ctx, work, work.restic.prune)
        except (ResticError, RetentionError, LeaseLost) as exc:
            for key in keys.values():
                self.book.drop(key)
            log.error(
                "retention policy not applied",
                extra={"invoker": ctx.object_ref(), "scope": scope, "error": str(exc)},
            )
            return None, Condition(
                ConditionType.RETENTION_POLICY_APPLIED,
                False,
                exc.reason
                if isinstance(exc, (RepositoryLocked, BackendUnavailable))
                else ConditionReason.FAILED_TO_APPLY_RETENTION_POLICY,
                f"policy {policy.name}: {exc}",
            )
        return (0 if policy.dry_run else removed), Condition(
            ConditionType.RETENTION_POLICY_APPLIED,
            True,
            ConditionReason.SUCCESSFULLY_APPLIED_RETENTION_POLICY,
            f"policy {policy.name} on the snapshots of {scope}: kept {kept}, "
            f"removed {removed}" + (" (dry run)" if policy.dry_run else ""),
        )

    # --- the sidecar's warm-up -----------------------------------------------------------------

    async def warm_up(self) -> None:
        """Learn this host's retention scope before the first session (module docstring); never raises
        but for its cancellation."""
        ctx = self.ctx
        invoker = f"BackupConfiguration {ctx.object_ref()}"
        try:
            config = await ctx.stash.get(BackupConfiguration, ctx.namespace, ctx.settings.invoker_name)
            plan = plan_from_config(config, await ctx.read_workload())
        except (KubeError, PreparationError) as exc:
            _not_listed(invoker, "", f"cannot read what to list: {exc}")
            return
        repo_ref = config.spec.repository
        repository = f"Repository {repo_ref.namespace or ctx.namespace}/{repo_ref.name}" if repo_ref else ""
        if config.spec.paused:
            _not_listed(invoker, repository, "the configuration is paused")
            return
        if plan.total_hosts != 1 or repo_ref is None:
            why = "spec.repository is not set" if repo_ref is None else "the target has several hosts"
            _not_listed(invoker, repository, why)
            return
        if ctx.host.needs_lease and ctx.lease is not None and not ctx.lease.held:
            await ctx.lease.wait_held()  # only the holder backs up (cancelled with the process)
        began = time.monotonic()
        try:
            repo, restic_repo = await ctx.repository(repo_ref.name, repo_ref.namespace)
            settings = ctx.restic_for(config.spec)
            watch = BackendWatch(
                restic_repo.display_url,
                settings.backend_give_up,
                _log_backend(invoker),
                probe=probe_for(restic_repo, settings.base_env),
            )
            restic = Restic(settings, restic_repo, on_backend=watch.notice)
            listed = await watch.guard(
                lambda: restic.snapshots(host=ctx.host.name, no_lock=True),
                hurry=restic.hurry,
            )
        except RepositoryNotFound:
            _not_listed(
                invoker, repository, "the restic repository does not exist yet (its first backup creates it)"
            )
            return
        except (KubeError, PreparationError, ResticError) as exc:
            _not_listed(invoker, repository, str(exc), failed=True)
            return
        for path in target_paths(plan):  # the snapshots ``--path=<path>`` selects: those holding it
            key = scope_key(restic_repo.url, [ctx.host.name], [path])
            if not self.book.learn_listing(key, [s for s in listed if path in s.paths]):
                _not_listed(invoker, repository, "a snapshot in the listing has no ID or time", failed=True)
                return
        log.info(
            "retention scope listed",
            extra={
                "invoker": invoker,
                "repository": f"{repo.metadata.namespace}/{repo.metadata.name}",
                "host": ctx.host.name,
                "paths": plan.paths,
                "snapshots": len(listed),
                "seconds": round(time.monotonic() - began, 4),
                "restic_seconds": round(restic.seconds, 4),
            },
        )


def _url(restic: Restic) -> str:
    return restic.repository.url if restic.repository else ""


def _not_listed(invoker: str, repository: str, why: str, *, failed: bool = False) -> None:
    """The warm-up's line when it learned nothing: the first session runs ``forget``."""
    (log.warning if failed else log.info)(
        "retention scope not listed",
        extra={"invoker": invoker, "repository": repository, "why": why},
    )


def _log_backend(invoker: str) -> BackendReport:
    async def report(state: BackendState) -> None:
        log.warning(
            "backend unreachable while listing the retention scope, restic retries"
            if not state.reachable
            else "backend answers again while listing the retention scope",
            extra={"invoker": invoker, "backend": state.location, "error": state.error},
        )

    return report
