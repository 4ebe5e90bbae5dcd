"""bench.scale's measuring code at tiny counts on the real API server (so that it cannot rot): the session
fan-out in both modes counts exactly the events each agent must receive, the Pushgateway step counts the
groups and series the agent's builders push, the operator step counts what the operator makes, and the
real sidecar's step reads its events and requests per session."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from bench.scale import Cluster, Layout, fan_out, operator, pushgateway, real_agent

from stashlet.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(control_plane: ControlPlane) -> Cluster:
    return Cluster(control_plane)


def test_fan_out_delivers_each_session_to_its_replicas_only_when_selected(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three configurations of two replicas in one namespace, one session each with two status writes:
    namespace-wide every agent receives all 3 x 3 events, selected only its own 3; the idle window sees
    the six watches open and next to no requests."""
    layout = Layout(namespaces=1, configs_per_namespace=3, replicas=2)
    tag = uuid.uuid4().hex[:6]
    try:
        wide, selected = (
            fan_out(
                cluster,
                tmp_path,
                layout,
                mode,
                sessions_per_config=1,
                final_status={"phase": "Succeeded"},
                writes=2,
                idle_seconds=idle,
                prefix=f"{mode[0]}-{tag}",
            )
            for mode, idle in (("namespace", 0), ("selected", 6))
        )
        assert (wide["received_per_agent_min"], wide["received_per_agent_max"]) == (9, 9)
        assert (selected["received_per_agent_min"], selected["received_per_agent_max"]) == (3, 3)
        assert wide["events_received"] == 54 and selected["events_received"] == 18
        assert selected["events_sent"] >= 18  # other watchers too (the garbage collector's)
        assert selected["watches_open"] >= 6
        # At rest an agent holds no Lease and polls none (a Lease poll every 5 s would be 0.2 a second):
        # its watch stays open, a renewal at most in a window of 6 s.
        assert selected["idle_requests_per_agent_s"] < 0.1, selected
        assert selected["bytes_per_event"] > 100
    finally:
        for prefix in (f"n-{tag}", f"s-{tag}"):
            cluster.plane.kubectl("delete", "namespace", f"{prefix}-0", "--wait=false", check=False)


def test_pushgateway_step_counts_what_the_agent_pushes(tmp_path: Path) -> None:
    """Three configurations of two hosts: a group per job and per host, and the job's and hosts' series
    add up."""
    found = pushgateway(tmp_path, configs=3, hosts=2, final=None)
    assert found["groups"] == 3 * (1 + 2)
    assert found["series_per_host"] > 0 and found["job_series_per_config"] > 0
    assert found["series_per_config"] == found["job_series_per_config"] + 2 * found["series_per_host"]


def test_operator_step_counts_its_objects_and_ready_times(cluster: Cluster, tmp_path: Path) -> None:
    """Three configurations: each Ready (its time read from a watch), and per configuration the
    operator's CronJob, Roles and RoleBindings, token Secret and account."""
    namespace = f"op-{uuid.uuid4().hex[:6]}"
    try:
        found = operator(cluster, tmp_path, 3, idle_seconds=1, namespace=namespace)
    finally:
        cluster.plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert found["ready"] == 3 and found["all_ready_s"] is not None
    added = found["objects_added"]
    assert added["cronjob.batch"] == 3
    assert (
        added["role.rbac.authorization.k8s.io"] >= 3 and added["rolebinding.rbac.authorization.k8s.io"] >= 3
    )
    assert found["objects_per_config"] >= 5
    assert found["operator_peak_rss_mib"] > 0


@pytest.mark.restic
def test_real_sidecar_step_reads_its_sessions(cluster: Cluster, tmp_path: Path) -> None:
    """One session through a real sidecar: the events it received for it, its status; then one with a
    second replica of its Deployment, backed up by one of the two. The request counts are the API server's
    whole traffic less a quiet window's: on the test session's cluster, shared with the tests running
    beside this one, they are noise (a fresh-clone run saw -613 a session), so they are only checked to be
    figures; the bench runs on a cluster of its own."""
    found = real_agent(cluster, tmp_path, sessions=1, idle_seconds=1)
    assert found["final_status"]["phase"] == "Succeeded"
    assert found["events_by_session"][0] >= 2  # created, then its status written
    assert found["two_replica_sessions_by_pod"][0] in {"real-pod", "real-pod-2"}
    for figure in ("requests_per_session", "requests_per_session_two_replicas", "idle_requests_per_s"):
        assert math.isfinite(found[figure]), (figure, found[figure])
