"""A repository Stash wrote, continued by stashlet's sidecar: real API server, real restic, the agent as its
own account.

Stash's sessions are made with plain restic exactly as its wrapper runs them (:mod:`tests.stash_written`:
one ``restic backup`` per path with its host, then its unscoped ``forget`` with the policy's flags), in
restic's format 1 (older Stash) and 2. Then stashlet takes over the same BackupConfiguration: each path
gets its own snapshot whose parent is Stash's last snapshot of that path (so nothing is read again), the
host is Stash's (alias included), and its retention removes exactly what Stash's own ``forget`` would have
removed from the same snapshots (real ``restic forget --dry-run`` with Stash's flags on a copy).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import (
    PASSWORD,
    Setup,
    finished_lines,
    repository_once,
    wait_phase,
    write_tree,
)
from tests.stash_written import StashRestic, stash_host

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

POLICY = {"name": "keep-last-2", "keepLast": 2, "prune": True}


def conditions(session: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in session["status"]["conditions"]}


def stash_would_remove(restic: Path, repository: Path, saved: Path, union: Path) -> set[str]:
    """What Stash's ``forget`` (its flags, ``--dry-run``) removes from the snapshots ``repository`` holds
    and those ``saved`` (its snapshot files before stashlet's session): a copy with both, since ``forget``
    reads nothing but the config, the keys and the snapshot files."""
    shutil.copytree(repository, union)
    for lock in (union / "locks").iterdir():  # the live repository's (its check may hold one): not the copy's
        lock.unlink()
    for file in saved.iterdir():
        if not (union / "snapshots" / file.name).exists():
            shutil.copy2(file, union / "snapshots" / file.name)
    groups = StashRestic(restic, str(union), PASSWORD).forget({**POLICY, "dryRun": True})
    return {s["id"] for g in groups for s in g.get("remove") or []}


@pytest.mark.parametrize(
    ("version", "alias"),
    [pytest.param(1, "", id="format-1-no-alias"), pytest.param(2, "app-data", id="format-2-alias")],
)
def test_stashlet_continues_a_stash_written_repository(
    version: int,
    alias: str,
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: Path,
) -> None:
    """Three Stash sessions (two paths, keepLast 2: each path's group holds two snapshots), then one
    stashlet session of the same configuration: per path one new snapshot of Stash's host, parent Stash's
    last of that path, no file new; one ``forget`` per path removes, per group, exactly what Stash's
    ``forget`` removes from the same snapshots; the repository keeps its format and passes a check."""
    setup = Setup(kubectl, namespace, tmp_path, retention=POLICY)
    other = tmp_path / "other"
    other.mkdir()
    write_tree(setup.data)
    (other / "config.yaml").write_text("replicas: 3\n")
    paths = [str(setup.data), str(other)]
    host = stash_host("Deployment", alias=alias)
    stash = StashRestic(Path(restic_binary), str(setup.repo_dir), PASSWORD)
    stash.init(version)
    for _ in range(3):
        stash.backup(host, paths)
        stash.forget(POLICY)
    before = {s["id"]: s for s in stash.snapshots()}
    assert sorted(len([s for s in before.values() if s["paths"] == [p]]) for p in paths) == [2, 2]
    saved = tmp_path / "stash-snapshot-files"
    shutil.copytree(setup.repo_dir / "snapshots", saved)

    setup.apply()
    target: dict[str, Any] = {"paths": paths}
    if alias:
        target["alias"] = alias
    setup.patch_configuration({"target": target})
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    done = wait_phase(kubectl, namespace, setup.session("first-stashlet"), {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", (done["status"], agent.logs()[-3000:])

    after = {s["id"]: s for s in stash.snapshots()}
    new = [s for s in after.values() if s["id"] not in before]
    assert sorted((s["hostname"], s["paths"][0]) for s in new) == sorted((host, p) for p in paths)
    assert all(len(s["paths"]) == 1 and not s.get("tags") for s in new)
    for snapshot in new:  # the chain goes on: the parent is Stash's latest snapshot of the same path
        stash_last = max(
            (s for s in before.values() if s["paths"] == snapshot["paths"]), key=lambda s: str(s["time"])
        )
        assert snapshot["parent"] == stash_last["id"]
        assert snapshot["summary"]["files_new"] == 0
    entry = done["status"]["targets"][0]["stats"][0]
    assert entry["hostname"] == host
    assert [(s["path"], s["name"]) for s in entry["snapshots"]] == [
        (p, next(s["short_id"] for s in new if s["paths"] == [p])) for p in paths
    ]
    assert sum(s["fileStats"]["totalFiles"] for s in entry["snapshots"]) == 4

    stash_removes = stash_would_remove(Path(restic_binary), setup.repo_dir, saved, tmp_path / "union")
    stashlet_removed = (set(before) | {s["id"] for s in new}) - set(after)
    assert len(stashlet_removed) == 2  # the oldest of each path's group
    assert stashlet_removed == stash_removes
    assert "removed 2" in conditions(done)["RetentionPolicyApplied"]["message"]
    # Stash's forget now finds nothing more to remove: the groups are where Stash would have left them.
    # Its forget locks the repository exclusively: after the agent's upkeep (check, stats) has let go.
    repository_once(kubectl, namespace, lambda r: "lastCheckTime" in r)
    again = stash.forget({**POLICY, "dryRun": True})
    assert not [s for g in again for s in g.get("remove") or []]

    # Two backups and two forgets (the last prunes); the sidecar's warm-up listed the scope before.
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/first-stashlet"]["restic_processes"] == 4
    assert stash.config_version() == version
    stash.run("check", "--no-cache")
    assert PASSWORD not in agent.logs()


def test_an_aliased_statefulset_continues_every_hosts_chain(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: Path,
) -> None:
    """A StatefulSet of two with alias ``db``: Stash wrote three sessions of hosts db-0 and db-1 (keepLast
    2). Under stashlet each pod continues its own host's chain (parent: Stash's last snapshot of that host),
    and the retention of the several hosts (one ``forget`` per path, both hosts) removes what Stash's
    ``forget`` removes from the same snapshots: the oldest of each host's group."""
    setup = Setup(kubectl, namespace, tmp_path, kind="StatefulSet", replicas=2, retention=POLICY)
    write_tree(setup.data)
    hosts = [stash_host("StatefulSet", pod=f"app-{i}", alias="db") for i in range(2)]
    assert hosts == ["db-0", "db-1"]
    stash = StashRestic(Path(restic_binary), str(setup.repo_dir), PASSWORD)
    stash.init()
    for _ in range(3):
        for host in hosts:
            stash.backup(host, [str(setup.data)])
        stash.forget(POLICY)
    before = {s["id"]: s for s in stash.snapshots()}
    saved = tmp_path / "stash-snapshot-files"
    shutil.copytree(setup.repo_dir / "snapshots", saved)

    setup.apply()
    setup.patch_configuration({"target": {"alias": "db"}})
    kubeconfig = service_account_kubeconfig(namespace, setup.account)
    for i in range(2):
        setup.start_agent(start_agent, kubeconfig, pod_name=f"app-{i}")
    done = wait_phase(
        kubectl, namespace, setup.session("sts-continued"), {"Succeeded", "Failed"}, timeout=150
    )
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sorted(s["hostname"] for s in done["status"]["targets"][0]["stats"]) == hosts

    after = {s["id"]: s for s in stash.snapshots()}
    new = [s for s in after.values() if s["id"] not in before]
    assert sorted(s["hostname"] for s in new) == hosts
    for snapshot in new:
        stash_last = max(
            (s for s in before.values() if s["hostname"] == snapshot["hostname"]),
            key=lambda s: str(s["time"]),
        )
        assert snapshot["parent"] == stash_last["id"]
    stash_removes = stash_would_remove(Path(restic_binary), setup.repo_dir, saved, tmp_path / "union")
    stashlet_removed = (set(before) | {s["id"] for s in new}) - set(after)
    assert len(stashlet_removed) == 2
    assert stashlet_removed == stash_removes
