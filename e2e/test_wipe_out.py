"""``spec.wipeOut`` end to end on the real node: the Repository's backend data goes with it, but only once
nothing uses it, and a wipe that cannot be done keeps the Repository and says why.

stashlet is installed with its Helm chart; the backend is the restic REST server pod. The wipe is a Job
running ``stashlet-agent wipe`` from the agent image, as the ServiceAccount the operator made for it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import plain_restic, rest_storage

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "wipe-out-e2e-password"
FINALIZER = "stash.appscode.com/wipe-out"


def restic(url: str, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    """Plain restic against the REST server, as this host reaches it."""
    return plain_restic(url, password, *args)


def storage(namespace: str, name: str, url: str, password: str) -> list[dict[str, Any]]:
    return rest_storage(namespace, url, password, name=name, secret=f"{name}-secret", wipeOut=True)


def configuration(namespace: str, repository: str) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "uses-it", "namespace": namespace},
        "spec": {
            "schedule": "0 0 1 1 *",
            "task": {"name": "kubedump-backup-0.1.0"},
            "repository": {"name": repository},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }


def events(kubectl: Callable[..., Any], namespace: str, name: str) -> dict[str, str]:
    listed = json.loads(
        kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        ).stdout
    )
    return {e["reason"]: e["message"] for e in listed["items"]}


def exists(kubectl: Callable[..., Any], namespace: str, name: str) -> dict[str, Any] | None:
    out = kubectl("get", "repository", name, "-n", namespace, "-o", "json", "--ignore-not-found").stdout
    return json.loads(out) if out.strip() else None


async def test_wipe_out_waits_for_the_users_then_removes_the_backend_data(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    operator_for(namespace)
    host_url = f"{rest_backend.host_url}/{namespace}-wiped"
    source = tmp_path / "data"
    source.mkdir()
    (source / "file").write_text("precious\n" * 1000)
    assert restic(host_url, "init").returncode == 0
    for host in ("host-0", "another-configuration"):
        assert restic(host_url, "backup", "--host", host, str(source)).returncode == 0
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=storage(namespace, "wiped", f"{rest_server}/{namespace}-wiped", PASSWORD),
    )
    kubectl("apply", "-f", "-", input_obj=configuration(namespace, "wiped"))

    def finalized() -> bool:
        repo = exists(kubectl, namespace, "wiped") or {}
        return FINALIZER in repo.get("metadata", {}).get("finalizers", [])

    await helpers.until(finalized, timeout=60, what="the wipe-out finalizer on the Repository")
    kubectl("delete", "repository", "wiped", "-n", namespace, "--wait=false")

    def waiting() -> str | None:
        return events(kubectl, namespace, "wiped").get("WipeOutWaiting")

    message = await helpers.until(waiting, timeout=60, what="the WipeOutWaiting event")
    assert f"BackupConfiguration {namespace}/uses-it" in message
    assert exists(kubectl, namespace, "wiped") is not None  # in use: nothing wiped, the object stays
    assert len(json.loads(restic(host_url, "snapshots", "--json").stdout)) == 2

    kubectl("delete", "backupconfiguration", "uses-it", "-n", namespace)
    await helpers.until(
        lambda: exists(kubectl, namespace, "wiped") is None, timeout=180, what="the Repository gone"
    )
    assert json.loads(restic(host_url, "snapshots", "--json").stdout) == []
    listed = restic(host_url, "list", "packs")
    assert listed.returncode == 0 and listed.stdout.strip() == ""  # no backed-up data stays
    seen = events(kubectl, namespace, "wiped")
    assert {"WipeOutStarted", "BackendDataWiped", "WipedOut"} <= set(seen), seen
    assert "Forgot 2 snapshot(s)" in seen["BackendDataWiped"]
    assert PASSWORD not in json.dumps(seen)


async def test_a_wipe_that_fails_keeps_the_repository_and_says_why(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    operator_for(namespace)
    host_url = f"{rest_backend.host_url}/{namespace}-kept"
    assert restic(host_url, "init").returncode == 0
    (tmp_path / "f").write_text("kept\n")
    assert restic(host_url, "backup", str(tmp_path)).returncode == 0
    wrong = "not-the-password"
    kubectl(
        "apply", "-f", "-", input_obj=storage(namespace, "kept", f"{rest_server}/{namespace}-kept", wrong)
    )
    await helpers.until(
        lambda: (
            FINALIZER
            in ((exists(kubectl, namespace, "kept") or {}).get("metadata", {}).get("finalizers", []))
        ),
        timeout=60,
        what="the wipe-out finalizer",
    )
    kubectl("delete", "repository", "kept", "-n", namespace, "--wait=false")

    def failed() -> dict[str, str] | None:
        seen = events(kubectl, namespace, "kept")
        return seen if {"WipeOutFailed", "WipeOutJobFailed"} <= set(seen) else None

    seen = await helpers.until(failed, timeout=240, what="the failed wipe's events")
    assert "password" in seen["WipeOutFailed"].lower()
    assert wrong not in json.dumps(seen)
    assert exists(kubectl, namespace, "kept") is not None
    assert len(json.loads(restic(host_url, "snapshots", "--json").stdout)) == 1  # nothing lost
    kubectl(
        "patch",
        "repository",
        "kept",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
