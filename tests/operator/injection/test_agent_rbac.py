"""The sidecar's own identity and what it is granted, as built (pure); the real API server's word on them is
in test_rbac_cluster.py."""

from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.operator.backup.agent_identity import account_condition, name_problem
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import rbac

Rules = dict[tuple[str, str, tuple[str, ...]], list[str]]


def rules_of(role: dict[str, Any]) -> Rules:
    return {
        (r["apiGroups"][0], r["resources"][0], tuple(r.get("resourceNames", ()))): r["verbs"]
        for r in role["rules"]
    }


def test_the_sidecar_has_an_account_of_its_own_and_its_token_secret(bc: BackupConfiguration) -> None:
    """ServiceAccount ``stashlet-agent-<bc>`` and the token Secret of the same name the token controller
    fills, both owned by the configuration and labelled for it."""
    account, token = rbac.agent_identity(bc)
    assert (account["kind"], account["metadata"]["name"], account["metadata"]["namespace"]) == (
        "ServiceAccount",
        "stashlet-agent-pause-backup",
        "demo",
    )
    assert token["kind"] == "Secret"
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["name"] == "stashlet-agent-pause-backup"
    assert token["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "stashlet-agent-pause-backup"
    }
    assert "data" not in token
    for obj in (account, token):
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "BackupConfiguration"
        assert obj["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
    made = rbac.created_for(bc, None)
    assert rbac.ObjectRef("RoleBinding", "demo", "stashlet-sidecar-pause-backup") in made
    assert not [ref for ref in made if ref.kind == "ServiceAccount"]  # garbage-collected with its owner


def test_the_role_goes_to_the_sidecars_account_and_reads_no_secret_of_its_namespace(
    bc: BackupConfiguration,
) -> None:
    """Bound to ``stashlet-agent-<bc>`` (whatever the workload runs as); names everything it can; no
    Secret at all when the Repository lives in the configuration's namespace (it is mounted)."""
    role, binding = rbac.sidecar_rbac(
        bc, WORKLOAD_KINDS["Deployment"], "stash-demo", repository=rbac.RepositoryAccess("demo", "r", "s")
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-agent-pause-backup", "namespace": "demo"}
    ]
    rules = rules_of(role)
    assert not [key for key in rules if key[1] == "secrets"]
    assert rules[(names.GROUP, "backupconfigurations", ("pause-backup",))] == ["get", "list", "watch"]
    assert rules[(names.GROUP, "repositories", ("r",))] == ["get", "list", "watch"]
    assert rules[(names.GROUP, "repositories/status", ("r",))] == ["get", "update", "patch"]
    assert rules[("apps", "deployments", ("stash-demo",))] == ["get"]
    assert rules[("coordination.k8s.io", "leases", ("lock-deployment-stash-demo-backup",))] == [
        "get",
        "update",
        "patch",
    ]
    assert all("delete" not in verbs for verbs in rules.values())


def test_a_repository_elsewhere_grants_its_one_secret_by_name_there(bc: BackupConfiguration) -> None:
    """From another namespace the Secret cannot be mounted: ``get`` on that one Secret, in the Role made
    there (unowned, deleted by the finalizer), bound to the sidecar's account."""
    objects = rbac.sidecar_rbac(
        bc, WORKLOAD_KINDS["Deployment"], "stash-demo", repository=rbac.RepositoryAccess("backup", "r", "s")
    )
    here = [o for o in objects if o["metadata"]["namespace"] == "demo"]
    there = [o for o in objects if o["metadata"]["namespace"] == "backup"]
    assert not [k for k in rules_of(here[0]) if k[1] == "secrets"]
    assert rules_of(there[0])[("", "secrets", ("s",))] == ["get"]
    assert "ownerReferences" not in there[0]["metadata"]
    assert there[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-agent-pause-backup", "namespace": "demo"}
    ]


def test_a_token_secret_is_never_replaced_unless_it_is_not_the_accounts_token(
    bc: BackupConfiguration,
) -> None:
    """The token controller owns the data: an existing token of the account is up to date whatever its
    labels; an Opaque Secret of that name, or another account's token, is not."""
    _, token = rbac.agent_identity(bc)
    filled = {**token, "data": {"token": "dG9rZW4="}, "metadata": {**token["metadata"], "labels": {}}}
    assert rbac.up_to_date(filled, token)
    assert not rbac.up_to_date({**filled, "type": "Opaque"}, token)
    other = {**filled, "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}
    assert not rbac.up_to_date(other, token)


def workload(account: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app"}]}
    if account is not None:
        spec["serviceAccountName"] = account
    return {"metadata": {"name": "stash-demo"}, "spec": {"template": {"spec": spec}}}


def test_a_workload_running_as_default_is_warned_about_without_blocking(bc: BackupConfiguration) -> None:
    """No account or ``default``: ``DedicatedServiceAccount`` False, reason ``DefaultServiceAccount``,
    naming the workload, the field and the sidecar's own account; an account of its own: True."""
    for account in (None, "default"):
        update = account_condition(bc, "Deployment", workload(account))
        assert (update.type.value, update.status, update.reason) == (
            "DedicatedServiceAccount",
            "False",
            "DefaultServiceAccount",
        )
        assert "Deployment demo/stash-demo runs as ServiceAccount demo/default" in update.message
        assert "spec.template.spec.serviceAccountName" in update.message
        assert "demo/stashlet-agent-pause-backup" in update.message
    own = account_condition(bc, "Deployment", workload("app-sa"))
    assert (own.status, own.reason) == ("True", "OwnServiceAccount")


def test_a_name_too_long_for_the_account_is_refused_by_name(make: Any) -> None:
    """253 characters is a ServiceAccount name's limit: a configuration of 238 fits, 239 is refused, naming
    metadata.name."""
    fits = BackupConfiguration.from_dict(make.backup_configuration(name="a" * 238))
    assert name_problem(fits) is None
    too_long = BackupConfiguration.from_dict(make.backup_configuration(name="a" * 239))
    problem = name_problem(too_long)
    assert problem is not None
    assert problem.startswith("metadata.name: BackupConfiguration demo/" + "a" * 239)
    assert "longer than 238 characters" in problem
