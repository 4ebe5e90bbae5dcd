"""The API models: exact round trips, Stash's wire names and spellings, strict scalars."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from stashlet.api import names
from stashlet.api.backend import Backend, GCSSpec, S3Spec
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration, BackupInvokerPhase, BackupTarget
from stashlet.api.backupsession import (
    BackupInvokerRef,
    BackupSession,
    BackupSessionPhase,
    BackupSessionSpec,
    HostBackupPhase,
    TargetPhase,
)
from stashlet.api.common import (
    Condition,
    ConditionStatus,
    KubeObject,
    ObjectMeta,
    Snapshotter,
    TargetRef,
    VolumeMount,
    format_time,
)
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import (
    AllowedNamespaces,
    FromNamespaces,
    Repository,
    RepositorySpec,
    RetentionPolicy,
    UsagePolicy,
)
from stashlet.api.restoresession import HostRestorePhase, RestorePhase, RestoreSession

MODELS: dict[str, type[KubeObject]] = {
    "Repository": Repository,
    "BackupConfiguration": BackupConfiguration,
    "BackupSession": BackupSession,
    "RestoreSession": RestoreSession,
    "BackupBlueprint": BackupBlueprint,
}

# A BackupSession as the agent leaves it, with every status field Stash defines.
FINISHED_SESSION: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupSession",
    "metadata": {
        "name": "deploy-stash-demo-1648718400",
        "namespace": "user1",
        "labels": {"stash.appscode.com/backup-configuration": "deploy-stash-demo"},
        "uid": "6a44adab-e44e-4020-9c23-7545e3b3f13b",
        "resourceVersion": "40010",
        "generation": 1,
        "creationTimestamp": "2022-03-31T09:20:00Z",
        "ownerReferences": [
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "name": "deploy-stash-demo",
                "uid": "96ed2068-a1da-419b-bae3-478f1b876000",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "managedFields": [{"manager": "stashlet", "operation": "Update"}],
    },
    "spec": {
        "invoker": {
            "apiGroup": "stash.appscode.com",
            "kind": "BackupConfiguration",
            "name": "deploy-stash-demo",
        },
        "retryLeft": 0,
    },
    "status": {
        "phase": "Succeeded",
        "sessionDuration": "39s",
        "sessionDeadline": "2022-03-31T10:20:00Z",
        "conditions": [
            {
                "type": "BackupExecutorEnsured",
                "status": "True",
                "reason": "SuccessfullyEnsuredBackupExecutor",
                "message": "Backup executor has been ensured successfully.",
                "lastTransitionTime": "2022-03-31T09:20:01Z",
                "observedGeneration": 1,
            }
        ],
        "targets": [
            {
                "ref": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "stash-demo",
                    "namespace": "user1",
                },
                "totalHosts": 1,
                "phase": "Succeeded",
                "preBackupActions": ["InitializeBackendRepository"],
                "postBackupActions": [
                    "ApplyRetentionPolicy",
                    "VerifyRepositoryIntegrity",
                    "SendRepositoryMetrics",
                ],
                "conditions": [
                    {
                        "type": "RetentionPolicyApplied",
                        "status": "True",
                        "reason": "SuccessfullyAppliedRetentionPolicy",
                    }
                ],
                "stats": [
                    {
                        "hostname": "host-0",
                        "phase": "Succeeded",
                        "duration": "6.2s",
                        "snapshots": [
                            {
                                "name": "b1a3c5e7",
                                "path": "/source/data-1",
                                "totalSize": "41 B",
                                "uploaded": "1.1 KiB",
                                "processingTime": "0:00",
                                "fileStats": {
                                    "totalFiles": 1,
                                    "newFiles": 0,
                                    "modifiedFiles": 0,
                                    "unmodifiedFiles": 1,
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    },
}

# A RestoreSession using every spec section, and its finished status.
FULL_RESTORE: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "RestoreSession",
    "metadata": {"name": "statefulset-restore", "namespace": "demo"},
    "spec": {
        "driver": "Restic",
        "repository": {"name": "minio-repo"},
        "task": {"name": "", "params": [{"name": "args", "value": "--all-databases"}]},
        "target": {
            "alias": "my-sts",
            "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "recovered-statefulset"},
            "volumeMounts": [{"mountPath": "/source/data", "name": "source-data", "readOnly": False}],
            "replicas": 5,
            "rules": [
                {
                    "targetHosts": ["my-sts-3", "my-sts-4"],
                    "sourceHost": "my-sts-1",
                    "paths": ["/source/data"],
                    "include": ["/source/data/*.json"],
                },
                {
                    "targetHosts": [],
                    "sourceHost": "",
                    "snapshots": ["latest"],
                    "exclude": ["/source/data/*.txt"],
                },
            ],
            "args": ["--no-lock"],
        },
        "hooks": {
            "preRestore": {"exec": {"command": ["/bin/sh", "-c", "echo pre"]}, "containerName": "stash-init"},
            "postRestore": {"httpPost": {"port": 8080, "path": "/done", "form": [{"key": "a"}]}},
        },
        "runtimeSettings": {
            "container": {"resources": {"limits": {"memory": "256M"}}, "nice": {"adjustment": 5}},
            "pod": {"imagePullSecrets": [{"name": "my-private-registry-secret"}]},
        },
        "tempDir": {"medium": "Memory", "sizeLimit": "2Gi", "disableCaching": False},
        "interimVolumeTemplate": {"metadata": {"name": "x"}, "spec": {"accessModes": ["ReadWriteOnce"]}},
        "timeOut": "30m",
    },
    "status": {
        "phase": "Succeeded",
        "totalHosts": 2,
        "sessionDuration": "2m40.595857548s",
        "stats": [
            {"hostname": "host-0", "phase": "Succeeded", "duration": "884.431745ms"},
            {"hostname": "host-1", "phase": "Failed", "duration": "1s", "error": "no snapshot"},
        ],
        "conditions": [{"type": "StashInitContainerInjected", "status": "True"}],
    },
}

FULL_REPOSITORY: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1alpha1",
    "kind": "Repository",
    "metadata": {"name": "local-repo", "namespace": "demo", "finalizers": ["stash"]},
    "spec": {
        "backend": {
            "local": {"mountPath": "/safe/data", "subPath": "demo", "hostPath": {"path": "/data/stash-test"}},
            "storageSecretName": "local-secret",
        },
        "wipeOut": False,
        "usagePolicy": {
            "allowedNamespaces": {
                "from": "Selector",
                "selector": {
                    "matchLabels": {"team": "a"},
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "In",
                            "values": ["prod", "staging"],
                        }
                    ],
                },
            }
        },
    },
    "status": {
        "observedGeneration": 2,
        "firstBackupTime": "2019-04-15T06:08:16Z",
        "lastBackupTime": "2019-04-15T06:14:15Z",
        "integrity": True,
        "totalSize": "2.567 KiB",
        "snapshotCount": 5,
        "snapshotsRemovedOnLastCleanup": 1,
        "references": [{"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "x"}],
    },
}


def test_seed_object_round_trips_exactly(seed_object: dict[str, Any]) -> None:
    """Every Stash object in the seeds parses into its model and dumps back to exactly the same mapping."""
    model = MODELS[seed_object["kind"]]
    assert model.from_dict(seed_object).to_dict() == seed_object


def test_seeds_hold_every_kind_they_should(seed_objects: list[dict[str, Any]]) -> None:
    """The seed extraction finds the Repository, BackupConfiguration, BackupSession and BackupBlueprint."""
    kinds = {obj["kind"] for obj in seed_objects}
    assert {"Repository", "BackupConfiguration", "BackupSession", "BackupBlueprint"} <= kinds
    assert len(seed_objects) >= 10


@pytest.mark.parametrize("obj", [FINISHED_SESSION, FULL_RESTORE, FULL_REPOSITORY], ids=lambda o: o["kind"])
def test_full_objects_round_trip_exactly(obj: dict[str, Any]) -> None:
    """Objects using every spec and status section survive a parse and dump unchanged."""
    assert MODELS[obj["kind"]].from_dict(obj).to_dict() == obj


def test_unknown_fields_are_kept_at_every_level() -> None:
    """Fields the models do not know survive at the top, in metadata, spec, nested types and status."""
    obj = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "future": {"a": 1},
        "metadata": {"name": "x", "managedFields": [{"manager": "kubectl"}]},
        "spec": {
            "repository": {"name": "r", "extra": True},
            "retentionPolicy": {"name": "p", "prune": True, "keepWithin": "2d"},
            "target": {"ref": {"kind": "Deployment", "uid": "u"}, "newThing": [1, 2]},
            "brandNew": "yes",
        },
        "status": {"phase": "Ready", "lastSync": "now"},
    }
    parsed = BackupConfiguration.from_dict(obj)
    assert parsed.to_dict() == obj
    assert parsed.spec.model_extra == {"brandNew": "yes"}


def test_python_attributes_are_snake_case_and_wire_names_camel_case() -> None:
    """Models are built with snake_case names and dump Stash's camelCase names, special cases included."""
    repo = Repository(
        metadata=ObjectMeta(name="minio-repo", namespace="demo"),
        spec=RepositorySpec(
            backend=Backend(
                storage_secret_name="minio-secret",
                s3=S3Spec(endpoint="https://minio:9000", bucket="b", insecure_tls=True),
            ),
            wipe_out=False,
            usage_policy=UsagePolicy(allowed_namespaces=AllowedNamespaces(from_=FromNamespaces.ALL)),
        ),
    )
    assert repo.to_dict() == {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "minio-repo", "namespace": "demo"},
        "spec": {
            "backend": {
                "storageSecretName": "minio-secret",
                "s3": {"endpoint": "https://minio:9000", "bucket": "b", "insecureTLS": True},
            },
            "wipeOut": False,
            "usagePolicy": {"allowedNamespaces": {"from": "All"}},
        },
    }
    target = BackupTarget(
        ref=TargetRef(api_version="apps/v1", kind="Deployment", name="d"),
        volume_mounts=[VolumeMount(name="data", mount_path="/data", read_only=True)],
        snapshot_class_name="csi",
    )
    assert target.to_dict() == {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "snapshotClassName": "csi",
    }


def test_parsed_objects_expose_typed_attributes() -> None:
    """A parsed object is navigated by attribute, with enums and datetimes where Stash has them."""
    session = BackupSession.from_dict(FINISHED_SESSION)
    assert session.spec.invoker.kind == "BackupConfiguration"
    assert session.status is not None
    assert session.status.phase is BackupSessionPhase.SUCCEEDED
    assert session.status.session_deadline == datetime(2022, 3, 31, 10, 20, tzinfo=UTC)
    assert session.status.targets is not None
    assert session.status.targets[0].stats is not None
    assert session.status.targets[0].stats[0].phase is HostBackupPhase.SUCCEEDED
    assert session.metadata.creation_timestamp == datetime(2022, 3, 31, 9, 20, tzinfo=UTC)
    assert session.metadata.owner_references is not None
    assert session.metadata.owner_references[0].block_owner_deletion is True


def test_type_meta_is_always_written() -> None:
    """The dump of an object built in code has apiVersion and kind, though they came from defaults."""
    session = BackupSession(
        metadata=ObjectMeta(name="instant", namespace="demo"),
        spec=BackupSessionSpec(
            invoker=BackupInvokerRef(api_group=names.GROUP, kind="BackupConfiguration", name="b")
        ),
    )
    dumped = session.to_dict()
    assert dumped["apiVersion"] == names.API_VERSION_BETA
    assert dumped["kind"] == names.KIND_BACKUP_SESSION


@pytest.mark.parametrize(
    ("model", "api_version", "kind"),
    [
        (Repository, names.API_VERSION_ALPHA, names.KIND_REPOSITORY),
        (BackupConfiguration, names.API_VERSION_BETA, names.KIND_BACKUP_CONFIGURATION),
        (BackupSession, names.API_VERSION_BETA, names.KIND_BACKUP_SESSION),
        (RestoreSession, names.API_VERSION_BETA, names.KIND_RESTORE_SESSION),
        (BackupBlueprint, names.API_VERSION_BETA, names.KIND_BACKUP_BLUEPRINT),
    ],
)
def test_models_use_the_names_constants(model: type[KubeObject], api_version: str, kind: str) -> None:
    """Each model's apiVersion and kind are the ones in stashlet.api.names."""
    assert model.model_fields["api_version"].default == api_version
    assert model.model_fields["kind"].default == kind


def test_wrong_kind_or_version_is_rejected() -> None:
    """A mapping of another kind or version does not parse as the model."""
    wrong_kind = {**FULL_REPOSITORY, "kind": "BackupSession"}
    wrong_version = {**FULL_REPOSITORY, "apiVersion": "stash.appscode.com/v1beta1"}
    for obj in (wrong_kind, wrong_version):
        with pytest.raises(ValidationError):
            Repository.from_dict(obj)


def test_required_fields_are_required() -> None:
    """Missing required fields (backend, invoker kind, retention policy name and prune) fail to parse."""
    with pytest.raises(ValidationError, match=r"spec\.backend"):
        Repository.from_dict({"apiVersion": names.API_VERSION_ALPHA, "kind": "Repository", "spec": {}})
    with pytest.raises(ValidationError, match=r"spec\.invoker\.kind"):
        BackupSession.from_dict(
            {
                "apiVersion": names.API_VERSION_BETA,
                "kind": "BackupSession",
                "spec": {"invoker": {"name": "x"}},
            }
        )
    with pytest.raises(ValidationError, match="prune"):
        RetentionPolicy.from_dict({"name": "keep-last-5", "keepLast": 5})


def test_scalars_are_strict() -> None:
    """Integers and booleans are not coerced from strings, so a dump never differs from what was read."""
    with pytest.raises(ValidationError):
        RetentionPolicy.from_dict({"name": "p", "prune": True, "keepLast": "5"})
    with pytest.raises(ValidationError):
        RetentionPolicy.from_dict({"name": "p", "prune": "true"})
    with pytest.raises(ValidationError):
        GCSSpec.from_dict({"bucket": "b", "maxConnections": 1.5})


@pytest.mark.parametrize("size", ["2Gi", 1073741824, "500M"])
def test_quantities_are_int_or_string(size: int | str) -> None:
    """tempDir.sizeLimit takes a number or a quantity string and keeps it as written."""
    obj = {**FULL_RESTORE, "spec": {**FULL_RESTORE["spec"], "tempDir": {"sizeLimit": size}}}
    assert RestoreSession.from_dict(obj).to_dict() == obj


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2019, 8, 2, 6, 13, 5, tzinfo=UTC), "2019-08-02T06:13:05Z"),
        (datetime(2019, 8, 2, 6, 13, 5), "2019-08-02T06:13:05Z"),
        (datetime(2019, 8, 2, 6, 13, 5, 250000, tzinfo=UTC), "2019-08-02T06:13:05.250000Z"),
        (datetime(2019, 8, 2, 8, 13, 5, tzinfo=timezone(timedelta(hours=2))), "2019-08-02T08:13:05+02:00"),
    ],
)
def test_times_are_written_like_kubernetes(value: datetime, text: str) -> None:
    """Timestamps are RFC 3339 with Z for UTC (naive means UTC); other offsets are kept."""
    assert format_time(value) == text
    condition = Condition(
        type=ConditionType.REPOSITORY_FOUND, status=ConditionStatus.TRUE, last_transition_time=value
    )
    assert condition.to_dict()["lastTransitionTime"] == text


def test_phases_are_spelt_like_stash() -> None:
    """Phase enums hold exactly Stash's wire strings, plus stashlet's one addition: a host entry is
    ``Running`` while its live restic progress is shown (README, "New in stashlet")."""
    assert {p.value for p in BackupSessionPhase} == {
        "Pending",
        "Skipped",
        "Running",
        "Succeeded",
        "Failed",
        "Unknown",
    }
    assert {p.value for p in BackupInvokerPhase} == {"Ready", "NotReady", "Invalid"}
    assert {p.value for p in TargetPhase} == {"Pending", "Running", "Succeeded", "Failed"}
    assert {p.value for p in HostBackupPhase} == {"Succeeded", "Failed"} | {"Running"}
    assert {p.value for p in RestorePhase} == {
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Unknown",
        "Invalid",
    }
    assert {p.value for p in HostRestorePhase} == {"Succeeded", "Failed", "Running", "Unknown"}
    assert {p.value for p in FromNamespaces} == {"All", "Same", "Selector"}
    assert {p.value for p in Snapshotter} == {"Restic", "VolumeSnapshotter"}


def test_condition_types_and_reasons_are_spelt_like_stash() -> None:
    """The condition types and reasons stashlet writes carry Stash's exact strings."""
    expected_types = {
        "BackupTargetFound",
        "RepositoryFound",
        "BackendSecretFound",
        "StashSidecarInjected",
        "StashInitContainerInjected",
        "CronJobCreated",
        "ValidationPassed",
        "BackendRepositoryInitialized",
        "RetentionPolicyApplied",
        "RepositoryIntegrityVerified",
        "RepositoryMetricsPushed",
        "MetricsPushed",
        "RestoreTargetFound",
        "BackupSkipped",
        "DeadlineExceeded",
    }
    assert expected_types <= {t.value for t in ConditionType}
    assert ConditionType.STASH_SIDECAR_INJECTED.value == "StashSidecarInjected"
    assert ConditionReason.SKIPPED_TAKING_NEW_BACKUP.value == "SkippedTakingNewBackup"
    assert ConditionReason.FAILED_TO_PUSH_METRICS.value == "FailedToPushMetrics"


def test_condition_type_is_open() -> None:
    """A condition of a type stashlet does not know still parses (Stash writes more types than we read)."""
    condition = Condition.from_dict({"type": "SomethingNew", "status": "False"})
    assert condition.status is ConditionStatus.FALSE
    assert condition.to_dict() == {"type": "SomethingNew", "status": "False"}
