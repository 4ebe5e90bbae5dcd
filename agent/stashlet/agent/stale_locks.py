"""Safe recovery from a locked repository: remove a lock only when its holder is provably gone.

restic's own ``unlock`` (without ``--remove-all``) removes exactly the locks restic deems stale: older
than 30 minutes without a refresh, or taken on this very host by a process that no longer runs. We
call it only after reading every lock and finding at least one whose holder is gone: a pod of this
namespace that no longer exists, or a lock past restic's staleness age. A live holder is never
touched; the session then fails with RepositoryLocked and names the holder.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from kubernetes_asyncio import client

from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.runner import Restic
from stashlet.kube.client import call
from stashlet.kube.errors import KubeError, NotFound

if TYPE_CHECKING:
    from stashlet.agent.context import AgentContext

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(minutes=30)
"""restic refreshes its locks every 5 minutes and treats one untouched for 30 minutes as stale."""


async def pod_exists(ctx: AgentContext, name: str) -> bool | None:
    """True/False when we can tell; None when we cannot (no right to read pods, API error)."""
    try:
        await call(client.CoreV1Api(ctx.api).read_namespaced_pod, name, ctx.namespace)
    except NotFound:
        return False
    except KubeError:
        return None
    return True


async def remove_stale_locks(ctx: AgentContext, restic: Restic) -> bool:
    """Unlock if some lock's holder is gone; True when restic removed at least one lock."""
    try:
        ids = await restic.list_locks()
    except ResticError as exc:
        log.warning("cannot list locks", extra={"error": exc.message})
        return False
    now = dt.datetime.now(dt.UTC)
    gone: list[str] = []
    for lock_id in ids:
        try:
            lock = await restic.read_lock(lock_id)
        except ResticError:
            continue  # removed meanwhile
        age = now - lock.time if lock.time else dt.timedelta(0)
        holder = lock.hostname
        if age > STALE_AFTER:
            gone.append(f"{lock_id[:8]} (held by {holder}, {int(age.total_seconds() // 60)} minutes old)")
        elif holder == ctx.settings.pod_name or await pod_exists(ctx, holder) is False:
            gone.append(f"{lock_id[:8]} (held by {holder}, which no longer runs)")
        else:
            log.info(
                "repository locked by a live holder",
                extra={"lock": lock_id[:8], "holder": holder, "pid": lock.pid},
            )
    if not gone:
        return False
    before = len(ids)
    await restic.unlock()
    after = len(await restic.list_locks())
    log.warning("removed stale locks", extra={"locks": gone, "removed": before - after})
    return after < before
