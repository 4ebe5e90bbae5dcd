"""``kubectl stash status``: one table of every BackupConfiguration (in one namespace, or all with
``-A``): its last session's phase and when it was made, the next run from its schedule, and its
Repository's size and integrity as the agent last wrote them in the Repository's status."""

from __future__ import annotations

import datetime as dt

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError
from stashlet.kubectl_stash.errors import PluginError
from stashlet.kubectl_stash.next_run import next_run
from stashlet.kubectl_stash.tables import NONE, age, short_duration

HEADERS = (
    "NAMESPACE",
    "BACKUPCONFIGURATION",
    "SCHEDULE",
    "PAUSED",
    "LAST SESSION",
    "PHASE",
    "AGE",
    "NEXT RUN",
    "REPOSITORY",
    "SIZE",
    "INTEGRITY",
)


def _created(session: BackupSession) -> dt.datetime:
    return session.metadata.creation_timestamp or dt.datetime.min.replace(tzinfo=dt.UTC)


def _integrity(repo: Repository | None) -> str:
    if repo is None:
        return "<missing>"
    value = repo.status.integrity if repo.status is not None else None
    return NONE if value is None else ("ok" if value else "FAILED")


def row(
    bc: BackupConfiguration,
    sessions: list[BackupSession],
    repositories: dict[tuple[str, str], Repository],
    now: dt.datetime,
) -> tuple[str, ...]:
    """The table line of ``bc`` from its sessions and the Repositories read."""
    namespace = bc.metadata.namespace or ""
    name = bc.metadata.name or ""
    own = [s for s in sessions if s.spec.invoker.name == name and s.metadata.namespace == namespace]
    last = max(own, key=_created, default=None)
    phase = str(last.status.phase) if last is not None and last.status and last.status.phase else NONE
    upcoming = None if bc.spec.paused else next_run(bc.spec.schedule, now)
    ref = bc.spec.repository
    repo_ns = (ref.namespace or namespace) if ref is not None else namespace
    repo = repositories.get((repo_ns, ref.name)) if ref is not None else None
    size = repo.status.total_size if repo is not None and repo.status and repo.status.total_size else NONE
    return (
        namespace,
        name,
        bc.spec.schedule or NONE,
        "true" if bc.spec.paused else "false",
        (last.metadata.name or NONE) if last is not None else NONE,
        phase,
        age(_created(last), now) if last is not None else NONE,
        f"in {short_duration((upcoming - now).total_seconds())}" if upcoming is not None else NONE,
        f"{repo_ns}/{ref.name}" if ref is not None else NONE,
        size,
        _integrity(repo),
    )


async def status_rows(stash: StashClient, namespace: str | None, now: dt.datetime) -> list[tuple[str, ...]]:
    """Every configuration's line (``namespace`` None: every namespace), sorted by namespace and name."""
    where = f"namespace {namespace}" if namespace else "all namespaces"
    try:
        configs = await stash.list(BackupConfiguration, namespace)
        # every session: one made by hand (seed 003's instant-backupsession) carries no invoker label
        sessions = await stash.list(BackupSession, namespace)
    except KubeError as exc:
        raise PluginError(f"cannot list BackupConfigurations and BackupSessions in {where}: {exc}") from exc
    wanted = {
        ((bc.spec.repository.namespace or bc.metadata.namespace or ""), bc.spec.repository.name)
        for bc in configs
        if bc.spec.repository is not None
    }
    repositories: dict[tuple[str, str], Repository] = {}
    for repo_ns, repo_name in sorted(wanted):
        try:
            repositories[(repo_ns, repo_name)] = await stash.get(Repository, repo_ns, repo_name)
        except KubeError:
            continue  # shown as <missing>: not there, or not readable by this user
    ordered = sorted(configs, key=lambda bc: (bc.metadata.namespace or "", bc.metadata.name or ""))
    return [row(bc, sessions, repositories, now) for bc in ordered]
