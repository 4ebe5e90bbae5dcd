"""A target with several paths, as Stash backs it up: one ``restic backup`` (one snapshot) per path, one
``forget`` per path, one prune per session. Real API server, real restic, the agent as its own account."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import Setup, finished_lines, log_lines, wait_phase, write_tree

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

BIG = 8 * 1024 * 1024


def retention_message(session: dict[str, Any]) -> str:
    found = {c["type"]: c for c in session["status"]["conditions"]}
    message: str = found["RetentionPolicyApplied"]["message"]
    return message


def test_each_path_is_its_own_snapshot_group_and_the_session_prunes_once(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Session 1 backs up one path (with 8 MiB only it holds). Session 2, with a second path added and the
    8 MiB gone: two snapshots of host-0, one path each; keepLast 1 makes the first path's ``forget``
    remove session 1's snapshot (no prune: not the last), the new path's (a scope the agent never listed)
    removes nothing, so one ``restic prune`` follows and the 8 MiB leave the repository."""
    policy = {"name": "keep-last-1", "keepLast": 1, "prune": True}
    setup = Setup(kubectl, namespace, tmp_path, retention=policy)
    write_tree(setup.data)
    (setup.data / "big.bin").write_bytes(os.urandom(BIG))
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.txt").write_text("second path\n")
    setup.apply()
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    first = wait_phase(kubectl, namespace, setup.session("one-path"), {"Succeeded", "Failed"})
    assert first["status"]["phase"] == "Succeeded", first["status"]

    (setup.data / "big.bin").unlink()
    setup.patch_configuration({"target": {"paths": [str(setup.data), str(other)]}})
    second = wait_phase(kubectl, namespace, setup.session("two-paths"), {"Succeeded", "Failed"})
    assert second["status"]["phase"] == "Succeeded", (second["status"], agent.logs()[-3000:])
    entry = second["status"]["targets"][0]["stats"][0]
    assert [s["path"] for s in entry["snapshots"]] == [str(setup.data), str(other)]
    assert [s["fileStats"]["totalFiles"] for s in entry["snapshots"]] == [3, 1]

    def restic(*args: str) -> Any:
        return json.loads(setup.restic(*args, "--json", restic_binary=restic_binary).stdout)

    snapshots = restic("snapshots", "--no-lock")
    assert sorted((s["hostname"], s["paths"], s["short_id"]) for s in snapshots) == sorted(
        ("host-0", [s["path"]], s["name"]) for s in entry["snapshots"]
    )
    assert "removed 1" in retention_message(second)
    logs = agent.logs()
    forgets = [line["path"] for line in log_lines(logs, "running restic forget")]
    assert forgets == [str(setup.data), str(other)]
    assert len(log_lines(logs, "running restic prune")) == 1
    assert restic("stats", "--mode=raw-data", "--no-lock")["total_size"] < BIG
    finished = {line["session"]: line["restic_processes"] for line in finished_lines(logs)}
    # two backups, two forgets, one prune; the first session: backup (exit 10), init, backup
    assert (finished[f"{namespace}/one-path"], finished[f"{namespace}/two-paths"]) == (3, 5)


def test_a_path_read_in_part_keeps_its_snapshot_and_the_next_paths_are_backed_up(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Paths ``data``, ``/proc/self/mem`` (unreadable for anyone: restic exits 3) and ``other``: three
    snapshots, the host Failed with PartialBackup naming the unreadable path, its entry listing all three."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.txt").write_text("after the unreadable path\n")
    setup.apply()
    setup.patch_configuration({"target": {"paths": [str(setup.data), "/proc/self/mem", str(other)]}})
    setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    done = wait_phase(kubectl, namespace, setup.session("partial"), {"Succeeded", "Failed"})
    entry = done["status"]["targets"][0]["stats"][0]
    assert (done["status"]["phase"], entry["phase"], entry["reason"]) == ("Failed", "Failed", "PartialBackup")
    assert "/proc/self/mem" in entry["error"]
    assert [s["path"] for s in entry["snapshots"]] == [str(setup.data), "/proc/self/mem", str(other)]
    snapshots = json.loads(
        setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout
    )
    assert sorted(s["paths"][0] for s in snapshots) == sorted([str(setup.data), "/proc/self/mem", str(other)])
