"""``preRestore`` and ``postRestore`` run by ``stashlet-agent restore`` (the stash-init init-container):
real API server, real restic, a real HTTP server on this machine receiving the hooks. The agent runs as a
process with exactly the init-container's RBAC (see tests/agent/restore/test_restore.py, whose helpers
these tests share)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.agent.hooks.conftest import Recorder, closed_port
from tests.agent.restore.test_restore import RestoreEnv, Run, conditions, manifest, wipe, write_tree

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


@pytest.fixture
def env(
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    restic_binary: str,
    service_account_kubeconfig: Any,
    template_repository: Path,
) -> RestoreEnv:
    """A namespace with the storage Secret and a local Repository holding an empty restic repository."""
    environment = RestoreEnv(
        kubectl, namespace, tmp_path, restic_binary, service_account_kubeconfig, template_repository
    )
    environment.apply(environment.secret(), environment.repository())
    return environment


def with_hooks(session: dict[str, Any], hooks: dict[str, Any]) -> dict[str, Any]:
    session["spec"]["hooks"] = hooks
    return session


def post_to(recorder: Recorder, path: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"httpPost": {"host": "127.0.0.1", "port": recorder.port, "path": path, "body": body}, **extra}


async def restore(env: RestoreEnv, kubeconfig: Path) -> Run:
    """One start of the init-container, off the event loop (the test's HTTP server answers meanwhile)."""
    return await asyncio.to_thread(env.run, "rs", "Deployment", "app", "app-1", kubeconfig)


def restic_runs(run: Run) -> list[str]:
    """The restic commands the agent ran on the repository (its runner logs each at debug level; the
    ``restic version`` of the agent's start does not count)."""
    commands = [str(line.get("msg", "")) for line in run.lines()]
    return [c for c in commands if c.startswith("running ") and not c.endswith(" version")]


def hook_events(env: RestoreEnv) -> list[tuple[str, str]]:
    return sorted((e["type"], e["reason"]) for e in env.events("rs") if "Hook" in e["reason"])


async def test_pre_restore_runs_before_restic_and_post_restore_after_it(
    env: RestoreEnv, recorder: Recorder
) -> None:
    """preRestore is posted while the volume is still empty, then restic restores, then an OnSuccess
    postRestore is posted with the session's name, phase Succeeded and no error; both conditions are True
    with Stash's reasons, each hook has a Normal event, and the session Succeeded."""
    write_tree(env.data, "hooks")
    before = manifest(env.data)
    env.backup("host-0", env.data)
    wipe(env.data)
    volume_at_pre: list[list[str]] = []

    def observe(request: Any) -> None:
        if request.path == "/pre":
            volume_at_pre.append(sorted(p.name for p in env.data.iterdir()))

    recorder.observe = observe
    hooks = {
        "preRestore": post_to(recorder, "/pre", "pre {{ .Name }} {{ .Invoker.Kind }} {{ .Target.Name }}"),
        "postRestore": post_to(
            recorder,
            "/post",
            "post {{ .Namespace }}/{{ .Name }} {{ .Status.Phase }} [{{ .Status.Error }}]",
            executionPolicy="OnSuccess",
        ),
    }
    env.apply(
        env.workload("Deployment", "app"), with_hooks(env.restore_session("rs", "Deployment", "app"), hooks)
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    run = await restore(env, kubeconfig)

    assert run.code == 0, run.log[-4000:]
    assert manifest(env.data) == before
    assert volume_at_pre == [[]]
    assert any(" restore " in c for c in restic_runs(run)), restic_runs(run)
    assert [(s.path, s.body.decode()) for s in recorder.seen] == [
        ("/pre", "pre rs RestoreSession app"),
        ("/post", f"post {env.namespace}/rs Succeeded []"),
    ]
    status = env.session("rs")["status"]
    assert status["phase"] == "Succeeded"
    found = conditions(status)
    assert found["PreRestoreHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPreRestoreHook")
    assert found["PostRestoreHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPostRestoreHook")
    messages = {c["type"]: c["message"] for c in status["conditions"]}
    assert messages["PreRestoreHookExecutionSucceeded"] == "Successfully executed preRestore hook."
    assert hook_events(env) == [
        ("Normal", "SuccessfullyExecutedPostRestoreHook"),
        ("Normal", "SuccessfullyExecutedPreRestoreHook"),
    ]


async def test_a_failing_pre_restore_restores_nothing_and_an_on_failure_post_restore_reports_it(
    env: RestoreEnv, recorder: Recorder
) -> None:
    """A preRestore tcpSocket to a closed port fails: restic never runs (the volume stays empty), the
    host is Failed with FailedToExecutePreRestoreHook, the init-container exits non-zero; the
    OnFailure postRestore still runs and its body carries phase Failed and the error."""
    write_tree(env.data, "never")
    env.backup("host-0", env.data)
    wipe(env.data)
    port = closed_port()
    hooks = {
        "preRestore": {"tcpSocket": {"host": "127.0.0.1", "port": port}},
        "postRestore": post_to(
            recorder, "/alert", "{{ .Status.Phase }}: {{ .Status.Error }}", executionPolicy="OnFailure"
        ),
    }
    env.apply(
        env.workload("Deployment", "app"), with_hooks(env.restore_session("rs", "Deployment", "app"), hooks)
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    run = await restore(env, kubeconfig)

    assert run.code != 0, run.log[-4000:]
    assert list(env.data.iterdir()) == []
    assert restic_runs(run) == []
    status = env.session("rs")["status"]
    assert status["phase"] == "Failed"
    [host] = status["stats"]
    why = f"tcpSocket: tcp 127.0.0.1:{port}: cannot connect"
    assert host["phase"] == "Failed"
    assert host["error"].startswith(f"FailedToExecutePreRestoreHook: {why}"), host["error"]
    found = conditions(status)
    assert found["PreRestoreHookExecutionSucceeded"] == ("False", "FailedToExecutePreRestoreHook")
    assert found["PostRestoreHookExecutionSucceeded"] == ("True", "SuccessfullyExecutedPostRestoreHook")
    messages = {c["type"]: c["message"] for c in status["conditions"]}
    assert messages["PreRestoreHookExecutionSucceeded"].startswith(
        f"Failed to execute preRestore hook. Reason: {why}"
    )
    [alert] = recorder.seen
    assert alert.body.decode().startswith(f"Failed: FailedToExecutePreRestoreHook: {why}")
    assert hook_events(env) == [
        ("Normal", "SuccessfullyExecutedPostRestoreHook"),
        ("Warning", "FailedToExecutePreRestoreHook"),
    ]


async def test_a_failing_post_restore_fails_the_host_and_a_policy_skip_lets_the_retry_succeed(
    env: RestoreEnv, recorder: Recorder
) -> None:
    """After a good restore a postRestore answered 500 fails the host (FailedToExecutePostRestoreHook),
    the session and the init-container's start. The hook is changed to OnFailure and the pod restarts: the
    data is restored again, the hook is skipped (its condition True with Stash's skip message, nothing
    sent), and the session Succeeded."""
    write_tree(env.data, "post")
    before = manifest(env.data)
    env.backup("host-0", env.data)
    wipe(env.data)
    recorder.status = 500
    session = env.restore_session("rs", "Deployment", "app")
    env.apply(
        env.workload("Deployment", "app"), with_hooks(session, {"postRestore": post_to(recorder, "/p", "x")})
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    first = await restore(env, kubeconfig)

    assert first.code != 0, first.log[-4000:]
    assert manifest(env.data) == before  # restored; the hook came after
    status = env.session("rs")["status"]
    assert status["phase"] == "Failed"
    assert status["stats"][0]["error"].startswith(
        f"FailedToExecutePostRestoreHook: httpPost: POST http://127.0.0.1:{recorder.port}: HTTP status 500"
    )
    assert conditions(status)["PostRestoreHookExecutionSucceeded"] == (
        "False",
        "FailedToExecutePostRestoreHook",
    )
    assert len(recorder.seen) == 1

    env.apply(with_hooks(session, {"postRestore": post_to(recorder, "/p", "x", executionPolicy="OnFailure")}))
    second = await restore(env, kubeconfig)

    assert second.code == 0, second.log[-4000:]
    assert manifest(env.data) == before
    status = env.session("rs")["status"]
    assert status["phase"] == "Succeeded"
    assert conditions(status)["PostRestoreHookExecutionSucceeded"] == (
        "True",
        "SuccessfullyExecutedPostRestoreHook",
    )
    message = {c["type"]: c["message"] for c in status["conditions"]}["PostRestoreHookExecutionSucceeded"]
    assert (
        message
        == 'Skipping executing postRestore. Reason: executionPolicy is "OnFailure" but phase is "Succeeded".'
    )
    assert len(recorder.seen) == 1


async def test_a_wrong_hook_fails_the_host_naming_the_field(env: RestoreEnv) -> None:
    """A hook with two actions is refused before anything runs: host Failed with reason InvalidHook and
    the field path; nothing restored."""
    write_tree(env.data, "invalid")
    env.backup("host-0", env.data)
    wipe(env.data)
    hooks = {"preRestore": {"tcpSocket": {"port": 1}, "httpGet": {"port": 1}}}
    env.apply(
        env.workload("Deployment", "app"), with_hooks(env.restore_session("rs", "Deployment", "app"), hooks)
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    run = await restore(env, kubeconfig)

    assert run.code != 0
    assert list(env.data.iterdir()) == []
    error = env.session("rs")["status"]["stats"][0]["error"]
    assert error.startswith("InvalidHook: spec.hooks.preRestore: give exactly one of"), error
