"""The restore drill's annotations, CronJob and RBAC as the operator builds them: pure."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.api import agent_contract, agent_identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.operator.drills.cronjob import (
    build_cronjob,
    cronjob_name,
    cronjob_patch,
    cronjob_up_to_date,
    drill_rbac,
    merge_patch,
)
from stashlet.operator.drills.spec import (
    ANNOTATION_COMMAND,
    ANNOTATION_IMAGE,
    ANNOTATION_SCHEDULE,
    DrillSpec,
    drill_request,
)
from stashlet.operator.settings import OperatorSettings

SCHEDULE = "0 3 * * 0"


def configuration(name: str = "app-backup", **spec: Any) -> BackupConfiguration:
    return BackupConfiguration.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": name, "namespace": "demo", "uid": "uid-1"},
            "spec": {
                "repository": {"name": "repo"},
                "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}},
                "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
                **spec,
            },
        }
    )


def repository(namespace: str = "demo") -> Repository:
    return Repository.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": namespace},
            "spec": {
                "backend": {"s3": {"bucket": "b", "endpoint": "s3.local"}, "storageSecretName": "s3-secret"}
            },
        }
    )


# ------------------------------------------------------------------------------- annotations


def test_no_annotation_asks_for_nothing() -> None:
    request = drill_request({"other": "x"})
    assert (request.spec, request.problems, request.wanted) == (None, (), False)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (
            '["sh", "-c", "test -s /restore-drill/host-0/data/db.sql"]',
            ("sh", "-c", "test -s /restore-drill/host-0/data/db.sql"),
        ),
        (
            "pg_verifybackup '/restore-drill/host-0/var/lib/pg data'",
            ("pg_verifybackup", "/restore-drill/host-0/var/lib/pg data"),
        ),
    ],
)
def test_a_command_as_json_or_as_words(command: str, words: tuple[str, ...]) -> None:
    request = drill_request(
        {ANNOTATION_SCHEDULE: SCHEDULE, ANNOTATION_IMAGE: "busybox", ANNOTATION_COMMAND: command}
    )
    assert request.spec == DrillSpec(SCHEDULE, "busybox", words)


def test_an_image_alone_runs_its_entrypoint() -> None:
    request = drill_request({ANNOTATION_SCHEDULE: "@daily", ANNOTATION_IMAGE: "registry.local/verify:1"})
    assert request.spec == DrillSpec("@daily", "registry.local/verify:1", None)


@pytest.mark.parametrize(
    ("annotations", "says"),
    [
        (
            {ANNOTATION_SCHEDULE: "61 * * * *"},
            f"annotation {ANNOTATION_SCHEDULE}: '61 * * * *' is not a schedule",
        ),
        (
            {ANNOTATION_SCHEDULE: SCHEDULE, ANNOTATION_COMMAND: "true"},
            f"annotation {ANNOTATION_COMMAND} needs annotation {ANNOTATION_IMAGE}",
        ),
        ({ANNOTATION_SCHEDULE: SCHEDULE, ANNOTATION_IMAGE: " "}, f"annotation {ANNOTATION_IMAGE} is empty"),
        (
            {ANNOTATION_SCHEDULE: SCHEDULE, ANNOTATION_IMAGE: "b", ANNOTATION_COMMAND: "[1]"},
            f"annotation {ANNOTATION_COMMAND}: '[1]' is not a command",
        ),
        (
            {ANNOTATION_SCHEDULE: SCHEDULE, ANNOTATION_IMAGE: "b", ANNOTATION_COMMAND: "  "},
            "the command is empty",
        ),
        (
            {ANNOTATION_IMAGE: "busybox"},
            f"annotation {ANNOTATION_SCHEDULE} is missing or empty, but {ANNOTATION_IMAGE} is set",
        ),
    ],
)
def test_each_bad_annotation_is_named(annotations: dict[str, str], says: str) -> None:
    request = drill_request(annotations)
    assert request.spec is None and request.wanted
    assert any(says in problem for problem in request.problems), request.problems


# ------------------------------------------------------------------------------- the CronJob


def pod_of(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def mount_paths(container: dict[str, Any]) -> set[str]:
    return {m["mountPath"] for m in container.get("volumeMounts") or []}


def test_without_a_command_one_agent_container_does_everything() -> None:
    bc = configuration()
    cronjob = build_cronjob(bc, DrillSpec(SCHEDULE), repository(), OperatorSettings())
    assert cronjob["metadata"]["name"] == "stash-drill-app-backup"
    assert cronjob["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert (cronjob["spec"]["schedule"], cronjob["spec"]["concurrencyPolicy"]) == (SCHEDULE, "Forbid")
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = pod_of(cronjob)
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (
        "stashlet-drill-app-backup",
        False,
    )
    assert "initContainers" not in pod
    [agent] = pod["containers"]
    assert agent["args"][0] == agent_contract.MODE_DRILL
    assert f"{agent_contract.FLAG_DRILL_STEP}={agent_contract.DRILL_STEP_ALL}" in agent["args"]
    assert "--invoker-name=app-backup" in agent["args"]
    assert agent["securityContext"]["runAsUser"] == 0
    assert {agent_identity.KUBE_TOKEN_DIR, agent_contract.DRILL_SCRATCH_PATH, "/stash-tmp"} <= mount_paths(
        agent
    )
    assert f"{agent_identity.STORAGE_SECRETS_DIR}/s3-secret" in mount_paths(agent)


def test_with_a_command_the_users_container_sees_the_data_and_no_credentials() -> None:
    bc = configuration(
        runtimeSettings={"pod": {"serviceAccountName": "theirs", "nodeSelector": {"disk": "ssd"}}}
    )
    spec = DrillSpec(SCHEDULE, "busybox:1.36", ("sh", "-c", "test -s $DRILL_DATA/host-0/data/a"))
    pod = pod_of(build_cronjob(bc, spec, repository(), OperatorSettings()))
    [verify] = pod["initContainers"]
    command, report = pod["containers"]
    assert f"{agent_contract.FLAG_DRILL_STEP}={agent_contract.DRILL_STEP_VERIFY}" in verify["args"]
    assert f"{agent_contract.FLAG_DRILL_STEP}={agent_contract.DRILL_STEP_REPORT}" in report["args"]
    assert (command["name"], command["image"], command["command"]) == (
        agent_contract.DRILL_COMMAND_CONTAINER,
        "busybox:1.36",
        ["sh", "-c", "test -s $DRILL_DATA/host-0/data/a"],
    )
    assert mount_paths(command) == {agent_contract.DRILL_SCRATCH_PATH}
    assert {"name": "DRILL_DATA", "value": agent_contract.DRILL_SCRATCH_PATH} in command["env"]
    assert "securityContext" not in command
    for agent in (verify, report):
        assert agent_identity.KUBE_TOKEN_DIR in mount_paths(agent)
    assert pod["serviceAccountName"] == "stashlet-drill-app-backup"  # the user's account is not the drill's
    assert pod["nodeSelector"] == {"disk": "ssd"}


def test_a_changed_drill_changes_the_hash_and_the_same_one_is_up_to_date() -> None:
    bc = configuration()
    first = build_cronjob(bc, DrillSpec(SCHEDULE), repository(), OperatorSettings())
    again = build_cronjob(bc, DrillSpec(SCHEDULE), repository(), OperatorSettings())
    other = build_cronjob(bc, DrillSpec("@daily"), repository(), OperatorSettings())
    assert cronjob_up_to_date(first, again)
    assert not cronjob_up_to_date(first, other)


def test_a_long_name_is_cut_to_what_a_cronjob_may_be() -> None:
    name = cronjob_name(configuration("b" * 60))
    assert len(name) <= 52 and name.startswith("stash-drill-bbb")


# ------------------------------------------------------------------------------- RBAC


def rules(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        r
        for o in objects
        if o["kind"] == "Role" and o["metadata"]["namespace"] == namespace
        for r in o["rules"]
    ]


def test_the_drill_account_reads_its_configuration_and_repository_by_name_and_no_secret_here() -> None:
    objects = drill_rbac(configuration(), repository())
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Role", "RoleBinding"]
    granted = rules(objects, "demo")
    assert {
        "apiGroups": ["stash.appscode.com"],
        "resources": ["backupconfigurations"],
        "verbs": ["get"],
        "resourceNames": ["app-backup"],
    } in granted
    assert not any("secrets" in r["resources"] for r in granted)
    assert all(o["metadata"]["labels"]["stashlet.dev/restore-drill-of"] == "app-backup" for o in objects)


def test_a_repository_elsewhere_gets_its_own_role_with_the_secret_by_name() -> None:
    objects = drill_rbac(configuration(), repository("backups"))
    elsewhere = rules(objects, "backups")
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["s3-secret"],
    } in elsewhere
    assert not any("secrets" in r["resources"] for r in rules(objects, "demo"))


def test_the_patch_nulls_what_the_drill_no_longer_has_and_replaces_lists() -> None:
    """The operator may patch a CronJob, not update it: a drill that drops its command patches the
    init-container away (null) and replaces the containers; fields the server defaulted are nulled and
    come back defaulted."""
    bc = configuration()
    with_command = build_cronjob(
        bc, DrillSpec(SCHEDULE, "busybox", ("true",)), repository(), OperatorSettings()
    )
    pod_of(with_command)["dnsPolicy"] = "ClusterFirst"  # as the API server defaults it
    without = build_cronjob(bc, DrillSpec(SCHEDULE), repository(), OperatorSettings())
    patch = cronjob_patch(with_command, without)
    pod_patch = patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_patch["initContainers"] is None and pod_patch["dnsPolicy"] is None
    assert pod_patch["containers"] == pod_of(without)["containers"]
    assert "schedule" not in patch["spec"]
    assert patch["metadata"]["annotations"] == without["metadata"]["annotations"]
    assert merge_patch({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"d": 3}}) == {"b": {"c": None, "d": 3}}
