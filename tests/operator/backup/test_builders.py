"""The pure builders: trigger CronJob, RBAC, backup history, the trigger's session, the CLI's settings."""

import json
from typing import Any

import pytest

from stashlet.api import names, sessions
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.kube.paths import collection_path
from stashlet.operator import cli
from stashlet.operator.backup import cronjob, history, trigger
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import rbac
from stashlet.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(operator_image="operator:1")


def test_cronjob_runs_the_trigger_as_its_service_account(bc: BackupConfiguration) -> None:
    """``stash-trigger-<bc>`` runs ``stashlet-operator trigger`` for its owner, the configuration."""
    job = cronjob.build_cronjob(bc, SETTINGS)
    assert job["metadata"]["name"] == "stash-trigger-pause-backup"
    assert job["spec"]["schedule"] == bc.spec.schedule == "0 0 1 1 *"  # the configuration's own
    assert job["spec"].get("suspend") is None  # never suspended: a paused run records "Backup Skipped"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "BackupConfiguration",
        "pause-backup",
        "uid-1",
        True,
    )
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stashlet-trigger"
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "operator:1"
    assert container["command"] == ["stashlet-operator"]
    assert container["args"] == [
        "trigger",
        "--invoker-kind=BackupConfiguration",
        "--invoker-name=pause-backup",
        "--namespace=demo",
    ]
    assert (
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['batch.kubernetes.io/job-name']"
    )


def test_cronjob_patch_only_when_something_we_own_differs(bc: BackupConfiguration, make: Any) -> None:
    """An up-to-date CronJob (even with server defaults) needs no patch; a new schedule does."""
    desired = cronjob.build_cronjob(bc, SETTINGS)
    existing = {**desired, "status": {}}
    existing["spec"] = {**desired["spec"], "suspend": False, "timeZone": None}
    assert cronjob.cronjob_patch(existing, desired, bc) is None
    changed = BackupConfiguration.from_dict(make.backup_configuration(schedule="*/1 * * * *"))
    patch = cronjob.cronjob_patch(existing, cronjob.build_cronjob(changed, SETTINGS), changed)
    assert patch is not None
    assert patch["spec"]["schedule"] == "*/1 * * * *"


def test_sidecar_rbac_grants_only_what_the_agent_uses(bc: BackupConfiguration) -> None:
    """One Role in the configuration's namespace, objects named where possible, bound to the sidecar's own
    account; no Secret (one in the same namespace is mounted)."""
    objects = rbac.sidecar_rbac(
        bc,
        WORKLOAD_KINDS["Deployment"],
        "stash-demo",
        repository=rbac.RepositoryAccess("demo", "gcs-repo", "gcs-secret"),
    )
    role, binding = objects
    assert (role["kind"], role["metadata"]["name"], role["metadata"]["namespace"]) == (
        "Role",
        "stashlet-sidecar-pause-backup",
        "demo",
    )
    rules = {
        (r["apiGroups"][0], r["resources"][0], tuple(r.get("resourceNames", ()))): r["verbs"]
        for r in role["rules"]
    }
    assert rules[(names.GROUP, "backupconfigurations", ("pause-backup",))] == ["get", "list", "watch"]
    assert rules[(names.GROUP, "repositories", ("gcs-repo",))] == ["get", "list", "watch"]
    assert rules[("coordination.k8s.io", "leases", ("lock-deployment-stash-demo-backup",))] == [
        "get",
        "update",
        "patch",
    ]
    assert rules[("apps", "deployments", ("stash-demo",))] == ["get"]
    assert not any(key[1] == "secrets" for key in rules)  # the storage Secret is mounted, never read
    assert all("delete" not in verbs for verbs in rules.values())
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-agent-pause-backup", "namespace": "demo"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_cross_namespace_repository_gets_its_own_role_there(bc: BackupConfiguration) -> None:
    """A Repository in another namespace: its Role and binding go there, unowned, bound to the sidecar's
    own account."""
    objects = rbac.sidecar_rbac(
        bc,
        WORKLOAD_KINDS["Deployment"],
        "stash-demo",
        repository=rbac.RepositoryAccess("backup", "r", "s"),
    )
    there = [o for o in objects if o["metadata"]["namespace"] == "backup"]
    assert [o["kind"] for o in there] == ["Role", "RoleBinding"]
    assert there[0]["metadata"]["name"] == "stashlet-sidecar-demo-pause-backup"
    assert "ownerReferences" not in there[0]["metadata"]
    assert there[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-agent-pause-backup", "namespace": "demo"}
    ]
    here = [o for o in objects if o["metadata"]["namespace"] == "demo"]
    assert not any(r["resources"] == ["secrets"] for r in here[0]["rules"])
    refs = rbac.created_for(bc, "backup")
    assert rbac.ObjectRef("Role", "backup", "stashlet-sidecar-demo-pause-backup") in refs


def test_trigger_rbac_only_reads_the_configuration_and_creates_sessions(bc: BackupConfiguration) -> None:
    """The trigger's Role: get its configuration, create sessions, record events; nothing else."""
    account, role, binding = rbac.trigger_rbac(bc, SETTINGS)
    assert (account["kind"], account["metadata"]["name"]) == ("ServiceAccount", "stashlet-trigger")
    assert role["rules"] == [
        {
            "apiGroups": [names.GROUP],
            "resources": ["backupconfigurations"],
            "verbs": ["get"],
            "resourceNames": ["pause-backup"],
        },
        {"apiGroups": [names.GROUP], "resources": ["backupsessions"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
    ]
    assert binding["subjects"][0]["name"] == "stashlet-trigger"


def test_rbac_up_to_date_compares_rules_subjects_and_labels(bc: BackupConfiguration) -> None:
    """Equal rules/subjects and our labels: up to date; a changed subject is not."""
    _, role, binding = rbac.trigger_rbac(bc, SETTINGS)
    assert rbac.up_to_date({**role, "metadata": {**role["metadata"], "resourceVersion": "7"}}, role)
    other = {**binding, "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "demo"}]}
    assert not rbac.up_to_date(other, binding)
    account = rbac.trigger_rbac(bc, SETTINGS)[0]
    assert rbac.up_to_date({"kind": "ServiceAccount", "metadata": {"name": "stashlet-trigger"}}, account)


def test_history_keeps_the_newest_finished_sessions_and_never_running_ones() -> None:
    """``backupHistoryLimit`` 2 keeps the two newest finished; running ones stay; default keeps one."""
    sessions = [
        history.SessionInfo("bc-1", "Succeeded", "2024-01-01T00:01:00Z"),
        history.SessionInfo("bc-2", "Failed", "2024-01-01T00:02:00Z"),
        history.SessionInfo("bc-3", "Skipped", "2024-01-01T00:03:00Z"),
        history.SessionInfo("bc-4", "Running", "2024-01-01T00:00:30Z"),
        history.SessionInfo("bc-5", None, "2024-01-01T00:00:10Z"),
    ]
    assert history.to_prune(sessions, 2) == ["bc-1"]
    assert history.to_prune(sessions, None) == ["bc-2", "bc-1"]
    assert history.to_prune(sessions, 0) == ["bc-3", "bc-2", "bc-1"]


def test_history_orders_sessions_of_the_same_second_by_name() -> None:
    """creationTimestamp has whole seconds: sessions created within one second are ordered by name (the
    cluster test names its sessions in creation order, so it needs no distinct creation seconds)."""
    second = "2024-01-01T00:01:00Z"
    sessions = [history.SessionInfo(f"bc-{n}", "Succeeded", second) for n in (3, 1, 4, 2)]
    assert history.to_prune(sessions, 2) == ["bc-2", "bc-1"]
    earlier = history.SessionInfo("bc-9", "Succeeded", "2024-01-01T00:00:59Z")
    assert history.to_prune([*sessions, earlier], 4) == ["bc-9"]  # the second counts before the name


def test_trigger_session_name_labels_owner_and_invoker(bc: BackupConfiguration) -> None:
    """``<bc>-<unix>``, the invoker labels, the configuration as owner, spec.invoker as Stash writes it."""
    session = sessions.build_session(bc, 1564659789).to_dict()
    assert session["metadata"]["name"] == "pause-backup-1564659789"
    assert session["metadata"]["labels"][names.LABEL_BACKUP_CONFIGURATION] == "pause-backup"
    assert session["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "blockOwnerDeletion" not in session["metadata"]["ownerReferences"][0]
    assert session["spec"] == {
        "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "pause-backup"}
    }


def test_trigger_uses_the_jobs_scheduled_time() -> None:
    """A Job named ``<cronjob>-<minutes>`` gives the scheduled second; anything else uses now."""
    assert trigger.scheduled_unix("stash-trigger-bc-29000000", "stash-trigger-bc", 5.0) == 29000000 * 60
    assert trigger.scheduled_unix("other-29000000", "stash-trigger-bc", 5.9) == 5
    assert trigger.scheduled_unix(None, "stash-trigger-bc", 7.0) == 7
    assert trigger.skip_message("demo", "pause-backup") == (
        "Skipping creating BackupSession. Reason: Backup Configuration demo/pause-backup is paused."
    )


def test_cli_flags_become_frozen_settings() -> None:
    """``run`` flags map onto OperatorSettings; ``trigger`` takes the invoker and namespace."""
    args = cli.parser().parse_args(
        [
            "run",
            "--namespaces",
            "a, b",
            "--agent-image",
            "x:1",
            "--pushgateway-url",
            "http://p",
            "--workers",
            "3",
        ]
    )
    settings = cli.settings_from(args)
    assert settings.namespaces == ("a", "b")
    assert (settings.agent_image, settings.pushgateway_url, settings.workers) == ("x:1", "http://p", 3)
    trig = cli.parser().parse_args(
        ["trigger", "--invoker-kind=BackupConfiguration", "--invoker-name=bc", "--namespace=d"]
    )
    assert (trig.invoker_name, trig.namespace) == ("bc", "d")


def test_agent_resources_come_from_json_and_bad_json_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--agent-resources`` (or STASHLET_AGENT_RESOURCES, as the chart passes it) is a JSON object that
    becomes ``agent_resources``; anything else exits 2 naming the flag."""
    limits = {"limits": {"memory": "256Mi"}, "requests": {"cpu": "50m"}}
    monkeypatch.setenv("STASHLET_AGENT_RESOURCES", json.dumps(limits))
    assert cli.settings_from(cli.parser().parse_args(["run"])).agent_resources == limits
    monkeypatch.delenv("STASHLET_AGENT_RESOURCES")
    assert cli.settings_from(cli.parser().parse_args(["run"])).agent_resources is None
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(SystemExit) as exited:
            cli.parser().parse_args(["run", f"--agent-resources={bad}"])
        assert exited.value.code == 2
        assert "--agent-resources" in capsys.readouterr().err


def test_collection_paths() -> None:
    """Core and grouped collections, namespaced or not."""
    assert collection_path("", "v1", "secrets", None) == "/api/v1/secrets"
    assert collection_path("apps", "v1", "deployments", "demo") == "/apis/apps/v1/namespaces/demo/deployments"
