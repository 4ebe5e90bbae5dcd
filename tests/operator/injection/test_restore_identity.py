"""``stash-init``'s own identity (the RestoreSession's account) and what it is granted, as built (pure); the
real API server's word on them is in test_restore_identity_cluster.py."""

from typing import Any

import pytest

from stashlet.api import agent_identity, names
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import restore_rbac
from stashlet.operator.injection.rbac import ObjectRef, RepositoryAccess
from stashlet.operator.restore.reconciler import identity_name_problem

Rules = dict[tuple[str, str, tuple[str, ...]], list[str]]


def rules_of(role: dict[str, Any]) -> Rules:
    return {
        (r["apiGroups"][0], r["resources"][0], tuple(r.get("resourceNames", ()))): r["verbs"]
        for r in role["rules"]
    }


def session(name: str = "rs") -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name, "namespace": "demo", "uid": "uid-rs"},
            "spec": {
                "repository": {"name": "repo"},
                "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}},
            },
        }
    )


def test_stash_init_has_the_sessions_account_and_its_token_secret() -> None:
    """ServiceAccount ``stashlet-restore-<rs>`` (the one its restore Jobs would run as) and the token Secret
    of the same name the token controller fills, both owned by the session and labelled for it."""
    account, token = restore_rbac.restore_identity(session())
    assert (account["kind"], account["metadata"]["name"], account["metadata"]["namespace"]) == (
        "ServiceAccount",
        "stashlet-restore-rs",
        "demo",
    )
    assert restore_rbac.job_service_account(session()) == account["metadata"]["name"]
    assert token["kind"] == "Secret"
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["name"] == "stashlet-restore-rs"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "stashlet-restore-rs"}
    assert "data" not in token
    for obj in (account, token):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-rs"
        assert obj["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
    assert agent_identity.RESTORE_ACCOUNT_PREFIX in agent_identity.TOKEN_ACCOUNT_PREFIXES
    made = restore_rbac.created_for(session(), None)
    assert ObjectRef("RoleBinding", "demo", "stashlet-restore-rs") in made
    assert not [ref for ref in made if ref.kind in ("ServiceAccount", "Secret")]  # garbage with its owner


@pytest.mark.parametrize("repository_namespace", ["demo", "store"])
def test_the_role_goes_to_the_sessions_account_and_reads_the_secret_only_from_elsewhere(
    repository_namespace: str,
) -> None:
    """Bound to ``stashlet-restore-<rs>`` (whatever the workload runs as); the session and its status by
    name; the Repository by name; the storage Secret not at all in the session's namespace (mounted), by
    name in the Repository's other namespace."""
    objs = restore_rbac.restore_rbac(
        session(),
        WORKLOAD_KINDS["Deployment"],
        "app",
        repository=RepositoryAccess(repository_namespace, "repo", "secret"),
    )
    subject = {"kind": "ServiceAccount", "name": "stashlet-restore-rs", "namespace": "demo"}
    assert [o["subjects"] for o in objs if o["kind"] == "RoleBinding"] == [[subject]] * (len(objs) // 2)
    roles = {o["metadata"]["namespace"]: rules_of(o) for o in objs if o["kind"] == "Role"}
    own = roles["demo"]
    assert own[(names.GROUP, "restoresessions", ("rs",))] == ["get"]
    assert own[(names.GROUP, "restoresessions/status", ("rs",))] == ["update"]
    assert own[("apps", "deployments", ("app",))] == ["get"]
    assert not [key for key in own if key[1] == "secrets"]
    there = roles[repository_namespace]
    assert there[(names.GROUP, "repositories", ("repo",))] == ["get"]
    if repository_namespace == "store":
        assert there[("", "secrets", ("secret",))] == ["get"]
        assert [key for key in there if key[1] == "secrets"] == [("", "secrets", ("secret",))]


def test_a_session_name_too_long_for_its_account_is_named() -> None:
    """A RestoreSession whose account name would pass 253 characters is refused by name; the longest that
    fits is not."""
    longest = agent_identity.MAX_OBJECT_NAME - len(agent_identity.RESTORE_ACCOUNT_PREFIX)
    assert identity_name_problem(session("r" * longest)) is None
    problem = identity_name_problem(session("r" * (longest + 1)))
    assert problem is not None
    assert problem.startswith(f"metadata.name: RestoreSession demo/{'r' * (longest + 1)} is longer than")
    assert "stashlet-restore-<name>" in problem
