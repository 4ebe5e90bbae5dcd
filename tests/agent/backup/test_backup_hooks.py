"""``preBackup`` and ``postBackup`` run by the sidecar: real API server, real restic, a real HTTP server on
this machine receiving the hooks, the agent as a process with exactly the sidecar's RBAC (the harness of
tests/agent/backup/test_sidecar.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import Setup, events_for, get, wait_phase, write_tree
from tests.agent.hooks.conftest import Recorder, closed_port, recorder

pytestmark = [pytest.mark.cluster, pytest.mark.restic]
__all__ = ["recorder"]  # the fixture, shared with the hooks package's tests


def post_to(recorder: Recorder, path: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"httpPost": {"host": "127.0.0.1", "port": recorder.port, "path": path, "body": body}, **extra}


def with_hooks(setup: Setup, hooks: dict[str, Any]) -> None:
    patch = json.dumps({"spec": {"hooks": hooks}})
    setup.kubectl(
        "patch", "backupconfiguration", "app-backup", "-n", setup.namespace, "--type=merge", "-p", patch
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The conditions of the session's one target (where Stash puts a hook's outcome)."""
    [target] = status["targets"]
    return {c["type"]: (c["status"], c.get("reason", "")) for c in target.get("conditions", [])}


@pytest.fixture
def setup(kubectl: Callable[..., Any], namespace: str, tmp_path: Path) -> Setup:
    """A Deployment's backup objects (local Repository, RBAC as the operator grants) and its data."""
    made = Setup(kubectl, namespace, tmp_path)
    write_tree(made.data)
    made.apply()
    return made


async def back_up(
    setup: Setup,
    hooks: dict[str, Any],
    session: str,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> tuple[dict[str, Any], Any]:
    """Give the configuration ``hooks``, start the sidecar, run ``session`` to its end: the session and
    the agent process."""
    with_hooks(setup, hooks)
    agent = setup.start_agent(
        start_agent, service_account_kubeconfig(setup.namespace, setup.account), pod_name="app-7d4b9-x1"
    )
    name = setup.session(session)
    done = await asyncio.to_thread(wait_phase, setup.kubectl, setup.namespace, name, {"Succeeded", "Failed"})
    return done, agent


async def test_pre_backup_runs_before_restic_and_post_backup_after_it(
    recorder: Recorder,
    setup: Setup,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """preBackup is posted before any snapshot exists, then restic backs up, then an OnSuccess postBackup is
    posted with the session's name and phase; both conditions True with Stash's reasons, a Normal event
    each, and the session Succeeded."""
    snapshots_at_pre: list[int] = []

    def observe(request: Any) -> None:
        if request.path == "/pre" and (setup.repo_dir / "config").exists():
            listed = setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout
            snapshots_at_pre.append(len(json.loads(listed)))
        elif request.path == "/pre":
            snapshots_at_pre.append(0)

    recorder.observe = observe
    hooks = {
        "preBackup": post_to(recorder, "/pre", "pre {{ .Name }} {{ .Invoker.Kind }} {{ .Target.Name }}"),
        "postBackup": post_to(
            recorder,
            "/post",
            "post {{ .Name }} {{ .Status.Phase }} [{{ .Status.Error }}]",
            executionPolicy="OnSuccess",
        ),
    }
    done, agent = await back_up(setup, hooks, "hooked", start_agent, service_account_kubeconfig)

    assert done["status"]["phase"] == "Succeeded", (done["status"], agent.logs()[-3000:])
    assert snapshots_at_pre == [0]
    assert [(s.path, s.body.decode()) for s in recorder.seen] == [
        ("/pre", "pre hooked BackupConfiguration app"),
        ("/post", "post hooked Succeeded []"),
    ]
    found = conditions(done["status"])
    assert found["PreBackupHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPreBackupHook")
    assert found["PostBackupHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPostBackupHook")
    reasons = sorted(
        (e["type"], e["reason"])
        for e in events_for(setup.kubectl, setup.namespace, "hooked")
        if "Hook" in e["reason"]
    )
    assert reasons == [
        ("Normal", "SuccessfullyExecutedPostBackupHook"),
        ("Normal", "SuccessfullyExecutedPreBackupHook"),
    ]


async def test_a_failing_pre_backup_takes_no_snapshot_and_an_on_failure_post_backup_reports_it(
    recorder: Recorder,
    setup: Setup,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """A preBackup tcpSocket to a closed port fails: restic does not run (no repository, no snapshot), the
    host is Failed with FailedToExecutePreBackupHook and the session Failed; the OnFailure postBackup still
    runs and its body carries phase Failed and the error."""
    port = closed_port()
    hooks = {
        "preBackup": {"tcpSocket": {"host": "127.0.0.1", "port": port}},
        "postBackup": post_to(
            recorder, "/alert", "{{ .Status.Phase }}: {{ .Status.Error }}", executionPolicy="OnFailure"
        ),
    }
    done, _ = await back_up(setup, hooks, "refused", start_agent, service_account_kubeconfig)

    assert done["status"]["phase"] == "Failed"
    [host] = done["status"]["targets"][0]["stats"]
    why = f"tcpSocket: tcp 127.0.0.1:{port}: cannot connect"
    assert (host["phase"], host["reason"]) == ("Failed", "FailedToExecutePreBackupHook"), host
    assert why in host["error"]
    # restic never ran: not even the repository was created (the backup creates it, its first time)
    listed = setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary, check=False)
    assert listed.returncode == 10, listed.stderr
    found = conditions(done["status"])
    assert found["PreBackupHookExecutionSucceeded"] == ("False", "FailedToExecutePreBackupHook")
    assert found["PostBackupHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPostBackupHook")
    [alert] = recorder.seen
    assert alert.path == "/alert"
    assert alert.body.decode().startswith("Failed: ") and why in alert.body.decode()
    assert (
        get(setup.kubectl, "backupsession", "refused", "-n", setup.namespace)["status"]["phase"] == "Failed"
    )
