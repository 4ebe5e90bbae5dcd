"""The right to exec (``create`` and ``get`` on ``pods/exec``) is granted to the agent only where an
``exec`` hook needs it: in the sidecar's Role for a BackupConfiguration, in stash-init's for a
RestoreSession, never in the Role in a Repository's other namespace. The real authorizer's word on it is
in tests/agent/hooks/test_exec_cluster.py."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import rbac, restore_rbac
from stashlet.operator.injection.rbac import RepositoryAccess

EXEC = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}
EXEC_HOOK = {"exec": {"command": ["sh", "-c", "sync"]}, "containerName": "db"}
HTTP_HOOK = {"httpPost": {"host": "hooks.slack.com", "port": 443, "scheme": "HTTPS", "body": "{}"}}
TCP_HOOK = {"tcpSocket": {"port": 5432}}


def config(hooks: dict[str, Any] | None) -> BackupConfiguration:
    spec: dict[str, Any] = {
        "repository": {"name": "repo"},
        "schedule": "*/5 * * * *",
        "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}},
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    }
    if hooks is not None:
        spec["hooks"] = hooks
    return BackupConfiguration.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "bc", "namespace": "app", "uid": "u1"},
            "spec": spec,
        }
    )


def session(hooks: dict[str, Any] | None) -> RestoreSession:
    spec: dict[str, Any] = {
        "repository": {"name": "repo"},
        "target": {"ref": {"kind": "Deployment", "name": "app"}},
    }
    if hooks is not None:
        spec["hooks"] = hooks
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "rs", "namespace": "app", "uid": "u2"},
            "spec": spec,
        }
    )


def rules_by_namespace(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {o["metadata"]["namespace"]: o["rules"] for o in objects if o["kind"] == "Role"}


@pytest.mark.parametrize(
    ("hooks", "granted"),
    [
        (None, False),
        ({}, False),
        ({"preBackup": HTTP_HOOK, "postBackup": {**TCP_HOOK, "executionPolicy": "OnFailure"}}, False),
        ({"preBackup": EXEC_HOOK}, True),
        ({"preBackup": HTTP_HOOK, "postBackup": {**EXEC_HOOK, "executionPolicy": "OnSuccess"}}, True),
    ],
)
@pytest.mark.parametrize("repository_namespace", ["app", "elsewhere"])
def test_sidecar_may_exec_only_with_an_exec_hook(
    hooks: dict[str, Any] | None, granted: bool, repository_namespace: str
) -> None:
    """The sidecar's Role in the configuration's namespace holds ``pods/exec`` exactly when
    preBackup or postBackup is an exec hook; the Repository's namespace never gets it."""
    for kind in WORKLOAD_KINDS.values():
        objects = rbac.sidecar_rbac(
            config(hooks), kind, "app", repository=RepositoryAccess(repository_namespace, "repo", "secret")
        )
        roles = rules_by_namespace(objects)
        assert (EXEC in roles["app"]) == granted
        assert [r for r in roles["app"] if "pods/exec" in r["resources"]] == ([EXEC] if granted else [])
        if repository_namespace == "elsewhere":
            assert EXEC not in roles["elsewhere"]


@pytest.mark.parametrize(
    ("hooks", "granted"),
    [
        (None, False),
        ({"preRestore": HTTP_HOOK}, False),
        ({"postRestore": {**TCP_HOOK, "executionPolicy": "Always"}}, False),
        ({"preRestore": EXEC_HOOK}, True),
        ({"postRestore": {**EXEC_HOOK, "executionPolicy": "OnFailure"}}, True),
    ],
)
@pytest.mark.parametrize("repository_namespace", ["app", "elsewhere"])
def test_stash_init_may_exec_only_with_an_exec_hook(
    hooks: dict[str, Any] | None, granted: bool, repository_namespace: str
) -> None:
    """stash-init's Role holds ``pods/exec`` exactly when preRestore or postRestore is an
    exec hook (it already reads pods: the executor pod); the Repository's namespace never gets it."""
    objects = restore_rbac.restore_rbac(
        session(hooks),
        WORKLOAD_KINDS["StatefulSet"],
        "app",
        repository=RepositoryAccess(repository_namespace, "repo", "secret"),
    )
    roles = rules_by_namespace(objects)
    assert (EXEC in roles["app"]) == granted
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]} in roles["app"]
    if repository_namespace == "elsewhere":
        assert EXEC not in roles["elsewhere"]


def test_removing_the_exec_hook_makes_the_role_out_of_date() -> None:
    """The reconciler compares rules: a Role granted for an exec hook is not up to date once the hook is
    gone (so the right is taken back), and the other way round."""
    kind = WORKLOAD_KINDS["Deployment"]
    access = RepositoryAccess("app", "repo", "secret")

    def role(hooks: dict[str, Any] | None) -> dict[str, Any]:
        objects = rbac.sidecar_rbac(config(hooks), kind, "app", repository=access)
        return next(o for o in objects if o["kind"] == "Role")

    with_exec, without = role({"preBackup": EXEC_HOOK}), role({"preBackup": HTTP_HOOK})
    assert not rbac.up_to_date(with_exec, without)
    assert not rbac.up_to_date(without, with_exec)
    assert rbac.up_to_date(with_exec, role({"postBackup": EXEC_HOOK}))
