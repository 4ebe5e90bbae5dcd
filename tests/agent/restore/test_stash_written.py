"""``stashlet-agent restore`` (stash-init) over repositories Stash wrote, on a real API server with real
restic: the repositories are made by :mod:`tests.stash_written` (plain restic run as Stash's wrapper runs
it: one snapshot per path, Stash's host names, its forget), in restic's format 1 (older Stash) and 2.

A rule with ``paths`` restores each path from the latest snapshot of the host holding it, as Stash's
``restic restore latest --host <host> --path <path>`` does, so a multi-path target comes back whole; the
hosts of an aliased StatefulSet (``<alias>-<ordinal>``) each restore their own data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.agent.restore.test_restore import (
    PASSWORD,
    Kubectl,
    RestoreEnv,
    finish,
    manifest,
    wipe,
    write_tree,
)
from tests.stash_written import StashRestic, stash_host

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


@pytest.fixture
def env(
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    restic_binary: str,
    service_account_kubeconfig: Callable[[str, str], Path],
    template_repository: Path,
) -> RestoreEnv:
    """A namespace with the storage Secret and a local Repository (an empty format-2 restic repository)."""
    environment = RestoreEnv(
        kubectl, namespace, tmp_path, restic_binary, service_account_kubeconfig, template_repository
    )
    environment.apply(environment.secret(), environment.repository())
    return environment


def stash(env: RestoreEnv, version: int) -> StashRestic:
    """Plain restic on the test's repository as Stash runs it; ``version`` 1 makes it anew in format 1."""
    writer = StashRestic(Path(env.restic_binary), str(env.repo_dir), PASSWORD)
    if version == 1:
        shutil.rmtree(env.repo_dir)
        writer.init(version=1)
    assert writer.config_version() == version
    return writer


def restored_snapshots(log: list[dict[str, object]]) -> dict[str, str]:
    """path -> the short ID of the snapshot the agent restored it from (its "path restored" lines)."""
    return {str(line["path"]): str(line["snapshot"]) for line in log if line["msg"] == "path restored"}


@pytest.mark.parametrize("version", [1, 2])
def test_a_multi_path_target_comes_back_from_each_paths_latest_snapshot(
    env: RestoreEnv, version: int
) -> None:
    """Stash backed up a Deployment's two paths twice (four snapshots, one per path and session, host-0)
    and applied its retention; a RestoreSession with both paths restores each from its own latest
    snapshot, byte for byte, with modes and times; a rule with one path restores that path only."""
    writer = stash(env, version)
    other = env.tmp_path / "other"
    other.mkdir()
    paths = [str(env.data), str(other)]
    write_tree(env.data, "first")
    (other / "o.txt").write_text("first\n")
    writer.backup(stash_host("Deployment"), paths)
    write_tree(env.data / "dir" / "newer", "second")
    (other / "o.txt").write_text("second\n")
    latest = writer.backup(stash_host("Deployment"), paths)
    groups = writer.forget({"keepLast": 1, "prune": True})
    assert sorted((g["paths"], len(g["keep"]), len(g["remove"])) for g in groups) == sorted(
        ([p], 1, 1) for p in paths
    )
    expected = {p: manifest(Path(p)) for p in paths}
    wipe(env.data)
    wipe(other)
    env.apply(
        env.workload("Deployment", "app"),
        env.restore_session("rs", "Deployment", "app", rules=[{"paths": paths}], mounts=[env.data, other]),
        env.restore_session("one", "Deployment", "app", rules=[{"paths": [str(other)]}], mounts=[other]),
    )
    kubeconfig = env.grant("app-init", ["rs", "one"], "Deployment", "app")

    run = env.run("rs", "Deployment", "app", "app-5d8-k", kubeconfig)

    assert run.code == 0, run.log[-4000:]
    assert {p: manifest(Path(p)) for p in paths} == expected
    assert restored_snapshots(run.lines()) == {p: i[:8] for p, i in zip(paths, latest, strict=True)}
    status = env.session("rs")["status"]
    assert (status["phase"], [(s["hostname"], s["phase"]) for s in status["stats"]]) == (
        "Succeeded",
        [("host-0", "Succeeded")],
    )

    wipe(env.data)
    wipe(other)
    one = env.run("one", "Deployment", "app", "app-5d8-k", kubeconfig)
    assert one.code == 0, one.log[-4000:]
    assert manifest(other) == expected[str(other)]
    assert list(env.data.iterdir()) == []


def test_an_aliased_statefulset_restores_every_ordinal_from_its_own_host(env: RestoreEnv) -> None:
    """Stash backed up a StatefulSet of three with ``target.alias: my-sts`` (hosts my-sts-0..2, each pod's
    volume at the same mount path); a RestoreSession with the same alias and paths: every pod restores
    its own host's latest snapshot into its own volume and the session has the three aliased hosts."""
    writer = stash(env, 2)
    volumes = [env.tmp_path / f"vol-{i}" for i in range(3)]
    expected = []
    for i, volume in enumerate(volumes):
        volume.mkdir()
        write_tree(volume, f"sts-{i}")
        expected.append(manifest(volume))
        host = stash_host("StatefulSet", pod=f"app-{i}", alias="my-sts")
        writer.backup(host, [str(env.data)], volumes={str(env.data): volume})
        wipe(volume)
    assert sorted((s["hostname"], s["paths"]) for s in writer.snapshots()) == [
        (f"my-sts-{i}", [str(env.data)]) for i in range(3)
    ]
    session = env.restore_session("rs", "StatefulSet", "app", rules=[{"paths": [str(env.data)]}])
    session["spec"]["target"]["alias"] = "my-sts"
    env.apply(env.workload("StatefulSet", "app", 3), session)
    kubeconfig = env.grant("app-init", ["rs"], "StatefulSet", "app")

    started = [
        env.start("rs", "StatefulSet", "app", f"app-{i}", kubeconfig, binds={env.data: volume})
        for i, volume in enumerate(volumes)
    ]
    runs = [finish(process, log, timeout=180) for process, log in started]

    for i, run in enumerate(runs):
        assert run.code == 0, run.log[-4000:]
        assert manifest(volumes[i]) == expected[i], f"my-sts-{i}"
    assert list(env.data.iterdir()) == []
    status = env.session("rs")["status"]
    assert (status["phase"], sorted((s["hostname"], s["phase"]) for s in status["stats"])) == (
        "Succeeded",
        [(f"my-sts-{i}", "Succeeded") for i in range(3)],
    )


def test_an_aliased_daemonset_pod_restores_its_own_nodes_data(env: RestoreEnv) -> None:
    """Stash backed up a DaemonSet with ``target.alias: logs`` on two nodes (hosts logs-node-a and
    logs-node-b, the same path); the pod on node-a (NODE_NAME from the downward API) restores
    logs-node-a's latest snapshot, not the other node's, and the session names that host."""
    writer = stash(env, 2)
    sources = {node: env.tmp_path / node for node in ("node-a", "node-b")}
    for node, source in sources.items():
        source.mkdir()
        write_tree(source, node)
        writer.backup(
            stash_host("DaemonSet", node=node, alias="logs"), [str(env.data)], volumes={str(env.data): source}
        )
    expected = manifest(sources["node-a"])
    workload = env.workload("DaemonSet", "logs")
    del workload["spec"]["replicas"]
    session = env.restore_session("rs", "DaemonSet", "logs", rules=[{"paths": [str(env.data)]}])
    session["spec"]["target"]["alias"] = "logs"
    env.apply(workload, session)
    kubeconfig = env.grant("logs-init", ["rs"], "DaemonSet", "logs")

    run = env.run("rs", "DaemonSet", "logs", "logs-x1", kubeconfig, node="node-a")

    assert run.code == 0, run.log[-4000:]
    assert manifest(env.data) == expected
    status = env.session("rs")["status"]
    assert (status["phase"], [(s["hostname"], s["phase"]) for s in status["stats"]]) == (
        "Succeeded",
        [("logs-node-a", "Succeeded")],
    )


def test_plain_restic_reads_back_what_the_maker_wrote(env: RestoreEnv) -> None:
    """The maker's own check: a format-1 repository holds untagged per-path snapshots of Stash's hosts,
    readable by plain restic with only the password (``restic restore latest --host --path``, Stash's own
    restore command)."""
    writer = stash(env, 1)
    write_tree(env.data, "plain")
    expected = manifest(env.data)
    writer.backup(stash_host("DaemonSet", node="node-a", alias="logs"), [str(env.data)])
    [snapshot] = writer.snapshots()
    assert (snapshot["hostname"], snapshot["paths"], snapshot.get("tags")) == (
        "logs-node-a",
        [str(env.data)],
        None,
    )
    target = env.tmp_path / "plain"
    writer.run("restore", "latest", "--host", "logs-node-a", "--path", str(env.data), "--target", str(target))
    assert manifest(target / str(env.data).lstrip("/")) == expected
