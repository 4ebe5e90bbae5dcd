"""``stashlet-agent wipe``: the Job that wipes a deleted Repository's backend data (``spec.wipeOut``).

The operator runs it once nothing uses the Repository any more; the Repository object is still there (its
finalizer holds it), so its backend and storage Secret are read as for a backup. Every snapshot is
forgotten by ID and the repository pruned: no backed-up data stays, only the empty restic repository
(its config and keys). A backend with no restic repository has nothing to wipe. Exit 0 when wiped; 1 on
a failure, which a Warning event ``WipeOutFailed`` on the Repository states (never a secret value).
"""

from __future__ import annotations

import logging

from stashlet.agent.context import AgentContext, PreparationError
from stashlet.agent.hosts import HostIdentity
from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.agent.settings import AgentSettings
from stashlet.api.names import COMPONENT_REPOSITORY
from stashlet.api.repository import Repository
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError

log = logging.getLogger(__name__)

EXIT_WIPED = 0
EXIT_FAILED = 1


async def wipe(restic: Restic) -> int:
    """Forget every snapshot of the repository by ID and prune; the number forgotten (0 when there is no
    restic repository at all)."""
    if not await restic.exists():
        return 0
    ids = [snapshot.id for snapshot in await restic.snapshots()]
    await restic.forget_snapshots(ids)
    await restic.prune()
    return len(ids)


async def run(settings: AgentSettings, restic: ResticSettings) -> int:
    """Wipe the Repository ``settings.invoker_name`` in the agent's namespace (module docstring)."""
    api = await new_api_client()
    host = HostIdentity("host-0", needs_lease=False)
    ctx = AgentContext.of_process(settings, api, component=COMPONENT_REPOSITORY, host=host, restic=restic)
    where = f"{settings.namespace}/{settings.invoker_name}"
    try:
        _, restic_repo = await ctx.repository(settings.invoker_name, settings.namespace)
        forgotten = await wipe(Restic(ctx.restic, restic_repo))
    except (PreparationError, ResticError) as exc:
        log.error("repository wipe failed", extra={"repository": where, "error": str(exc)})
        message = f"Could not wipe the backend data of Repository {where}: {exc}"
        await _event(ctx, "Warning", "WipeOutFailed", message)
        await api.close()
        return EXIT_FAILED
    log.info("repository wiped", extra={"repository": where, "snapshots_forgotten": forgotten})
    message = f"Forgot {forgotten} snapshot(s) and pruned the backend data of Repository {where}"
    await _event(ctx, "Normal", "BackendDataWiped", message)
    await api.close()
    return EXIT_WIPED


async def _event(ctx: AgentContext, kind: str, reason: str, message: str) -> None:
    """An event on the Repository (best effort: the exit status and the log say it all)."""
    try:
        repo = await ctx.stash.get(Repository, ctx.namespace, ctx.settings.invoker_name)
    except KubeError:
        return
    await ctx.events.record(repo.to_dict(), "Warning" if kind == "Warning" else "Normal", reason, message)
