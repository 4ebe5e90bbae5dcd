"""The restic host an agent plays, as Stash's util.GetHostName names it, with and without an alias."""

from __future__ import annotations

import pytest

from stashlet.agent.context import agent_host, target_alias
from stashlet.agent.hosts import HostError, HostIdentity, host_name, identify, job_identity
from stashlet.agent.settings import AgentSettings
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.restoresession import RestoreSession


@pytest.mark.parametrize(
    ("kind", "alias", "expected"),
    [
        ("StatefulSet", None, HostIdentity("host-2", needs_lease=False, takes_turns=True)),
        ("StatefulSet", "mysql", HostIdentity("mysql-2", needs_lease=False, takes_turns=True)),
        ("DaemonSet", None, HostIdentity("node-a", needs_lease=False)),
        ("DaemonSet", "logs", HostIdentity("logs-node-a", needs_lease=False)),
        ("Deployment", None, HostIdentity("host-0", needs_lease=True)),
        ("Deployment", "app", HostIdentity("app", needs_lease=True)),
        ("ReplicaSet", None, HostIdentity("host-0", needs_lease=True)),
        ("ReplicaSet", "app", HostIdentity("app", needs_lease=True)),
        ("ReplicationController", "app", HostIdentity("app", needs_lease=True)),
        ("DeploymentConfig", None, HostIdentity("host-0", needs_lease=True)),
        ("DeploymentConfig", "app", HostIdentity("app", needs_lease=True)),
    ],
)
def test_identify_every_workload_kind(kind: str, alias: str | None, expected: HostIdentity) -> None:
    """StatefulSet ``<alias>-<ordinal>`` (else ``host-<ordinal>``), DaemonSet ``<alias>-<node>`` (else the
    node), every other kind ``<alias>`` (else ``host-0``); the leased kinds still take the Lease."""
    assert identify(kind, "web-2", "node-a", alias) == expected


def test_an_empty_alias_is_no_alias() -> None:
    """``alias: ""`` names the host as if the alias were not set."""
    assert identify("StatefulSet", "web-0", None, "").name == "host-0"
    assert identify("Deployment", "app-x", None, "").name == "host-0"


@pytest.mark.parametrize("kind", ["Cluster", "Namespace", "PersistentVolumeClaim", ""])
def test_other_kinds_and_jobs_are_one_host(kind: str) -> None:
    """Any other target (a resource dump's, a Job's) is ``<alias>`` or ``host-0``, never leased."""
    assert host_name(kind, "", None) == "host-0"
    assert host_name(kind, "", None, "cluster-yaml") == "cluster-yaml"
    assert job_identity() == HostIdentity("host-0", needs_lease=False)
    assert job_identity("cluster-yaml") == HostIdentity("cluster-yaml", needs_lease=False)


def test_what_a_host_cannot_be_told_from() -> None:
    """A StatefulSet pod without an ordinal, a DaemonSet without NODE_NAME, and a kind the sidecar does
    not serve are refused, with or without alias."""
    with pytest.raises(HostError, match="ordinal"):
        identify("StatefulSet", "web", None, "mysql")
    with pytest.raises(HostError, match="NODE_NAME"):
        identify("DaemonSet", "ds-abc", None, "logs")
    with pytest.raises(HostError, match="not supported"):
        identify("CronJob", "x", None, "alias")


def settings_for(mode: str, kind: str) -> AgentSettings:
    """The settings of an agent of ``mode`` for a target of ``kind`` on pod ``web-1``, node ``node-a``."""
    return AgentSettings(
        mode=mode,
        invoker_kind="BackupConfiguration",
        invoker_name="bc",
        target_kind=kind,
        target_name="web",
        namespace="ns",
        pod_name="web-1",
        node_name="node-a",
        status_port=0,
        listen_host="127.0.0.1",
        tmp_dir="/tmp",
        pushgateway_url=None,
        log_level="info",
        backup_session=None,
        api_token_file=None,
        restic_binary="restic",
    )


def test_the_invokers_alias_names_the_agents_host() -> None:
    """The alias is read from the BackupConfiguration's or the RestoreSession's spec.target; the Job
    mode plays one host whatever its target."""
    config = BackupConfiguration.from_dict(
        {
            "metadata": {"name": "bc", "namespace": "ns"},
            "spec": {
                "target": {"alias": "db", "ref": {"kind": "StatefulSet", "name": "web"}},
                "retentionPolicy": {"name": "k", "keepLast": 1, "prune": True},
            },
        }
    )
    restore = RestoreSession.from_dict(
        {"metadata": {"name": "rs", "namespace": "ns"}, "spec": {"target": {"alias": "db"}}}
    )
    bare = RestoreSession.from_dict({"metadata": {"name": "rs", "namespace": "ns"}, "spec": {}})
    assert target_alias(config.spec) == target_alias(restore.spec) == "db"
    assert target_alias(bare.spec) is None
    assert agent_host(settings_for("sidecar", "StatefulSet"), "db").name == "db-1"
    assert agent_host(settings_for("restore", "DaemonSet"), "db").name == "db-node-a"
    assert agent_host(settings_for("job", ""), "db") == HostIdentity("db", needs_lease=False)
    assert agent_host(settings_for("job", ""), None).name == "host-0"
