"""The sidecar after a pod was lost mid-backup, and with a live holder of the repository's lock: real API
server, real restic, agent processes with their service account's token.

The lost pod is played as it happens on a node: its session is Running with its pod named in the host
entry, and its restic (killed with SIGKILL) left a lock written under the pod's host name (restic writes
the OS host name, so the holder runs in its own UTS namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import (
    PASSWORD,
    Setup,
    condition_once,
    events_for,
    repository_once,
    wait_phase,
    write_tree,
)
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


class Holders:
    """restic lock holders under chosen host names on the Setup's local repository."""

    def __init__(self, setup: Setup, restic_binary: str) -> None:
        self.setup = setup
        self.binary = restic_binary
        self.procs: list[subprocess.Popen[bytes]] = []

    def locks(self) -> list[str]:
        return self.setup.restic("list", "locks", "--no-lock", restic_binary=self.binary).stdout.split()

    def hold(self, hostname: str) -> subprocess.Popen[bytes]:
        unshare = shutil.which("unshare")
        assert unshare, "the lock tests need unshare (util-linux) to give a holder its own host name"
        before = set(self.locks())
        script = 'hostname "$1" && exec "$2" --no-cache backup --stdin --stdin-filename=held --host=host-0'
        proc = subprocess.Popen(  # the holder waits on stdin that never comes
            [unshare, "--uts", "sh", "-c", script, "holder", hostname, self.binary],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "RESTIC_REPOSITORY": str(self.setup.repo_dir),
                "RESTIC_PASSWORD": PASSWORD,
            },
        )
        self.procs.append(proc)
        wait_until(lambda: set(self.locks()) - before, timeout=20, interval=0.2, what=f"a lock of {hostname}")
        return proc

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()  # a killed holder's pipe too


@pytest.fixture
def holders_for() -> Iterator[Callable[[Setup, str], Holders]]:
    made: list[Holders] = []

    def make(setup: Setup, restic_binary: str) -> Holders:
        made.append(Holders(setup, restic_binary))
        return made[-1]

    yield make
    for holders in made:
        holders.stop_all()


def conditions(session: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in session["status"].get("conditions", [])}


def set_status(kubectl: Callable[..., Any], namespace: str, name: str, status: dict[str, Any]) -> None:
    kubectl(
        "patch",
        "backupsession",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_a_rollout_mid_backup_leaves_nothing_for_a_person(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
    holders_for: Callable[[Setup, str], Holders],
) -> None:
    """Pod app-old was lost mid-backup: its session stays Running and its lock stays in the repository
    (plain ``restic unlock`` keeps it: another host, not 30 minutes old). The replacement pod ends that
    session Failed (AgentRestarted), and its next session removes the lost pod's lock and Succeeds with
    retention and check done; the Repository's integrity is true."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    setup.restic("init", restic_binary=restic_binary)
    holders = holders_for(setup, restic_binary)
    lost = setup.session("lost")
    set_status(
        kubectl,
        namespace,
        lost,
        {
            "phase": "Running",
            "targets": [
                {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                    "totalHosts": 1,
                    "phase": "Running",
                    "stats": [{"hostname": "host-0", "phase": "Running", "pod": "app-old"}],
                }
            ],
        },
    )
    old_restic = holders.hold("app-old")
    old_restic.kill()
    old_restic.wait()
    stale = holders.locks()
    assert len(stale) == 1
    setup.restic("unlock", restic_binary=restic_binary)
    assert holders.locks() == stale  # restic's own rule keeps it: "removed: 0"

    agent = setup.start_agent(
        start_agent, service_account_kubeconfig(namespace, setup.account), pod_name="app-new"
    )
    swept = wait_phase(kubectl, namespace, lost, {"Failed", "Succeeded"}, timeout=60)
    assert swept["status"]["targets"][0]["stats"][0]["reason"] == "AgentRestarted"

    name = setup.session("after-rollout")
    done = wait_phase(kubectl, namespace, name, {"Failed", "Succeeded"}, timeout=120)
    found = conditions(done)
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"])
    assert found["RetentionPolicyApplied"]["status"] == "True"
    assert "BackendReachable" not in found  # restic never had to retry the backend
    # the Repository's first check is due: it runs once the session has reported
    check = condition_once(kubectl, namespace, name, "RepositoryIntegrityVerified")
    assert (check["status"], check["reason"]) == ("True", "SuccessfullyVerifiedRepositoryIntegrity")
    assert repository_once(kubectl, namespace, lambda r: "integrity" in r)["integrity"] is True
    assert holders.locks() == []
    log = agent.logs()
    assert "removed the locks of holders that are gone" in log
    assert f"pod {namespace}/app-old no longer exists" in log
    assert PASSWORD not in log


def test_a_live_holder_is_waited_for_and_a_check_that_cannot_run_is_not_run(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
    holders_for: Callable[[Setup, str], Holders],
) -> None:
    """A restic of a host that is no pod of ours holds a lock through the whole session (timeOut 45s):
    the backup runs (its lock is shared), retention (keepLast 1: a second snapshot is one to remove) waits
    for the holder, then both retention and check (due after every backup: check-interval 0s) are
    reported not run with reason RepositoryLocked, naming the holder; the Repository's integrity and last
    check time stay what the last real check left."""
    setup = Setup(
        kubectl, namespace, tmp_path, retention={"name": "keep-last-1", "keepLast": 1, "prune": False}
    )
    write_tree(setup.data)
    setup.apply()
    kubectl("annotate", "repository", "local-repo", "-n", namespace, "stash.appscode.com/check-interval=0s")
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    first = wait_phase(kubectl, namespace, setup.session("first"), {"Failed", "Succeeded"}, timeout=120)
    assert first["status"]["phase"] == "Succeeded"
    checked = repository_once(kubectl, namespace, lambda r: "lastCheckTime" in r)
    assert checked["integrity"] is True

    holders = holders_for(setup, restic_binary)
    live = holders.hold("laptop-of-someone")
    setup.patch_configuration({"timeOut": "45s"})
    (setup.data / "new.txt").write_text(os.urandom(8).hex())
    started = time.monotonic()
    name = setup.session("held")
    done = wait_phase(kubectl, namespace, name, {"Failed", "Succeeded"}, timeout=120)
    elapsed = time.monotonic() - started
    status = done["status"]
    assert status["phase"] == "Failed"
    host = status["targets"][0]["stats"][0]
    assert host["phase"] == "Succeeded" and host["snapshots"][0]["name"]  # the backup itself was made
    retention = conditions(done)["RetentionPolicyApplied"]
    assert (retention["status"], retention["reason"]) == ("False", "RepositoryLocked")
    assert f"PID {live.pid} on laptop-of-someone" in retention["message"]
    check = condition_once(kubectl, namespace, name, "RepositoryIntegrityVerified")
    assert (check["status"], check["reason"]) == ("False", "RepositoryLocked")
    assert check["message"].startswith("restic check did not run, the repository's integrity is unchanged")
    assert "found errors" not in check["message"]
    assert 20 < elapsed < 45, f"took {elapsed:.0f}s"  # waited for the holder, ended before the timeOut
    after = repository_once(kubectl, namespace, lambda r: r.get("snapshotCount") == 2)
    assert (after["integrity"], after["lastCheckTime"]) == (True, checked["lastCheckTime"])
    assert len(holders.locks()) == 1  # the live holder's lock was not touched
    assert "waiting for the repository's lock" in agent.logs()
    holders.release(live)
    assert holders.locks() == []
    assert not [e for e in events_for(kubectl, namespace, name) if "found errors" in e.get("message", "")]
