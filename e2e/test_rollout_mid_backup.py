"""A pod lost mid-backup on the real node, and the replacement's next session without a person.

The sidecar backs up a volume slowly enough (``--limit-upload``) that a backup is in flight; then the pod
is lost the way a node loss or an eviction loses it: the agent and its restic are killed (SIGKILL, no
clean-up: restic's lock stays in the repository) and the pod is deleted with ``--grace-period=0
--force``. The Deployment's replacement pod ends the interrupted session Failed (AgentRestarted); its
next session removes the lost pod's lock (every holder gone) and Succeeds with retention and check done.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from e2e.manifests import backup_configuration, backup_session, busybox_deployment
from e2e.rest_repository import plain_restic, rest_storage, restic_output

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "rollout-password-1"
DATA_MB = 32
UPLOAD_KIB_S = 1024


def objects(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    """Secret, Repository on the REST server, a Deployment writing random data, its configuration."""
    write = f"head -c {DATA_MB * 1024 * 1024} /dev/urandom > /data/big.bin && sleep 3600"
    return [
        *rest_storage(namespace, f"{rest_url}/{namespace}", PASSWORD),
        busybox_deployment(namespace, ["/bin/sh", "-c", write], terminationGracePeriodSeconds=5),
        backup_configuration(
            namespace, "app-backup", repository="rest-repo", args=[f"--limit-upload={UPLOAD_KIB_S}"]
        ),
    ]


def processes_of(namespace: str, pod: str) -> list[int]:
    """The pod's agent (its environment names the pod) and the restic it runs (its repository is the
    namespace's), as this machine (the node) sees them."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        agent = b"stashlet-agent" in cmdline and f"POD_NAME={pod}".encode() in environ
        restic = b"restic" in cmdline and any(
            v.startswith(b"RESTIC_REPOSITORY=") and v.endswith(f"/{namespace}".encode()) for v in environ
        )
        if agent or restic:
            found.append(int(entry.name))
    return found


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


async def test_a_pod_lost_mid_backup_leaves_no_lock_for_a_person(
    kubectl: Any, namespace: str, operator_for: Any, rest_server: str, rest_backend: Any, helpers: Any
) -> None:
    """Lost mid-backup: the lock stays (plain ``restic unlock`` keeps it); the interrupted session ends
    Failed (AgentRestarted); the replacement's next session Succeeds with RetentionPolicyApplied True, the
    Repository's first check (due, run once the session has reported) sets RepositoryIntegrityVerified True,
    the Repository shows integrity true and no lock is left."""
    operator_for(namespace)
    get = helpers.get
    kubectl("apply", "-f", "-", input_obj=objects(namespace, rest_server))

    def ready() -> bool:
        bc = get(kubectl, "backupconfiguration", "app-backup", "-n", namespace)
        return bool(bc.get("status", {}).get("phase") == "Ready")

    await helpers.until(ready, timeout=90, what="BackupConfiguration Ready")
    [old] = await helpers.rolled_out(kubectl, namespace, "app")
    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "in-flight", "app-backup"))

    def uploading() -> bool:
        obj = get(kubectl, "backupsession", "in-flight", "-n", namespace)
        stats = [s for t in obj.get("status", {}).get("targets", []) for s in t.get("stats", [])]
        return any(s.get("progress", {}).get("bytesDone", 0) > 0 and s.get("pod") == old for s in stats)

    await helpers.until(uploading, timeout=120, what="the backup in flight on the first pod")

    # The pod is lost: its agent and restic die without cleaning up, then the pod object goes.
    pids = processes_of(namespace, old)
    assert len(pids) >= 2, f"expected the agent and its restic, found {pids}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # restic may end with its agent, a moment before
            os.kill(pid, signal.SIGKILL)
    kubectl("delete", "pod", old, "-n", namespace, "--grace-period=0", "--force")

    repo_url = f"{rest_backend.host_url}/{namespace}"
    locks = restic_output(repo_url, PASSWORD, "list", "locks", "--no-lock").split()
    assert len(locks) == 1, locks
    lock = json.loads(restic_output(repo_url, PASSWORD, "cat", "lock", locks[0], "--no-lock"))
    assert lock["hostname"] == old  # restic writes the pod's host name, not --host
    unlocked = plain_restic(repo_url, PASSWORD, "unlock")
    assert unlocked.returncode == 0
    assert restic_output(repo_url, PASSWORD, "list", "locks", "--no-lock").split() == locks  # kept

    [new] = await helpers.rolled_out(kubectl, namespace, "app")
    assert new != old

    def ended(name: str) -> dict[str, Any] | None:
        obj = get(kubectl, "backupsession", name, "-n", namespace)
        return dict(obj) if obj.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    lost = await helpers.until(lambda: ended("in-flight"), timeout=120, what="in-flight ended")
    host = lost["status"]["targets"][0]["stats"][0]
    assert (lost["status"]["phase"], host["reason"], host["pod"]) == ("Failed", "AgentRestarted", old)

    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "after-rollout", "app-backup"))
    done = await helpers.until(lambda: ended("after-rollout"), timeout=300, what="after-rollout ended")
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"])
    found = conditions(done)
    assert found["RetentionPolicyApplied"]["status"] == "True"
    assert done["status"]["targets"][0]["stats"][0]["pod"] == new
    # The Repository's first check is due: it runs once the session has reported, then its status.
    checked = await helpers.until(
        lambda: conditions(get(kubectl, "backupsession", "after-rollout", "-n", namespace)).get(
            "RepositoryIntegrityVerified"
        ),
        timeout=120,
        what="after-rollout's integrity check",
        log=lambda: kubectl("logs", "-n", namespace, new, "-c", "stash", check=False).stdout,
    )
    assert checked["status"] == "True", checked
    await helpers.until(
        lambda: (
            get(kubectl, "repository", "rest-repo", "-n", namespace).get("status", {}).get("integrity")
            is True
        ),
        timeout=60,
        what="rest-repo's integrity true",
    )
    assert restic_output(repo_url, PASSWORD, "list", "locks", "--no-lock").split() == []
    log = kubectl("logs", "-n", namespace, new, "-c", "stash").stdout
    removed = [json.loads(line) for line in log.splitlines() if "removed the locks of holders" in line]
    assert removed, log[-3000:]
    assert any(old in str(entry.get("locks")) and "no longer exists" in str(entry) for entry in removed)
    assert PASSWORD not in log
