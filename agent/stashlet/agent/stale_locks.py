"""A locked repository: remove the locks only when every holder is provably gone, else wait for them.

restic writes the OS host name of the process (in a pod: the pod's name, not restic's ``--host``), its
PID and the time of its last refresh into each lock. Plain ``restic unlock`` keeps a lock from another
host name until it is 30 minutes old, so after a pod is lost mid-backup the next sessions would fail
for half an hour. Instead every lock is read and judged (:func:`agent_pod_judge`):

- a lock past restic's staleness (no refresh for 30 minutes) is gone;
- a lock of this pod (its host name) whose process no longer runs is gone;
- a lock of a pod that ran a stashlet agent here (named in a BackupSession's host entry, of the sessions
  listed now or of those this agent has seen: :func:`remember_agent_pods`) and no longer exists in the
  namespace is gone;
- any other lock is live: a running pod, a pod we cannot check, or a host that is no pod of ours
  (a person's restic, another namespace): it is never removed before restic's own staleness.

Only when every lock is gone does ``restic unlock --remove-all`` run, and only after the locks are read
again and found unchanged (a new live lock may have appeared meanwhile). While a live holder remains,
:func:`run_unlocked` waits for it (polling with back-off) until the session's deadline, then fails with
RepositoryLocked naming the holders and their locks' age.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.errors import ExitCode, RepositoryLocked, ResticError
from stashlet.agent.restic.runner import Restic
from stashlet.api.backupsession import BackupSession
from stashlet.kube import paths
from stashlet.kube.errors import KubeError, NotFound

if TYPE_CHECKING:
    from stashlet.agent.context import AgentContext

log = logging.getLogger(__name__)

T = TypeVar("T")

STALE_AFTER = dt.timedelta(minutes=30)
"""restic refreshes its locks every 5 minutes and treats one untouched for 30 minutes as stale."""
POLL_FIRST = 2.0
POLL_MAX = 30.0
"""Seconds between looks at a lock held by a live holder: doubling from the first to the most."""
READINGS = 3
"""How often the locks are judged anew when they change between two readings."""
HOSTNAME_MAX = 63
"""A pod's host name is its name cut to 63 characters."""
REMEMBERED_PODS = 256
"""How many pods named by the sessions it has seen an agent remembers (the newest)."""

Judge = Callable[[rj.Lock], Awaitable[str | None]]
"""Why a lock's holder is gone (a phrase for logs and messages), or None while it may be alive."""


@dataclass(frozen=True)
class Holder:
    """A lock of the repository and the judge's verdict on its holder."""

    lock: rj.Lock
    gone: str | None

    def describe(self, now: dt.datetime) -> str:
        """``PID 7 on pod-a (exclusive lock, 42s old)``."""
        lock = self.lock
        kind = "exclusive" if lock.exclusive else "shared"
        age = f", {_age(now - lock.time)} old" if lock.time is not None else ""
        return f"PID {lock.pid} on {lock.hostname} ({kind} lock {lock.id[:8]}{age})"


def _age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def stale(lock: rj.Lock, now: dt.datetime) -> str | None:
    """Gone by restic's own rule: not refreshed for :data:`STALE_AFTER`."""
    if lock.time is not None and now - lock.time > STALE_AFTER:
        return f"not refreshed for {_age(now - lock.time)}"
    return None


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs in this PID namespace (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_dead_process(lock: rj.Lock, hostname: str) -> str | None:
    """Gone when the lock is this pod's (host name) and its process no longer runs."""
    if lock.hostname == hostname and not process_alive(lock.pid):
        return f"its process {lock.pid} on this pod ({hostname}) no longer runs"
    return None


async def read_holders(restic: Restic, judge: Judge) -> list[Holder]:
    """Every lock of the repository with its verdict (a lock removed meanwhile is left out)."""
    holders: list[Holder] = []
    for lock_id in await restic.list_locks():
        try:
            lock = await restic.read_lock(lock_id)
        except ResticError:
            continue  # removed meanwhile
        holders.append(Holder(lock, await judge(lock)))
    return holders


async def clear_if_all_gone(restic: Restic, judge: Judge) -> list[Holder]:
    """Remove every lock when every holder is gone; the live holders otherwise (empty: go ahead).

    The locks are read twice: ``unlock --remove-all`` runs only when the second reading finds the very
    locks the first one judged, so a lock taken in between by a live holder is never removed.
    """
    for _ in range(READINGS):
        holders = await read_holders(restic, judge)
        live = [h for h in holders if h.gone is None]
        if live or not holders:
            return live
        if set(await restic.list_locks()) == {h.lock.id for h in holders}:
            break
        log.info("the repository's locks changed while being judged; judging again")
    else:
        return holders  # the locks keep changing: someone is at work, so nothing is removed
    await restic.unlock_all()
    now = dt.datetime.now(dt.UTC)
    log.warning(
        "removed the locks of holders that are gone",
        extra={
            "repository": restic.repository.display_url if restic.repository else None,
            "locks": [f"{h.describe(now)}: {h.gone}" for h in holders],
        },
    )
    return []


async def run_unlocked(
    restic: Restic,
    judges: Callable[[], Awaitable[Judge]],
    op: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``op``; while restic finds the repository locked, clear the locks of gone holders (judged by
    a fresh judge from ``judges`` each time) or wait for live ones (back-off from :data:`POLL_FIRST`
    to :data:`POLL_MAX` seconds) until ``deadline`` (a ``time.time()``). Past it, RepositoryLocked
    names the holders and their locks' age."""
    delay = POLL_FIRST
    started = time.time()
    while True:
        try:
            return await op()
        except RepositoryLocked as exc:
            try:
                live = await clear_if_all_gone(restic, await judges())
            except ResticError as reading:
                log.warning("cannot read the repository's locks", extra={"error": reading.message})
                raise exc from reading
            if not live:
                continue
            now = dt.datetime.now(dt.UTC)
            held_by = "; ".join(h.describe(now) for h in live)
            remaining = deadline - time.time()
            if remaining <= 0:
                waited = f" (waited {int(time.time() - started)}s)" if time.time() - started >= 1 else ""
                raise RepositoryLocked(
                    f"the repository is locked by a holder that still runs: {held_by}{waited}",
                    exit_code=ExitCode.LOCK_FAILED,
                ) from exc
            log.info(
                "waiting for the repository's lock",
                extra={"holders": held_by, "retry_in": round(min(delay, remaining), 1)},
            )
            await sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)


async def pod_exists(ctx: AgentContext, name: str) -> bool | None:
    """True/False when we can tell; None when we cannot (no right to read pods, API error)."""
    try:
        await ctx.api.send("GET", paths.core("pods", ctx.namespace, name))
    except NotFound:
        return False
    except KubeError:
        return None
    return True


def session_pods(session: Mapping[str, Any]) -> list[str]:
    """The pods a BackupSession (its wire form) names in its host entries: those that ran an agent."""
    return [
        pod
        for target in (session.get("status") or {}).get("targets") or []
        for entry in target.get("stats") or []
        if isinstance(pod := entry.get("pod"), str) and pod
    ]


def agent_pods(sessions: Iterable[BackupSession]) -> dict[str, str]:
    """The pods that ran a stashlet agent, from the BackupSessions' host entries: host name -> pod."""
    return {pod[:HOSTNAME_MAX]: pod for session in sessions for pod in session_pods(session.to_dict())}


def remember_agent_pods(known: dict[str, str], session: Mapping[str, Any]) -> None:
    """Add the pods a BackupSession (as the API server sent it) names in its host entries to ``known``
    (an agent's ``ctx.agent_pods``: host name -> pod), keeping the newest :data:`REMEMBERED_PODS`: a lost
    pod's lock is judged by them after its session is gone (the configuration's ``backupHistoryLimit``
    prunes it as the next one ends)."""
    for pod in session_pods(session):
        known.pop(pod[:HOSTNAME_MAX], None)
        known[pod[:HOSTNAME_MAX]] = pod
    while len(known) > REMEMBERED_PODS:
        del known[next(iter(known))]


async def agent_pod_judge(ctx: AgentContext) -> Judge:
    """The judge of this agent (module docstring): staleness, this pod's dead processes, and the pods
    that ran an agent in this namespace and no longer exist."""
    hostname = socket.gethostname()
    known = dict(ctx.agent_pods)
    try:
        known.update(agent_pods(await ctx.stash.list(BackupSession, ctx.namespace)))
    except KubeError as exc:
        log.warning("cannot list BackupSessions to tell the agents' pods", extra={"error": exc.message})

    async def judge(lock: rj.Lock) -> str | None:
        if reason := stale(lock, dt.datetime.now(dt.UTC)):
            return reason
        if lock.hostname == hostname:
            return own_dead_process(lock, hostname)
        pod = known.get(lock.hostname)
        if pod is not None and await pod_exists(ctx, pod) is False:
            return f"pod {ctx.namespace}/{pod} no longer exists"
        return None

    return judge


async def remove_stale_locks(ctx: AgentContext, restic: Restic) -> bool:
    """Remove the locks when every holder is gone (no waiting); True when the caller may try again."""
    try:
        live = await clear_if_all_gone(restic, await agent_pod_judge(ctx))
    except ResticError as exc:
        log.warning("cannot read the repository's locks", extra={"error": exc.message})
        return False
    if live:
        now = dt.datetime.now(dt.UTC)
        log.info(
            "repository locked by a live holder",
            extra={"holders": "; ".join(h.describe(now) for h in live)},
        )
    return not live
