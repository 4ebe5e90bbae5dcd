"""The five CRDs on the real kube-apiserver.

The seeds' YAML accepted as written, the seeds' columns, and invalid objects rejected with messages
that name the field.
"""

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.namespaces import create_namespace, seed_namespaces_held

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

SEED_NAMESPACES = ("demo", "backup", "user1", "user2", "user3")


@pytest.fixture(scope="module")
def seed_namespaces(
    control_plane: ControlPlane, local_cluster: LocalCluster, kubectl: Callable[..., Any]
) -> Iterator[None]:
    """The namespaces the seed documents use, as they create them (held alone while this module runs:
    an end-to-end seed test on another worker uses the same names)."""
    with seed_namespaces_held(local_cluster):
        for name in SEED_NAMESPACES:
            create_namespace(control_plane, kubectl, name)
        yield
        for name in SEED_NAMESPACES:
            kubectl("delete", "namespace", name, "--wait=false", check=False)


def _contains(actual: Any, expected: Any) -> bool:
    """True when ``actual`` holds everything in ``expected`` (the server may add defaults, never change)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


def _header(output: str) -> list[str]:
    return re.split(r"\s{2,}", output.splitlines()[0].strip())


def test_every_seed_object_is_accepted_as_written(
    seed_objects: list[dict[str, Any]], seed_namespaces: None, kubectl: Callable[..., Any]
) -> None:
    """Every Stash object in the seeds applies with kubectl's strict validation and reads back the same.

    The read-back spec may carry server defaults (such as ``driver: Restic``) but nothing else differs.
    """
    assert len(seed_objects) >= 9
    for obj in seed_objects:
        applied = kubectl("apply", "--validate=strict", "-f", "-", input_obj=obj, check=False)
        assert applied.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {applied.stderr}"
        args = ["get", obj["kind"].lower() + "." + obj["apiVersion"].split("/")[0], obj["metadata"]["name"]]
        if "namespace" in obj["metadata"]:
            args += ["-n", obj["metadata"]["namespace"]]
        back = json.loads(kubectl(*args, "-o", "json").stdout)
        assert _contains(back["spec"], obj["spec"]), (obj["metadata"]["name"], back["spec"])
    # Same names in different seeds: leave the next test a clean slate.
    for obj in seed_objects:
        if obj["kind"] == "BackupSession":
            kubectl("delete", "backupsession", obj["metadata"]["name"], "-n", obj["metadata"]["namespace"])


@pytest.mark.parametrize(
    ("resource", "columns"),
    [
        ("repositories", ["NAME", "INTEGRITY", "SIZE", "SNAPSHOT-COUNT", "LAST-SUCCESSFUL-BACKUP", "AGE"]),
        ("backupconfigurations", ["NAME", "TASK", "SCHEDULE", "PAUSED", "PHASE", "AGE"]),
        ("backupsessions", ["NAME", "INVOKER-TYPE", "INVOKER-NAME", "PHASE", "DURATION", "AGE"]),
        ("restoresessions", ["NAME", "REPOSITORY", "PHASE", "DURATION", "AGE"]),
    ],
)
def test_kubectl_get_shows_the_seed_columns(
    resource: str, columns: list[str], namespace: str, kubectl: Callable[..., Any]
) -> None:
    """`kubectl get <kind>` prints exactly the columns the seed documents show, in their order."""
    objects = {
        "repositories": {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "spec": {
                "backend": {
                    "local": {"mountPath": "/r", "hostPath": {"path": "/r"}},
                    "storageSecretName": "s",
                }
            },
        },
        "backupconfigurations": {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "spec": {
                "repository": {"name": "r"},
                "schedule": "*/5 * * * *",
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            },
        },
        "backupsessions": {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "bc"}
            },
        },
        "restoresessions": {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "spec": {"repository": {"name": "r"}},
        },
    }
    obj = copy.deepcopy(objects[resource])
    obj["metadata"] = {"name": "x", "namespace": namespace}
    kubectl("apply", "-f", "-", input_obj=obj)
    out = kubectl("get", resource, "-n", namespace).stdout
    assert _header(out) == columns


def test_repository_columns_show_status(namespace: str, kubectl: Callable[..., Any]) -> None:
    """A Repository's status fills INTEGRITY, SIZE, SNAPSHOT-COUNT, LAST-SUCCESSFUL-BACKUP (seed 000)."""
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "user1-deploy-stash-demo", "namespace": namespace},
        "spec": {"backend": {"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "gcs-secret"}},
    }
    kubectl("apply", "-f", "-", input_obj=repo)
    status = {
        "status": {
            "integrity": True,
            "totalSize": "4.154 KiB",
            "snapshotCount": 10,
            "lastBackupTime": "2026-01-01T00:00:00Z",
        }
    }
    kubectl(
        "patch",
        "repository",
        "user1-deploy-stash-demo",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    row = re.split(r"\s{2,}", kubectl("get", "repo", "-n", namespace).stdout.splitlines()[1].strip())
    assert row[:4] == ["user1-deploy-stash-demo", "true", "4.154 KiB", "10"]


def test_short_names(kubectl: Callable[..., Any]) -> None:
    """The API server serves the short names Stash users type: repo, bc, bs, restore, bb."""
    out = kubectl("api-resources", "--api-group=stash.appscode.com", "--no-headers").stdout
    short = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert short == {
        "backupblueprints": "bb",
        "backupconfigurations": "bc",
        "backupsessions": "bs",
        "repositories": "repo",
        "restoresessions": "restore",
    }


INVALID = [
    pytest.param(
        {"kind": "Repository", "apiVersion": "stash.appscode.com/v1alpha1", "spec": {}},
        "spec.backend: Required value",
        id="repository-without-backend",
    ),
    pytest.param(
        {
            "kind": "Repository",
            "apiVersion": "stash.appscode.com/v1alpha1",
            "spec": {
                "backend": {"gcs": {"bucket": "b"}, "storageSecretName": "s"},
                "usagePolicy": {"allowedNamespaces": {"from": "Everywhere"}},
            },
        },
        'spec.usagePolicy.allowedNamespaces.from: Unsupported value: "Everywhere"',
        id="unknown-usage-policy",
    ),
    pytest.param(
        {
            "kind": "BackupConfiguration",
            "apiVersion": "stash.appscode.com/v1beta1",
            "spec": {
                "repository": {"name": "r"},
                "schedule": "*/5 * * * *",
                "retentionPolicy": {"name": "k", "keepLast": "five"},
            },
        },
        'spec.retentionPolicy.keepLast: Invalid value: "string"',
        id="keeplast-not-a-number",
    ),
    pytest.param(
        {
            "kind": "BackupConfiguration",
            "apiVersion": "stash.appscode.com/v1beta1",
            "spec": {
                "repository": {"name": "r"},
                "paused": "yes",
                "retentionPolicy": {"name": "k", "keepLast": 1, "prune": True},
            },
        },
        'spec.paused: Invalid value: "string"',
        id="paused-not-a-boolean",
    ),
    pytest.param(
        {
            "kind": "BackupSession",
            "apiVersion": "stash.appscode.com/v1beta1",
            "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration"}},
        },
        "spec.invoker.name: Required value",
        id="session-without-invoker-name",
    ),
    pytest.param(
        {
            "kind": "BackupConfiguration",
            "apiVersion": "stash.appscode.com/v1beta1",
            "spec": {"repository": {"name": "r"}, "retentionPolicy": {"name": "k", "kepLast": 5}},
        },
        'unknown field "spec.retentionPolicy.kepLast"',
        id="typo-in-a-field-name",
    ),
]


@pytest.mark.parametrize(("obj", "message"), INVALID)
def test_invalid_objects_are_rejected_naming_the_field(
    obj: dict[str, Any], message: str, namespace: str, kubectl: Callable[..., Any]
) -> None:
    """The API server (with kubectl's strict validation) refuses an invalid object and names the field."""
    obj = {**copy.deepcopy(obj), "metadata": {"name": "bad", "namespace": namespace}}
    result = kubectl("apply", "--validate=strict", "-f", "-", input_obj=obj, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_invalid_blueprint_is_rejected(kubectl: Callable[..., Any]) -> None:
    """A cluster-scoped BackupBlueprint with a wrongly typed schedule is refused naming spec.schedule."""
    obj = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": "bad-blueprint"},
        "spec": {"backend": {"gcs": {"bucket": "b"}, "storageSecretName": "s"}, "schedule": 5},
    }
    result = kubectl("apply", "-f", "-", input_obj=obj, check=False)
    assert result.returncode != 0
    assert 'spec.schedule: Invalid value: "integer"' in result.stderr
