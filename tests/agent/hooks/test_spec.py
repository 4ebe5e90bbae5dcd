"""Hooks parsed from the manifests' dicts, the execution policy, and Stash's condition for each result."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stashlet.agent.hooks import (
    ExecutionPolicy,
    HookKind,
    HookResult,
    HookSpecError,
    backup_hooks,
    hook_condition,
    restore_hooks,
    skip_reason,
)
from stashlet.agent.hooks.data import restore_data
from stashlet.agent.hooks.outcome import Scrubber
from stashlet.api.backupconfiguration import BackupHooks
from stashlet.api.durations import format_whole_seconds
from stashlet.api.hooks import ExecAction, FormEntry, HTTPAction, HTTPHeader, TCPSocketAction
from stashlet.api.restoresession import RestoreSession


def test_stash_guide_examples_parse_into_typed_hooks() -> None:
    """The hook shapes of Stash's guide: exec with containerName, httpPost with headers and a body and
    a post policy, httpGet by named port, tcpSocket; the pydantic model and a plain dict both work."""
    hooks = backup_hooks(
        BackupHooks.from_dict(
            {
                "preBackup": {
                    "exec": {"command": ["/bin/sh", "-c", "mysql -e 'SET GLOBAL super_read_only = ON;'"]},
                    "containerName": "mysql",
                },
                "postBackup": {
                    "executionPolicy": "OnFailure",
                    "httpPost": {
                        "host": "hooks.slack.com",
                        "path": "/services/XX/XXX/XXXX",
                        "port": 443,
                        "scheme": "HTTPS",
                        "httpHeaders": [{"name": "Content-Type", "value": "application/json"}],
                        "body": "{}",
                    },
                },
            }
        )
    )
    assert hooks.pre is not None and hooks.post is not None
    assert hooks.pre.action == ExecAction(("/bin/sh", "-c", "mysql -e 'SET GLOBAL super_read_only = ON;'"))
    assert (hooks.pre.container_name, hooks.pre.execution_policy) == ("mysql", ExecutionPolicy.ALWAYS)
    assert hooks.has_exec
    assert hooks.post.execution_policy == ExecutionPolicy.ON_FAILURE
    assert hooks.post.path == "spec.hooks.postBackup"
    assert hooks.post.action == HTTPAction(
        method="POST",
        port=443,
        host="hooks.slack.com",
        path="/services/XX/XXX/XXXX",
        scheme="HTTPS",
        headers=(HTTPHeader("Content-Type", "application/json"),),
        body="{}",
    )
    restore = restore_hooks(
        {
            "preRestore": {
                "httpGet": {"port": "my-port", "path": "demo", "scheme": "http"},
                "containerName": "c",
            },
            "postRestore": {"tcpSocket": {"host": "db.demo.svc", "port": 5432}},
        }
    )
    assert restore.pre is not None and restore.post is not None
    assert restore.pre.action == HTTPAction(method="GET", port="my-port", path="/demo", scheme="HTTP")
    assert restore.post.action == TCPSocketAction(port=5432, host="db.demo.svc")
    assert restore.post.execution_policy == ExecutionPolicy.ALWAYS
    assert not restore.has_exec
    assert backup_hooks(None).pre is None and not backup_hooks(None).has_exec


def test_a_form_with_entries_replaces_the_body() -> None:
    """``form`` entries become the payload; an empty form is no form."""
    hooks = restore_hooks(
        {"preRestore": {"httpPost": {"port": 80, "form": [{"key": "name", "values": ["john doe", "x"]}]}}}
    )
    assert hooks.pre is not None and isinstance(hooks.pre.action, HTTPAction)
    assert hooks.pre.action.form == (FormEntry("name", ("john doe", "x")),)
    empty = restore_hooks({"preRestore": {"httpPost": {"port": 80, "form": [], "body": "b"}}})
    assert empty.pre is not None and isinstance(empty.pre.action, HTTPAction)
    assert (empty.pre.action.form, empty.pre.action.body) == (None, "b")


@pytest.mark.parametrize(
    ("hooks", "error"),
    [
        ({"preBackup": {"httpGet": {"port": True}}}, r"^spec\.hooks\.preBackup\.httpGet\.port: give a port"),
        (
            {"preBackup": {"httpGet": {"port": 70000}}},
            r"^spec\.hooks\.preBackup\.httpGet\.port: 70000 is not",
        ),
        ({"preBackup": {"tcpSocket": {}}}, r"^spec\.hooks\.preBackup\.tcpSocket\.port:"),
        ({"preBackup": {}}, r"^spec\.hooks\.preBackup: give exactly one of .*\(found: none\)"),
        (
            {"preBackup": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}},
            r"found: exec, tcpSocket",
        ),
        (
            {"preBackup": {"exec": {"command": []}}},
            r"^spec\.hooks\.preBackup\.exec\.command: give the command",
        ),
        (
            {"preBackup": {"exec": {"command": ["a", 1]}}},
            r"^spec\.hooks\.preBackup\.exec\.command\[1\]: expected",
        ),
        ({"preBackup": {"exec": {"command": "ls"}}}, r"exec\.command: expected a list"),
        (
            {"preBackup": {"exec": {"command": ["x"]}, "executionPolicy": "Always"}},
            r"preBackup\.executionPolicy",
        ),
        (
            {"preBackup": {"exec": {"command": ["x"]}, "timeoutSeconds": 5}},
            r"preBackup\.timeoutSeconds: not a field",
        ),
        (
            {"postBackup": {"exec": {"command": ["x"]}, "executionPolicy": "Sometimes"}},
            r"'Sometimes' is not one",
        ),
        ({"preBackup": {"httpGet": {"port": 1, "scheme": "FTP"}}}, r"httpGet\.scheme: 'FTP' is neither"),
        ({"preBackup": {"httpGet": {"port": 1, "body": "x"}}}, r"httpGet\.body: not a field"),
        (
            {"preBackup": {"httpPost": {"port": 1, "httpHeaders": [{"value": "v"}]}}},
            r"httpHeaders\[0\]\.name",
        ),
        ({"preBackup": "curl"}, r"^spec\.hooks\.preBackup: expected an object"),
        ({"preBackupp": {"exec": {"command": ["x"]}}}, r"^spec\.hooks\.preBackupp: not a field"),
    ],
)
def test_wrong_hooks_are_refused_naming_the_field_path(hooks: dict[str, Any], error: str) -> None:
    """Every wrong shape, unknown field, missing or doubled action is a HookSpecError (a RefuseInput)
    whose message starts with the field's path."""
    with pytest.raises(HookSpecError, match=error):
        backup_hooks(hooks)


def test_on_final_retry_failure_is_a_backup_policy_only() -> None:
    """``OnFinalRetryFailure`` is accepted for postBackup, refused for postRestore (Stash's enums)."""
    hook = {"exec": {"command": ["x"]}, "executionPolicy": "OnFinalRetryFailure"}
    assert backup_hooks({"postBackup": hook}).post is not None
    with pytest.raises(HookSpecError, match=r"spec\.hooks\.postRestore\.executionPolicy"):
        restore_hooks({"postRestore": hook})


def session(created: dt.datetime) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "rs", "namespace": "demo", "creationTimestamp": created.isoformat()},
            "spec": {"target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}}},
        }
    )


@pytest.mark.parametrize(
    ("policy", "phase", "retry_left", "runs"),
    [
        (ExecutionPolicy.ALWAYS, "Succeeded", 0, True),
        (ExecutionPolicy.ALWAYS, "Failed", 0, True),
        (ExecutionPolicy.ON_SUCCESS, "Succeeded", 0, True),
        (ExecutionPolicy.ON_SUCCESS, "Failed", 0, False),
        (ExecutionPolicy.ON_FAILURE, "Failed", 0, True),
        (ExecutionPolicy.ON_FAILURE, "Succeeded", 0, False),
        (ExecutionPolicy.ON_FINAL_RETRY_FAILURE, "Failed", 0, True),
        (ExecutionPolicy.ON_FINAL_RETRY_FAILURE, "Failed", 1, False),
        (ExecutionPolicy.ON_FINAL_RETRY_FAILURE, "Succeeded", 0, False),
    ],
)
def test_execution_policy_decides_from_the_phase(
    policy: ExecutionPolicy, phase: str, retry_left: int, runs: bool
) -> None:
    """Stash's IsAllowedByExecutionPolicy; a skip says why in Stash's words."""
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    data = restore_data(session(created), phase=phase, now=created + dt.timedelta(seconds=65))
    data = type(data)(**{**data.__dict__, "retry_left": retry_left})
    reason = skip_reason(HookKind.POST_BACKUP, policy, data)
    assert (reason is None) == runs
    if not runs:
        assert reason == (
            f'Skipping executing postBackup. Reason: executionPolicy is "{policy}" but phase is "{phase}".'
        )


def test_restore_data_is_stash_summary_of_the_session() -> None:
    """Name, namespace, the RestoreSession as invoker, the target, the phase and error given, and the
    time since creation in whole seconds as Go prints it."""
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    data = restore_data(
        session(created), phase="Failed", error="boom", now=created + dt.timedelta(seconds=3725.4)
    )
    assert (data.name, data.namespace, data.invoker.kind, data.invoker.name) == (
        "rs",
        "demo",
        "RestoreSession",
        "rs",
    )
    assert (data.target.api_version, data.target.kind, data.target.name) == ("apps/v1", "Deployment", "app")
    assert (data.status.phase, data.status.error, data.status.duration) == ("Failed", "boom", "1h2m5s")
    assert [format_whole_seconds(s) for s in (0, 0.4, 45, 65, 3600)] == ["0s", "0s", "45s", "1m5s", "1h0m0s"]


@pytest.mark.parametrize(
    ("kind", "ok", "type_", "reason"),
    [
        (HookKind.PRE_BACKUP, True, "PreBackupHookExecutionSucceeded", "SuccessfullyExecutedPreBackupHook"),
        (HookKind.PRE_BACKUP, False, "PreBackupHookExecutionSucceeded", "FailedToExecutePreBackupHook"),
        (
            HookKind.POST_BACKUP,
            True,
            "PostBackupHookExecutionSucceeded",
            "SuccessfullyExecutedPostBackupHook",
        ),
        (HookKind.POST_BACKUP, False, "PostBackupHookExecutionSucceeded", "FailedToExecutePostBackupHook"),
        (
            HookKind.PRE_RESTORE,
            True,
            "PreRestoreHookExecutionSucceeded",
            "SuccessfullyExecutedPreRestoreHook",
        ),
        (HookKind.PRE_RESTORE, False, "PreRestoreHookExecutionSucceeded", "FailedToExecutePreRestoreHook"),
        (
            HookKind.POST_RESTORE,
            True,
            "PostRestoreHookExecutionSucceeded",
            "SuccessfullyExecutedPostRestoreHook",
        ),
        (HookKind.POST_RESTORE, False, "PostRestoreHookExecutionSucceeded", "FailedToExecutePostRestoreHook"),
    ],
)
def test_each_result_maps_to_stash_condition(kind: HookKind, ok: bool, type_: str, reason: str) -> None:
    """Condition type, status, reason and message as Stash's conditions package writes them."""
    condition = hook_condition(kind, HookResult(kind, ok, "exec: it broke"))
    assert (condition.type, condition.ok, condition.reason) == (type_, ok, reason)
    assert condition.event_type == ("Normal" if ok else "Warning")
    expected = (
        f"Successfully executed {kind} hook."
        if ok
        else f"Failed to execute {kind} hook. Reason: exec: it broke"
    )
    assert condition.message == expected


def test_a_skipped_post_hook_is_a_true_condition_with_the_skip_message() -> None:
    """As Stash: skipped by its policy, the hook's condition is True and says why it did not run."""
    result = HookResult(
        HookKind.POST_RESTORE, True, "Skipping executing postRestore. Reason: x", skipped=True
    )
    condition = hook_condition(HookKind.POST_RESTORE, result)
    assert (condition.ok, condition.message) == (True, "Skipping executing postRestore. Reason: x")


def test_scrubber_masks_every_value_of_the_definition_that_may_be_secret() -> None:
    """Header values, the path and its segments, query values, body, form values and command
    arguments are masked wherever they appear; short values (under 4 characters) are not."""
    post = restore_hooks(
        {
            "preRestore": {
                "httpPost": {
                    "port": 443,
                    "path": "/services/T0KEN1/B0KEN2/s3cr3tPart?sig=abcdef",
                    "httpHeaders": [{"name": "Authorization", "value": "Bearer tok-123456"}],
                    "body": "hello-body",
                    "form": [{"key": "k", "values": ["form-secret"]}],
                }
            },
            "postRestore": {"exec": {"command": ["/bin/sh", "-c", "echo pw=hunter22", "ab"]}},
        }
    )
    assert post.pre is not None and post.post is not None
    scrub = Scrubber.of(post.pre, "rendered-xyz")
    text = "T0KEN1 B0KEN2 s3cr3tPart sig=abcdef Bearer tok-123456 hello-body form-secret rendered-xyz 443"
    masked = scrub(text)
    for secret in (
        "T0KEN1",
        "B0KEN2",
        "s3cr3tPart",
        "abcdef",
        "tok-123456",
        "hello-body",
        "form-secret",
        "xyz",
    ):
        assert secret not in masked
    assert masked.endswith("443")
    scrub_exec = Scrubber.of(post.post)
    assert scrub_exec("ran: echo pw=hunter22 ab") == "ran: *** ab"
    assert scrub_exec.quote(b"x" * 1000).startswith("...") and len(scrub_exec.quote(b"x" * 1000)) == 303
