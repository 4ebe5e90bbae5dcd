"""A backup session with the new password, before ``key update`` removes the old key: for each
BackupConfiguration in the Repository's namespace that uses it (and is not paused), a BackupSession is
created as ``kubectl stash trigger`` creates one and waited for. The agents read the storage Secret for every
session, so a Succeeded session shows that what backs up into the repository opens it with the Secret's
new password; a session that fails stops the rotation while both keys are valid."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError
from stashlet.kube.rest import KubeApi
from stashlet.kubectl_stash.backups import trigger
from stashlet.kubectl_stash.errors import PluginError, object_name
from stashlet.kubectl_stash.runtime_env import uses

DEFAULT_SESSION_TIMEOUT = 600.0
TERMINAL = ("Succeeded", "Failed", "Skipped")


async def _outcome(
    stash: StashClient, namespace: str, name: str, within: float, poll: float
) -> BackupSession:
    deadline = time.monotonic() + within
    while True:
        session = await stash.get(BackupSession, namespace, name)
        if session.status is not None and str(session.status.phase or "") in TERMINAL:
            return session
        if time.monotonic() > deadline:
            raise PluginError(
                f"{object_name(names.KIND_BACKUP_SESSION, namespace, name)} did not end within {within:g}s "
                "(--session-timeout)"
            )
        await asyncio.sleep(poll)


def _why(session: BackupSession) -> str:
    """The hosts' errors (``host: reason: error``), else the failed conditions, else a plain word."""
    status = session.status
    if status is None:
        return "no status"
    hosts = [
        f"{host.hostname or '?'}: {host.reason or 'Failed'}: {host.error or ''}".rstrip(": ")
        for target in status.targets or []
        for host in target.stats or []
        if host.error or str(host.phase or "") == "Failed"
    ]
    failed = [
        f"{c.type}: {c.reason or ''} {c.message or ''}".strip()
        for c in status.conditions or []
        if c.status == "False"
    ]
    return "; ".join(hosts or failed) or "no reason given"


async def prove_sessions(
    api: KubeApi,
    repo: Repository,
    *,
    within: float = DEFAULT_SESSION_TIMEOUT,
    poll: float = 2.0,
    tell: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Run and wait for one session of each active configuration using ``repo``; the sessions' names.
    PluginError naming the session, its phase and why when one does not succeed."""
    namespace = repo.metadata.namespace or ""
    stash = StashClient(api)
    try:
        configs = [bc for bc in await stash.list(BackupConfiguration, namespace) if uses(bc, repo)]
    except KubeError as exc:
        raise PluginError(f"cannot list the BackupConfigurations of namespace {namespace}: {exc}") from exc
    proven: list[str] = []
    for bc in sorted(configs, key=lambda c: c.metadata.name or ""):
        name = bc.metadata.name or ""
        if bc.spec.paused:
            tell(f"BackupConfiguration {namespace}/{name} is paused: no session with it")
            continue
        session = await trigger(stash, namespace, name)
        tell(f"waiting for BackupSession {namespace}/{session} with the new password")
        try:
            done = await _outcome(stash, namespace, session, within, poll)
        except KubeError as exc:
            raise PluginError(f"cannot read BackupSession {namespace}/{session}: {exc}") from exc
        phase = str(done.status.phase) if done.status is not None else ""
        if phase != "Succeeded":
            raise PluginError(
                f"BackupSession {namespace}/{session} of BackupConfiguration {name} ended {phase} with the "
                f"new password: {_why(done)}"
            )
        proven.append(session)
    if not configs:
        tell(f"no BackupConfiguration in namespace {namespace} uses the repository: no session to prove")
    return proven
