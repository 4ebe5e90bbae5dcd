"""What the session path and the work after it share: restic for one session, run guarded, and the
session's own status writes (a condition, a metrics-push outcome).

Every restic operation of a session runs guarded (:func:`guarded`): a lock whose holders are all gone is
removed, a live holder is waited for until the session's deadline (:mod:`stashlet.agent.stale_locks`),
and a backend restic keeps retrying is reported on the session (condition ``BackendReachable``, an
event, a log line) and given up after the bound (:mod:`stashlet.agent.restic.backend_watch`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from stashlet.agent.backup import status as ss
from stashlet.agent.context import AgentContext
from stashlet.agent.metrics.report import PushOutcome
from stashlet.agent.restic.backend_watch import BackendWatch
from stashlet.agent.restic.runner import Restic
from stashlet.agent.stale_locks import Judge, agent_pod_judge, run_unlocked
from stashlet.api.backupsession import BackupSession
from stashlet.api.timestamps import now_utc

T = TypeVar("T")


@dataclass(frozen=True)
class Condition:
    """A session condition to set (with the session's final write)."""

    type: str
    ok: bool
    reason: str
    message: str


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


async def guarded(ctx: AgentContext, work: SessionRestic, op: Callable[[], Awaitable[T]]) -> T:
    """Run a restic operation of the session: through locks of gone holders, waiting for live ones, with
    the backend watched and given up after the bound (module docstring)."""

    async def judges() -> Judge:
        return await agent_pod_judge(ctx)

    return await work.watch.guard(
        lambda: run_unlocked(work.restic, judges, op, deadline=work.lock_deadline),
        deadline=work.deadline,
        hurry=work.restic.hurry,
    )


def check_lease(ctx: AgentContext) -> None:
    """LeaseLost when this host must hold the workload's Lease and no longer does."""
    if ctx.host.needs_lease and ctx.lease is not None:
        ctx.lease.ensure_held()


async def set_condition(
    ctx: AgentContext, session: str, type_: str, ok: bool, reason: str, message: str
) -> None:
    """Set a condition on BackupSession ``session``."""
    await ctx.stash.update_status(
        BackupSession,
        ctx.namespace,
        session,
        lambda s: ss.set_condition(s, type_, ok, reason, message, now_utc()),
    )


async def push_event(ctx: AgentContext, session: BackupSession, pushed: PushOutcome | None) -> None:
    """A Warning event on the session when a metrics push failed."""
    if pushed is not None and not pushed.ok:
        await ctx.events.record(session.to_dict(), "Warning", "MetricsPushFailed", pushed.message)


async def report_pushes(ctx: AgentContext, session: str, pushed: PushOutcome | None) -> None:
    """The session's ``MetricsPushed`` condition (and an event when a push failed)."""
    if pushed is None:
        return
    updated = await ctx.stash.update_status(
        BackupSession, ctx.namespace, session, lambda s: ss.apply_push_condition(s, pushed)
    )
    await push_event(ctx, updated, pushed)
