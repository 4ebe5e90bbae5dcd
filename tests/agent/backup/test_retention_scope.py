"""Retention among configurations that share one repository, with the real restic and no API server.

Each configuration backs up as the hosts :func:`stashlet.agent.hosts.identify` names (its alias
included), one ``restic backup`` per path as its sidecars (and Stash) do, records them in a
BackupSession's status, and applies its policy with the arguments the backup runner builds (the
session's hosts for the target, one ``forget`` per path). No
configuration may lose a snapshot to another's policy; each one's own policy still applies in full.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.plan import BackupPlan, retention_args, target_paths
from stashlet.agent.hosts import identify
from stashlet.agent.restic.retention import Retention, UnscopedRetention
from stashlet.agent.restic.runner import Restic
from stashlet.api.backupsession import BackupSession, HostBackupPhase, HostBackupStats
from stashlet.api.common import TargetRef

pytestmark = pytest.mark.restic

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Config:
    """A BackupConfiguration as far as retention cares: target, pods (or nodes), alias, paths, policy."""

    name: str
    kind: str
    pods: tuple[str, ...]
    paths: tuple[str, ...]
    keep_last: int
    alias: str | None = None
    node: str | None = None

    def hosts(self) -> list[str]:
        """The restic host each pod plays."""
        return [identify(self.kind, pod, self.node, self.alias).name for pod in self.pods]

    def plan(self) -> BackupPlan:
        """What its hosts back up."""
        ref = TargetRef(kind=self.kind, name=self.name)
        return BackupPlan(ref=ref, total_hosts=len(self.pods), paths=list(self.paths))


def new_session(invoker: str) -> BackupSession:
    """A fresh BackupSession of BackupConfiguration ``invoker``."""
    return BackupSession.from_dict(
        {
            "metadata": {"name": f"{invoker}-1", "namespace": "ns"},
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": invoker}
            },
        }
    )


async def run_session(restic: Restic, config: Config) -> None:
    """One BackupSession of ``config``: every host backs up and is recorded; the last applies retention."""
    plan = config.plan()
    session = new_session(config.name)
    for host in config.hosts():
        for path in target_paths(plan):
            await restic.backup([path], host=host)
        entry = HostBackupStats(hostname=host, phase=HostBackupPhase.SUCCEEDED)
        ss.put_host(session, plan.ref, plan.total_hosts, entry, NOW, finalize=False)
    hosts = ss.retention_hosts(session, plan.ref, config.hosts()[-1])
    for path in target_paths(plan):
        await restic.forget(retention_args(Retention(keep_last=config.keep_last), path, hosts))


async def counts(restic: Restic) -> Counter[tuple[str, tuple[str, ...]]]:
    """How many snapshots the repository holds per (host, paths)."""
    return Counter((s.hostname, tuple(s.paths)) for s in await restic.snapshots())


async def test_configurations_sharing_a_repository_keep_each_others_snapshots(
    initialized: Restic, tmp_path: Path
) -> None:
    """Four configurations share one repository. ``app`` (no alias: host-0) and ``db`` (alias ``db``)
    back up the same path, each with keepLast 1; ``logs`` (a DaemonSet with alias, another host) the
    same path with keepLast 2; ``web`` (a StatefulSet: host-0 and host-1) two other paths (a snapshot
    and a group each) with keepLast 1.
    Whatever the order, each keeps exactly what its own policy says, and nobody else's is touched: without
    the alias ``db`` would be host-0 and lose its snapshot to ``app``, and an unscoped forget with
    keepLast 1 would cut ``logs`` to one."""
    data, other, extra = tmp_path / "data", tmp_path / "other", tmp_path / "extra"
    for folder in (data, other, extra):
        folder.mkdir()
    (data / "a.txt").write_text("shared\n")
    (other / "b.txt").write_text("web\n")
    (extra / "c.txt").write_text("web too\n")
    app = Config("app", "Deployment", ("app-7d9f-x1",), (str(data),), keep_last=1)
    db = Config("db", "Deployment", ("db-5c4b-y2",), (f"{data}/",), keep_last=1, alias="db")
    logs = Config("logs", "DaemonSet", ("logs-q8",), (str(data),), keep_last=2, alias="logs", node="node-a")
    web = Config("web", "StatefulSet", ("web-0", "web-1"), (str(other), str(extra)), keep_last=1)
    assert (app.hosts(), db.hosts(), logs.hosts(), web.hosts()) == (
        ["host-0"],
        ["db"],
        ["logs-node-a"],
        ["host-0", "host-1"],
    )
    for config in (logs, logs, logs, db, app, db, app, web, web, app, db):
        await run_session(initialized, config)
    assert await counts(initialized) == {
        ("host-0", (str(data),)): 1,
        ("db", (str(data),)): 1,
        ("logs-node-a", (str(data),)): 2,
        ("host-0", (str(other),)): 1,
        ("host-1", (str(other),)): 1,
        ("host-0", (str(extra),)): 1,
        ("host-1", (str(extra),)): 1,
    }
    assert await initialized.check()


async def test_the_hosts_come_from_the_sessions_record_of_the_target(initialized: Restic) -> None:
    """Retention reaches the hosts recorded for this target in the session (and the host applying it),
    not the other targets' hosts; with no host at all the forget is refused before restic runs."""
    plan = Config("web", "StatefulSet", ("web-0", "web-1"), ("/data",), keep_last=1).plan()
    session = new_session("web")
    for host in ("host-1", "host-0"):
        entry = HostBackupStats(hostname=host, phase=HostBackupPhase.SUCCEEDED)
        ss.put_host(session, plan.ref, 2, entry, NOW)
    other = TargetRef(kind="Deployment", name="else")
    ss.put_host(session, other, 1, HostBackupStats(hostname="x", phase=HostBackupPhase.SUCCEEDED), NOW)
    assert ss.retention_hosts(session, plan.ref, "host-0") == ["host-1", "host-0"]
    assert ss.retention_hosts(None, plan.ref, "host-2") == ["host-2"]
    args = retention_args(Retention(keep_last=1, prune=True), "/data/", ["host-1", "host-0"])
    assert args == [
        "--keep-last",
        "1",
        "--group-by=host,paths",
        "--host=host-1",
        "--host=host-0",
        "--path=/data",
        "--prune",
    ]
    assert "--prune" not in retention_args(Retention(keep_last=1, prune=True), "/data", ["h"], prune=False)
    with pytest.raises(UnscopedRetention):
        retention_args(Retention(keep_last=1), "/data", [])
