"""The VolumeSnapshotter driver's pure parts: which claims, which snapshots, what retention removes, what
is refused, and what the sessions' status says (no server)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stashlet.api.backupconfiguration import BackupConfiguration, BackupInvokerPhase
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupPhase, TargetPhase
from stashlet.api.common import TargetRef
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import RetentionPolicy
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase, RestoreSession
from stashlet.operator.backup.status import compute_phase
from stashlet.operator.backup.validation import Model, backup_model, spec_problems
from stashlet.operator.core.conditions import ConditionUpdate, apply_conditions
from stashlet.operator.restore.validation import spec_problems as restore_spec_problems
from stashlet.operator.volumesnapshot import backup_status as bs
from stashlet.operator.volumesnapshot import restore_plan as rp
from stashlet.operator.volumesnapshot import retention, snapshots, validation

NOW = dt.datetime(2024, 5, 1, 12, 0, 30, tzinfo=dt.UTC)


def config(kind: str = "Deployment", name: str = "stash-demo", **target: Any) -> BackupConfiguration:
    """Stash's guide configuration (deployment-volume-snapshot), without its snapshotClassName."""
    api_version = "v1" if kind == "PersistentVolumeClaim" else "apps/v1"
    return BackupConfiguration.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "deployment-volume-snapshot", "namespace": "demo", "uid": "u1"},
            "spec": {
                "schedule": "*/5 * * * *",
                "driver": "VolumeSnapshotter",
                "target": {"ref": {"apiVersion": api_version, "kind": kind, "name": name}, **target},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            },
        }
    )


def restore(templates: list[dict[str, Any]], **target: Any) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {
                "name": "restore-pvc",
                "namespace": "demo",
                "creationTimestamp": "2024-05-01T12:00:00Z",
            },
            "spec": {"driver": "VolumeSnapshotter", "target": {"volumeClaimTemplates": templates, **target}},
        }
    )


def template(name: str, snapshot: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "csi-standard",
            "resources": {"requests": {"storage": "1Gi"}},
            "dataSource": {"kind": "VolumeSnapshot", "name": snapshot, "apiGroup": "snapshot.storage.k8s.io"},
        },
    }


# ---------------------------------------------------------------- claims and snapshots


def test_a_deployments_claims_are_its_claim_volumes() -> None:
    deployment = {
        "metadata": {"name": "stash-demo"},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "source-data", "persistentVolumeClaim": {"claimName": "source-data"}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "source-config", "persistentVolumeClaim": {"claimName": "source-config"}},
                    ]
                }
            }
        },
    }
    claims = snapshots.target_claims("Deployment", deployment, None)
    assert [c.name for c in claims] == ["source-data", "source-config"]


def test_a_statefulsets_claims_follow_its_templates_and_ordinals_or_target_replicas() -> None:
    sts = {
        "metadata": {"name": "stash-demo"},
        "spec": {
            "replicas": 3,
            "volumeClaimTemplates": [{"metadata": {"name": "source-data"}}],
            "template": {},
        },
    }
    every = [c.name for c in snapshots.target_claims("StatefulSet", sts, None)]
    assert every == ["source-data-stash-demo-0", "source-data-stash-demo-1", "source-data-stash-demo-2"]
    assert [c.name for c in snapshots.target_claims("StatefulSet", sts, 1)] == ["source-data-stash-demo-0"]


def test_a_claim_target_is_its_own_claim() -> None:
    claims = snapshots.target_claims("PersistentVolumeClaim", {"metadata": {"name": "source-data"}}, None)
    assert [c.name for c in claims] == ["source-data"]


def test_a_snapshot_is_named_after_its_claim_and_the_sessions_suffix_and_labelled_for_its_configuration() -> (
    None
):
    bc = config(snapshotClassName="csi-snapshot-class")
    snap = snapshots.build_snapshot(
        bc, "deployment-volume-snapshot-1714564800", "source-data", "csi-snapshot-class"
    )
    assert snap["metadata"]["name"] == "source-data-1714564800"
    assert snap["spec"] == {
        "source": {"persistentVolumeClaimName": "source-data"},
        "volumeSnapshotClassName": "csi-snapshot-class",
    }
    labels = snap["metadata"]["labels"]
    assert labels["stash.appscode.com/invoker-name"] == "deployment-volume-snapshot"
    assert labels["stash.appscode.com/backup-session"] == "deployment-volume-snapshot-1714564800"
    assert "ownerReferences" not in snap["metadata"]  # the backups outlive the configuration
    assert snapshots.made_for(snap, bc, "deployment-volume-snapshot-1714564800")
    assert not snapshots.made_for(snap, bc, "deployment-volume-snapshot-1")
    no_class = snapshots.build_snapshot(bc, "s-1", "source-data", None)
    assert "volumeSnapshotClassName" not in no_class["spec"]  # the cluster's default class


def test_a_snapshots_state_is_ready_failed_with_the_controllers_message_or_pending() -> None:
    assert snapshots.snapshot_state({"status": {"readyToUse": True}})[0] == snapshots.State.READY
    failed = snapshots.snapshot_state(
        {"status": {"readyToUse": False, "error": {"message": "class x not found"}}}
    )
    assert failed == (snapshots.State.FAILED, "class x not found")
    assert snapshots.snapshot_state({})[0] == snapshots.State.PENDING


# ---------------------------------------------------------------- retention


def snaps(*hours: int) -> list[retention.Snap]:
    return [retention.Snap(f"s-{h}", dt.datetime(2024, 5, 1, h, tzinfo=dt.UTC)) for h in hours]


def policy(**keep: Any) -> RetentionPolicy:
    return RetentionPolicy.from_dict({"name": "p", "prune": True, **keep})


def test_keep_last_keeps_the_newest_and_removes_the_rest() -> None:
    kept, removed = retention.to_remove(policy(keepLast=2), snaps(1, 3, 2, 4))
    assert kept == ["s-4", "s-3"]
    assert removed == ["s-2", "s-1"]
    assert retention.removes(policy(keepLast=2))


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    days = [
        retention.Snap(f"d{d}-{h}", dt.datetime(2024, 5, d, h, tzinfo=dt.UTC)) for d in (1, 2) for h in (1, 2)
    ]
    kept, removed = retention.to_remove(policy(keepDaily=5), days)
    assert kept == ["d2-2", "d1-2"]
    assert sorted(removed) == ["d1-1", "d2-1"]


def test_minus_one_is_unlimited_and_zero_is_no_rule_as_in_restic() -> None:
    """restic >= 0.17: ``--keep-last -1`` keeps every snapshot, ``--keep-daily -1`` the newest of every
    day; a count of 0 is no rule at all."""
    days = [
        retention.Snap(f"d{d}-{h}", dt.datetime(2024, 5, d, h, tzinfo=dt.UTC))
        for d in (1, 2, 3)
        for h in (1, 2)
    ]
    assert retention.to_remove(policy(keepLast=-1, keepDaily=1), days)[1] == []
    kept, removed = retention.to_remove(policy(keepDaily=-1), days)
    assert kept == ["d3-2", "d2-2", "d1-2"]
    assert sorted(removed) == ["d1-1", "d2-1", "d3-1"]
    assert retention.to_remove(policy(keepLast=0, keepDaily=1), days)[0] == ["d3-2"]


def test_a_policy_without_keep_rules_or_with_dry_run_removes_nothing() -> None:
    assert retention.to_remove(policy(), snaps(1, 2))[1] == []
    assert retention.to_remove(policy(keepLast=1, dryRun=True), snaps(1, 2))[1] == ["s-1"]
    assert not retention.removes(policy(keepLast=1, dryRun=True))


# ---------------------------------------------------------------- validation


def test_the_guides_configurations_are_valid_and_run_as_the_volume_snapshotter() -> None:
    assert validation.backup_problems(config()) == []
    assert validation.backup_problems(config("StatefulSet", replicas=3)) == []
    assert validation.backup_problems(config("PersistentVolumeClaim", "source-data")) == []
    assert backup_model(config()) == Model.VOLUME_SNAPSHOTTER
    assert spec_problems(config()) == []  # no Repository needed; the driver is no longer refused
    assert validation.claim_target(config("PersistentVolumeClaim", "source-data")) == "source-data"
    assert validation.claim_target(config()) is None


def test_fields_the_driver_does_not_use_are_refused_by_name() -> None:
    bc = config(paths=["/data"], volumeMounts=[{"name": "d", "mountPath": "/d"}])
    bc.spec.retention_policy.keep_tags = ["a"]
    problems = validation.backup_problems(bc)
    refused = "not supported for a volume-snapshotter"
    assert f"spec.target.paths: {refused} (a VolumeSnapshot holds the whole volume)" in problems
    assert any(p.startswith(f"spec.target.volumeMounts: {refused}") for p in problems)
    assert f"spec.retentionPolicy.keepTags: {refused} (a VolumeSnapshot has no tags)" in problems


@pytest.mark.parametrize(
    ("bc", "field"),
    [
        (config("Pod"), "spec.target.ref.kind"),
        (config("Deployment", replicas=2), "spec.target.replicas"),
        (config("StatefulSet", replicas=0), "spec.target.replicas"),
    ],
)
def test_targets_the_driver_cannot_snapshot_are_refused_naming_the_field(
    bc: BackupConfiguration, field: str
) -> None:
    assert any(p.startswith(f"{field}:") for p in validation.backup_problems(bc))


def test_restore_templates_need_a_volume_snapshot_source_and_an_ordinal_with_replicas() -> None:
    good = restore(
        [template("restore-data-${POD_ORDINAL}", "source-data-${POD_ORDINAL}-1714564800")], replicas=3
    )
    assert validation.restore_problems(good) == []
    no_ordinal = restore([template("restore-data", "snap")], replicas=2)
    assert any(
        p.startswith("spec.target.volumeClaimTemplates[0].metadata.name:")
        for p in validation.restore_problems(no_ordinal)
    )
    bad = template("restore-data", "snap")
    bad["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": "x"}
    assert any(
        p.startswith("spec.target.volumeClaimTemplates[0].spec.dataSource:")
        for p in validation.restore_problems(restore([bad]))
    )
    assert validation.restore_problems(restore([]))[0].startswith("spec.target.volumeClaimTemplates:")


def test_a_volume_snapshotter_restore_is_no_longer_refused_by_its_driver() -> None:
    problems = restore_spec_problems(restore([template("restore-data", "snap")]))
    assert not any(p.startswith("spec.driver") for p in problems)


# ---------------------------------------------------------------- restore claims


def test_claims_are_made_per_ordinal_with_the_ordinal_in_name_and_source() -> None:
    rs = restore(
        [template("restore-data-restore-demo-${POD_ORDINAL}", "source-data-stash-demo-${POD_ORDINAL}-fnbwz")],
        replicas=2,
    )
    planned = rp.planned_claims(rs)
    assert [(c.name, c.snapshot) for c in planned] == [
        ("restore-data-restore-demo-0", "source-data-stash-demo-0-fnbwz"),
        ("restore-data-restore-demo-1", "source-data-stash-demo-1-fnbwz"),
    ]
    claim = planned[0].claim
    assert claim["metadata"]["namespace"] == "demo"
    assert claim["metadata"]["labels"] == {"stash.appscode.com/restore-session": "restore-pvc"}
    assert "ownerReferences" not in claim["metadata"]  # the user's, kept
    assert rp.made_for(claim, rs)
    assert planned[0].storage_class == "csi-standard"


# ---------------------------------------------------------------- statuses


def session() -> BackupSession:
    return BackupSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": "bc-1714564800",
                "namespace": "demo",
                "creationTimestamp": "2024-05-01T12:00:00Z",
            },
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "bc"}
            },
        }
    )


REF = TargetRef(api_version="apps/v1", kind="Deployment", name="stash-demo")


def test_a_session_runs_with_a_host_per_claim_and_ends_by_the_claims_outcomes() -> None:
    s = session()
    bs.start(s, REF, ["source-data", "source-config"], None, NOW)
    assert s.status is not None and s.status.phase == BackupSessionPhase.RUNNING
    assert s.status.targets is not None
    target = s.status.targets[0]
    assert target.total_hosts == 2
    assert bs.running_claims(s) == ["source-data", "source-config"]
    assert bs.record(s, REF, [bs.HostResult("source-data", HostBackupPhase.SUCCEEDED)], NOW) == [
        "source-data"
    ]
    assert s.status.phase == BackupSessionPhase.RUNNING
    bs.record(s, REF, [bs.HostResult("source-config", HostBackupPhase.FAILED, "boom")], NOW)
    assert target.phase == TargetPhase.FAILED
    assert bs.target_done(s)
    assert s.status.phase == BackupSessionPhase.RUNNING  # until retention is applied
    bs.conclude(s, NOW)
    assert str(s.status.phase) == "Failed"
    assert s.status.session_duration == "30s"
    stats = {x.hostname: x for x in target.stats or []}
    assert stats["source-data"].duration == "30s"
    assert stats["source-config"].error == "boom"
    events = bs.host_events(s, ["source-data", "source-config"])
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "Host Backup Succeeded"),
        ("Warning", "Host Backup Failed"),
    ]


def test_a_session_failed_before_any_snapshot_names_the_field() -> None:
    s = session()
    bs.fail(s, REF, "spec.target.snapshotClassName: VolumeSnapshotClass x does not exist", NOW)
    assert s.status is not None and s.status.phase == BackupSessionPhase.FAILED
    assert s.status.targets is not None
    condition = (s.status.targets[0].conditions or [])[0]
    assert condition.type == "BackupExecutorEnsured" and condition.status == "False"
    assert "spec.target.snapshotClassName" in (condition.message or "")


def test_a_session_past_its_deadline_fails_the_claims_still_running() -> None:
    s = session()
    bs.start(s, REF, ["source-data"], None, NOW)
    assert bs.deadline_exceeded(s, REF, "1m", NOW) == ["source-data"]
    bs.conclude(s, NOW)
    assert s.status is not None and s.status.phase == BackupSessionPhase.FAILED
    assert [c.type for c in s.status.conditions or []] == ["DeadlineExceeded"]


def test_a_restore_succeeds_when_every_claim_is_bound_and_is_unknown_for_first_consumer_binding() -> None:
    rs = restore([template("a", "s"), template("b", "s")])
    rp.start(rs, ["a", "b"], None, NOW)
    assert rs.status is not None and rs.status.phase == RestorePhase.RUNNING
    rp.record(rs, [HostRestoreStats(hostname="a", phase=HostRestorePhase.SUCCEEDED)], 2, NOW)
    assert rs.status.phase == RestorePhase.RUNNING
    rp.record(
        rs, [HostRestoreStats(hostname="b", phase=HostRestorePhase.UNKNOWN, error=rp.UNKNOWN_MESSAGE)], 2, NOW
    )
    assert str(rs.status.phase) == "Unknown"
    assert rs.status.session_duration == "30s"
    assert "RestoreCompleted" in [c.type for c in rs.status.conditions or []]


def test_a_refused_restore_fails_with_validation_passed_false() -> None:
    rs = restore([template("a", "s")])
    rp.refuse(
        rs,
        ["spec.target.volumeClaimTemplates[0].spec.dataSource.name: VolumeSnapshot demo/s does not exist"],
        NOW,
    )
    assert rs.status is not None and rs.status.phase == RestorePhase.FAILED
    [condition] = rs.status.conditions or []
    assert condition.type == "ValidationPassed" and condition.status == "False"
    assert (condition.message or "").startswith("spec.target.volumeClaimTemplates[0]")


def test_a_volume_snapshotter_configuration_is_ready_without_a_repository_once_its_target_is_found() -> None:
    ok = [
        ConditionUpdate.true(
            ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_PASSED, "ok"
        ),
        ConditionUpdate.true(
            ConditionType.CRON_JOB_CREATED, ConditionReason.CRON_JOB_CREATION_SUCCEEDED, "ok"
        ),
    ]
    found = ConditionUpdate.true(ConditionType.BACKUP_TARGET_FOUND, ConditionReason.TARGET_AVAILABLE, "ok")
    without_target = apply_conditions([], ok, now=NOW, generation=1)
    assert compute_phase(without_target, sidecar=False, repository=False) == BackupInvokerPhase.NOT_READY
    ready = apply_conditions([], [*ok, found], now=NOW, generation=1)
    assert compute_phase(ready, sidecar=False, repository=False) == BackupInvokerPhase.READY
    assert compute_phase(ready, sidecar=False) == BackupInvokerPhase.NOT_READY  # Restic needs its Repository
