"""Workload + BackupBlueprint -> Repository + BackupConfiguration (auto-backup), without any server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.diff import created_for, merge_patch, update_patch
from stashlet.operator.autobackup.resolution import AutoBackupError, Target
from stashlet.operator.core.workloads import WORKLOAD_KINDS

SEED_000 = Path(__file__).resolve().parents[4] / "shared" / "seeds" / "000_084401b39e3f0ad7.txt"
FENCED_YAML = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def seed_000_objects() -> list[dict[str, Any]]:
    """Every object seed 000 writes as YAML (its ``...`` elisions dropped), in order."""
    found: list[dict[str, Any]] = []
    for match in FENCED_YAML.finditer(SEED_000.read_text(encoding="utf-8")):
        block = "\n".join(line for line in match.group(1).splitlines() if line.strip() != "...")
        found += [o for o in yaml.safe_load_all(block) if isinstance(o, dict) and o.get("kind")]
    return found


def seed(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for obj in seed_000_objects():
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return obj
    raise LookupError(f"seed 000 has no {kind} {namespace}/{name}")


def seed_annotations(**extra: str) -> dict[str, str]:
    base = dict(seed("Deployment", "stash-demo", "user1")["metadata"]["annotations"])
    base.update(extra)
    return base


def target(kind: str = "Deployment", namespace: str = "user1", name: str = "stash-demo") -> Target:
    return Target(WORKLOAD_KINDS[kind], namespace, name, uid="uid-w")


def blueprint(**spec: Any) -> BackupBlueprint:
    body = seed("BackupBlueprint", "managed-backup-blueprint")
    return BackupBlueprint.from_dict({**body, "spec": {**body["spec"], **spec}})


def plan_for(
    bp: BackupBlueprint | None = None, tgt: Target | None = None, values: dict[str, str] | None = None
) -> resolution.Plan:
    request = resolution.parse_request(seed_annotations(**(values or {})))
    assert request is not None
    return resolution.build(bp or blueprint(), tgt or target(), request)


@pytest.mark.parametrize("user", ["user1", "user2", "user3"])
def test_seed_000_objects_are_made_exactly_as_the_seed_shows_them(user: str) -> None:
    """The seed's blueprint and each user's Deployment give the seed's Repository in ``backup`` (prefix
    substituted) and BackupConfiguration in the user's namespace, spec for spec."""
    deployment = seed("Deployment", "stash-demo", user)
    deployment["metadata"]["uid"] = f"uid-{user}"
    request = resolution.parse_request(deployment["metadata"]["annotations"])
    assert request is not None
    plan = resolution.build(blueprint(), resolution.target_of(deployment), request)

    expected_repo = seed("Repository", f"{user}-deploy-stash-demo", "backup")
    assert plan.repository["metadata"]["name"] == expected_repo["metadata"]["name"]
    assert plan.repository["metadata"]["namespace"] == "backup"
    assert plan.repository["spec"] == expected_repo["spec"]
    assert (
        plan.repository["spec"]["backend"]["gcs"]["prefix"]
        == f"stash-auto-backup/{user}/deployment/stash-demo"
    )
    assert "ownerReferences" not in plan.repository["metadata"]

    expected_bc = seed("BackupConfiguration", "deploy-stash-demo", user)
    assert plan.config["metadata"]["name"] == "deploy-stash-demo"
    assert plan.config["metadata"]["namespace"] == user
    spec = dict(plan.config["spec"])
    if "tempDir" not in expected_bc["spec"]:  # the seed's user3 listing is cut short before tempDir
        del spec["tempDir"]
    assert spec == expected_bc["spec"]
    assert plan.config["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "stash-demo",
            "uid": f"uid-{user}",
            "controller": True,
        }
    ]
    for obj in (plan.repository, plan.config):
        assert obj["metadata"]["labels"]["app.kubernetes.io/created-by"] == "stash-auto-backup"
        assert obj["metadata"]["annotations"] == {
            "stash.appscode.com/auto-backup-target": f"Deployment/{user}/stash-demo",
            "stash.appscode.com/auto-backup-blueprint": "managed-backup-blueprint",
        }
        assert created_for(obj, resolution.target_of(deployment))
        assert not created_for(obj, target(namespace="other"))


def test_without_repo_namespace_both_objects_go_next_to_the_workload() -> None:
    """No ``repoNamespace``: the Repository is ``<short kind>-<name>`` in the workload's namespace, and the
    configuration refers to it there."""
    plan = plan_for(blueprint(repoNamespace=None), target("StatefulSet", "shop", "db"))
    assert plan.repository_key == ("shop", "sts-db")
    assert plan.config["spec"]["repository"] == {"name": "sts-db", "namespace": "shop"}
    assert plan.config_name == "sts-db"


def test_every_variable_is_substituted_wherever_it_appears() -> None:
    """All five variables, in any string field of the blueprint (backend, repoNamespace, retention)."""
    bp = blueprint(
        repoNamespace="backup-${TARGET_NAMESPACE}",
        backend={
            "rest": {
                "url": "http://rest/${TARGET_API_VERSION}/${TARGET_RESOURCE}/${TARGET_KIND}-${TARGET_NAME}"
            },
            "storageSecretName": "secret-${TARGET_NAMESPACE}",
        },
        retentionPolicy={"name": "keep-${TARGET_NAME}", "keepLast": 2, "prune": False},
    )
    plan = plan_for(bp, target("DaemonSet", "logs", "fluent"))
    assert plan.repository_key == ("backup-logs", "logs-ds-fluent")
    backend = plan.repository["spec"]["backend"]
    assert backend == {
        "rest": {"url": "http://rest/apps/v1/daemonsets/daemonset-fluent"},
        "storageSecretName": "secret-logs",
    }
    assert plan.config["spec"]["retentionPolicy"]["name"] == "keep-fluent"


def test_an_unknown_variable_is_an_error_naming_it_and_its_field() -> None:
    """``${TARGET_FOO}`` is never left as a literal: the error names it, the field and the known ones."""
    bp = blueprint(
        backend={"gcs": {"bucket": "b", "prefix": "x/${TARGET_FOO}/${TARGET_NAME}"}, "storageSecretName": "s"}
    )
    with pytest.raises(AutoBackupError) as caught:
        plan_for(bp)
    message = caught.value.message
    assert "spec.backend.gcs.prefix: unknown variable ${TARGET_FOO}" in message
    assert "known variables: ${TARGET_API_VERSION}" in message


def test_an_unterminated_variable_is_an_error() -> None:
    """``${TARGET_NAME`` (no closing brace) is an error, not a literal."""
    with pytest.raises(AutoBackupError, match=r"spec.schedule: unterminated variable"):
        plan_for(blueprint(schedule="${TARGET_NAME"))


def test_annotations_give_paths_mounts_with_sub_path_and_the_schedule_override() -> None:
    """``name:/path[:subPath]`` mounts, paths with spaces around commas, and the schedule annotation over
    the blueprint's schedule."""
    plan = plan_for(
        values={
            "stash.appscode.com/target-paths": " /data , /conf ",
            "stash.appscode.com/volume-mounts": "data:/data, conf:/conf:app/conf",
            "stash.appscode.com/schedule": "0 * * * *",
        }
    )
    spec = plan.config["spec"]
    assert spec["target"]["paths"] == ["/data", "/conf"]
    assert spec["target"]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "conf", "mountPath": "/conf", "subPath": "app/conf"},
    ]
    assert spec["schedule"] == "0 * * * *"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"stash.appscode.com/backup-blueprint": " , "}, "names no BackupBlueprint"),
        ({"stash.appscode.com/target-paths": ""}, "target-paths is required"),
        ({"stash.appscode.com/target-paths": "data"}, "'data' is not an absolute path"),
        ({"stash.appscode.com/volume-mounts": ""}, "volume-mounts is required"),
        ({"stash.appscode.com/volume-mounts": "data"}, "'data' is not name:/mount/path[:subPath]"),
        ({"stash.appscode.com/volume-mounts": "a:b:c:d"}, "'a:b:c:d' is not name:/mount/path[:subPath]"),
        ({"stash.appscode.com/volume-mounts": "a:relative"}, "'a:relative' is not name:/mount/path"),
    ],
)
def test_malformed_annotations_are_errors_naming_the_annotation(
    values: dict[str, str], expected: str
) -> None:
    """Each malformed annotation is an error that names it and what is wrong."""
    with pytest.raises(AutoBackupError) as caught:
        resolution.parse_request(seed_annotations(**values))
    assert expected in caught.value.message


def test_no_blueprint_annotation_is_no_request() -> None:
    """Without the blueprint annotation there is nothing to do (paths and mounts alone ask for nothing)."""
    values = seed_annotations()
    del values["stash.appscode.com/backup-blueprint"]
    assert resolution.parse_request(values) is None
    assert resolution.parse_request(None) is None


def test_several_blueprints_make_distinct_names() -> None:
    """``a,b``: one Repository and configuration each, named with the blueprint; duplicates count once."""
    request = resolution.parse_request(seed_annotations(**{"stash.appscode.com/backup-blueprint": "a, b,a"}))
    assert request is not None
    assert request.blueprints == ("a", "b")
    tgt = target()
    assert resolution.config_name(tgt, "a", several=True) == "deploy-stash-demo-a"
    assert resolution.repository_name(tgt, "b", "backup", several=True) == "user1-deploy-stash-demo-b"


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    """A long workload name gives names within the limits (the CronJob's 52 characters for the
    configuration, 63 for the Repository), distinct for distinct workloads, and stable."""
    one, two = target(name="a" * 80 + "-one"), target(name="a" * 80 + "-two")
    names_ = {resolution.config_name(one, "bp"), resolution.config_name(two, "bp")}
    assert len(names_) == 2
    assert all(len(n) <= 38 and not n.endswith("-") for n in names_)
    assert len("stash-trigger-" + resolution.config_name(one, "bp")) <= 52
    assert len(resolution.repository_name(one, "bp", "backup")) <= 63
    assert resolution.config_name(one, "bp") == resolution.config_name(one, "bp")
    assert resolution.config_name(target(), "bp") == "deploy-stash-demo"


def test_runtime_settings_temp_dir_hooks_and_limits_come_from_the_blueprint() -> None:
    """What the blueprint sets for the configuration is carried over (hooks, timeOut and retryConfig too, as
    Stash's BackupBlueprint has them), and the Repository gets wipeOut and the usage policy."""
    bp = blueprint(
        runtimeSettings={"container": {"securityContext": {"runAsUser": 2000}}},
        tempDir={"medium": "Memory", "sizeLimit": "1Gi"},
        backupHistoryLimit=3,
        wipeOut=False,
        hooks={"preBackup": {"exec": {"command": ["sync"]}}},
        timeOut="30m",
        retryConfig={"maxRetry": 3, "delay": "10m"},
    )
    plan = plan_for(bp)
    spec = plan.config["spec"]
    assert spec["runtimeSettings"] == {"container": {"securityContext": {"runAsUser": 2000}}}
    assert spec["tempDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert spec["backupHistoryLimit"] == 3
    assert spec["hooks"] == {"preBackup": {"exec": {"command": ["sync"]}}}
    assert (spec["timeOut"], spec["retryConfig"]) == ("30m", {"maxRetry": 3, "delay": "10m"})
    assert plan.repository["spec"]["wipeOut"] is False
    assert plan.repository["spec"]["usagePolicy"] == {"allowedNamespaces": {"from": "All"}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"backupNamespace": "elsewhere"}, "spec.backupNamespace: 'elsewhere' is not supported"),
        ({"task": {"name": "pvc-backup"}}, "spec.task.name: 'pvc-backup'"),
    ],
)
def test_blueprint_fields_the_sidecar_model_cannot_honour_are_errors(
    spec: dict[str, Any], expected: str
) -> None:
    """A BackupConfiguration in another namespace than its target, or a Task, is refused, not ignored."""
    with pytest.raises(AutoBackupError, match=re.escape(expected)):
        plan_for(blueprint(**spec))


def test_queue_keys_name_targets() -> None:
    """The queue key (and target annotation) round-trips; anything else names no target."""
    tgt = target("StatefulSet", "shop", "db")
    parsed = resolution.parse_key(tgt.key)
    assert parsed is not None
    assert (parsed.kind.kind, parsed.namespace, parsed.name) == ("StatefulSet", "shop", "db")
    assert resolution.parse_key("ReplicaSet/shop/db") is None
    assert resolution.parse_key("Deployment/shop") is None


def test_merge_patch_removes_what_is_no_longer_wanted_and_replaces_lists() -> None:
    """Keys the desired object lacks become null (at any depth); lists are replaced whole; equal is None."""
    existing = {"backend": {"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "s"}, "x": [1, 2]}
    desired = {"backend": {"rest": {"url": "u"}, "storageSecretName": "s"}, "x": [2]}
    assert merge_patch(existing, desired) == {"backend": {"gcs": None, "rest": {"url": "u"}}, "x": [2]}
    assert merge_patch(desired, desired) is None


def test_update_patch_touches_only_what_auto_backup_owns() -> None:
    """A paused configuration stays paused and keeps a user's label; a changed schedule, a removed
    history limit and a new workload uid are patched."""
    desired = plan_for().config
    existing: dict[str, Any] = {
        "metadata": {
            **desired["metadata"],
            "labels": {**desired["metadata"]["labels"], "team": "a"},
            "ownerReferences": [{**desired["metadata"]["ownerReferences"][0], "uid": "old"}],
            "resourceVersion": "7",
        },
        "spec": {**desired["spec"], "paused": True, "schedule": "0 0 * * *", "backupHistoryLimit": 4},
    }
    patch = update_patch(existing, desired, resolution.CONFIG_KEYS)
    assert patch["spec"] == {"schedule": "*/5 * * * *", "backupHistoryLimit": None}
    assert patch["metadata"] == {
        "ownerReferences": desired["metadata"]["ownerReferences"],
        "resourceVersion": "7",
    }
    assert update_patch(desired, desired, resolution.CONFIG_KEYS) is None
