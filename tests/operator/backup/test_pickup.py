"""Why nobody took a BackupSession up, decided from workload, pod and Job objects (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.operator.backup import pickup
from stashlet.operator.core import job_outcome


def workload(replicas: int | None = 1, kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "demo"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"kind": kind, "metadata": {"name": "demo", "namespace": "ns"}, "spec": spec}


def pod(
    name: str = "demo-1",
    *,
    phase: str = "Running",
    stash: dict[str, Any] | None = None,
    injected: bool = True,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    containers = [{"name": "app"}] + ([{"name": "stash"}] if injected else [])
    statuses = [{"name": "app", "ready": True, "state": {"running": {}}}]
    if injected and stash is not None:
        statuses.append({"name": "stash", **stash})
    return {
        "metadata": {"name": name},
        "spec": {"containers": containers},
        "status": {"phase": phase, "containerStatuses": statuses, "conditions": conditions or []},
    }


READY = {"ready": True, "restartCount": 0, "state": {"running": {}}}


def verdict(
    wl: dict[str, Any] | None, pods: list[dict[str, Any]], kind: str = "Deployment"
) -> job_outcome.Verdict:
    return pickup.sidecar_verdict(kind, "ns", "demo", wl, pods)


def test_a_session_is_taken_up_by_a_host_entry_or_a_phase_past_pending() -> None:
    assert not pickup.taken_up({})
    assert not pickup.taken_up(
        {"status": {"phase": "Pending", "conditions": [{"type": "BackupExecutorEnsured"}]}}
    )
    assert not pickup.taken_up({"status": {"targets": [{"ref": {"name": "x"}, "stats": []}]}})
    assert pickup.taken_up({"status": {"targets": [{"stats": [{"hostname": "host-0", "phase": "Running"}]}]}})
    assert pickup.taken_up({"status": {"phase": "Running"}})
    assert pickup.taken_up({"status": {"phase": "Skipped"}})


def test_the_deadline_is_the_annotation_else_the_operators_setting() -> None:
    assert pickup.deadline_seconds(None, 300) == 300
    assert pickup.deadline_seconds({"other": "1"}, 300) == 300
    assert pickup.deadline_seconds({pickup.ANNOTATION_PICKUP_DEADLINE: "2m30s"}, 300) == 150
    with pytest.raises(ValueError, match=r"stash\.appscode\.com/pickup-deadline"):
        pickup.deadline_seconds({pickup.ANNOTATION_PICKUP_DEADLINE: "soon"}, 300)
    with pytest.raises(ValueError, match="not a positive duration"):
        pickup.deadline_seconds({pickup.ANNOTATION_PICKUP_DEADLINE: "0s"}, 300)


def test_a_missing_workload_and_one_scaled_to_zero_are_named() -> None:
    gone = verdict(None, [])
    assert gone.reason == "TargetNotFound"
    assert "Deployment ns/demo" in gone.message
    zero = verdict(workload(0), [pod(stash=READY)])  # a pod on its way out does not count
    assert zero.reason == "WorkloadScaledToZero"
    assert "Deployment ns/demo is scaled to zero" in zero.message
    daemons = {"kind": "DaemonSet", "metadata": {}, "spec": {}, "status": {"desiredNumberScheduled": 0}}
    assert verdict(daemons, [], kind="DaemonSet").reason == "WorkloadScaledToZero"


def test_no_pod_and_no_injected_pod() -> None:
    none = verdict(workload(None), [])  # replicas defaults to 1
    assert (none.reason, none.message) == (
        "NoRunningPod",
        "no pod of Deployment ns/demo exists (it asks for 1)",
    )
    plain = verdict(workload(2), [pod("b", injected=False), pod("a", injected=False)])
    assert plain.reason == "AgentNotInjected"
    assert "carries the stash container (pods: a, b)" in plain.message


def test_injected_pods_that_do_not_run_say_why() -> None:
    unschedulable = pod(
        phase="Pending",
        stash={"ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}},
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes fit"}
        ],
    )
    found = verdict(workload(1), [unschedulable])
    assert found.reason == "NoRunningPod"
    assert "pod demo-1: Unschedulable: 0/1 nodes fit" in found.message
    pulling = pod(
        phase="Pending",
        stash={
            "ready": False,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
        },
    )
    assert (
        "container stash waiting: ImagePullBackOff (no such image)" in verdict(workload(1), [pulling]).message
    )


def test_a_crash_looping_or_unready_sidecar_is_not_ready_with_its_restarts() -> None:
    looping = {
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
    }
    found = verdict(workload(1), [pod(stash=looping)])
    assert found.reason == "AgentNotReady"
    assert found.message == (
        "the stash sidecar of Deployment ns/demo is not ready: pod demo-1: waiting: CrashLoopBackOff, "
        "last exit 2 (Error), 4 restarts"
    )
    unready = {"ready": False, "restartCount": 1, "state": {"running": {}}}
    assert "running, not ready, 1 restart" in verdict(workload(1), [pod(stash=unready)]).message


def test_a_ready_sidecar_that_wrote_nothing_did_not_respond() -> None:
    looping = {"ready": False, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    found = verdict(workload(2), [pod("a", stash=looping), pod("b", stash=READY)])
    assert found.reason == "NoAgentResponded"
    assert "runs but wrote nothing" in found.message


def test_the_pod_selector_follows_match_labels_and_expressions() -> None:
    wl = workload()
    wl["spec"]["selector"]["matchExpressions"] = [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "x", "operator": "NotIn", "values": ["c"]},
        {"key": "y", "operator": "Exists"},
        {"key": "z", "operator": "DoesNotExist"},
    ]
    assert pickup.selector_of(wl) == "app=demo,tier in (a,b),x notin (c),y,!z"


def job(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "stash-backup-s"}, "status": {"conditions": list(conditions)}}


def test_a_jobs_session_names_the_job_or_its_pod() -> None:
    assert pickup.job_verdict("ns", "stash-backup-s", None, []).reason == "JobNotCreated"
    assert pickup.job_verdict("ns", "stash-backup-s", job(), []).reason == "NoRunningPod"
    pulling = pod(
        "stash-backup-s-x", phase="Pending", stash={"state": {"waiting": {"reason": "ErrImagePull"}}}
    )
    found = pickup.job_verdict("ns", "stash-backup-s", job(), [pulling])
    assert found.reason == "ErrImagePull"
    assert found.message.startswith("the pod stash-backup-s-x of Job ns/stash-backup-s does not run")
    running = pod("stash-backup-s-x", stash=READY)
    assert pickup.job_verdict("ns", "stash-backup-s", job(), [running]).reason == "NoAgentResponded"
    failed = job({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"})
    found = pickup.job_verdict("ns", "stash-backup-s", failed, [pulling])
    assert (found.reason, found.message) == (
        "DeadlineExceeded",
        "Job ns/stash-backup-s failed: DeadlineExceeded: too long",
    )


def test_an_ended_job_gives_its_reason_and_a_running_one_none() -> None:
    assert job_outcome.ended_job_verdict("ns", job()) is None
    assert job_outcome.ended_job_verdict("ns", job({"type": "Failed", "status": "False"})) is None
    limit = job({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"})
    assert job_outcome.ended_job_verdict("ns", limit) == job_outcome.Verdict(
        "BackoffLimitExceeded", "Job ns/stash-backup-s failed: BackoffLimitExceeded"
    )
    done = job_outcome.ended_job_verdict("ns", job({"type": "Complete", "status": "True"}))
    assert done is not None
    assert done.reason == "JobSucceededWithoutStatus"


def test_active_deadline_is_the_timeout_plus_a_grace() -> None:
    assert job_outcome.active_deadline(None) is None
    assert job_outcome.active_deadline("") is None
    assert job_outcome.active_deadline("nonsense") is None
    assert job_outcome.active_deadline("2m") == 120 + job_outcome.DEADLINE_GRACE_SECONDS
    assert job_outcome.active_deadline("1.5s") == 2 + job_outcome.DEADLINE_GRACE_SECONDS


def test_a_session_behind_a_running_one_of_its_invoker_is_not_silent() -> None:
    def bs(name: str, created: str, invoker: str = "bc", **status: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"invoker": {"kind": "BackupConfiguration", "name": invoker}},
            "status": status,
        }

    mine = bs("bc-2", "2026-01-01T00:05:00Z")
    running = bs("bc-1", "2026-01-01T00:00:00Z", phase="Running")
    assert pickup.running_before(mine, [mine, running]) == "bc-1"
    assert pickup.running_before(mine, [mine, bs("bc-1", "2026-01-01T00:00:00Z", phase="Succeeded")]) is None
    assert (
        pickup.running_before(mine, [bs("x-1", "2026-01-01T00:00:00Z", invoker="x", phase="Running")]) is None
    )
    assert pickup.running_before(mine, [bs("bc-3", "2026-01-01T00:06:00Z", phase="Running")]) is None
    assert pickup.running_before(mine, [bs("bc-0", "2026-01-01T00:00:00Z")]) is None  # not taken up either
