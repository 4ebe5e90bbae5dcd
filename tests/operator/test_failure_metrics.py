"""The failure metrics the operator pushes for a session it ended itself: the agent's names, labels, job."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from stashlet.agent.metrics import catalog
from stashlet.agent.metrics.build import InvokerLabels
from stashlet.agent.metrics.push import job_name
from stashlet.operator import metrics


def test_the_names_labels_and_job_are_the_agents() -> None:
    name, help_text = metrics.BACKUP_SESSION_SUCCESS
    spec = catalog.BACKUP_SESSION_SUCCESS
    assert metrics.PREFIXES == catalog.PREFIXES
    assert (f"{spec.subsystem}_{spec.name}", spec.help) == (name, help_text)
    restore = catalog.RESTORE_SESSION_SUCCESS
    assert (f"{restore.subsystem}_{restore.name}", restore.help) == metrics.RESTORE_SESSION_SUCCESS
    drill = catalog.RESTORE_DRILL_SUCCESS
    assert (f"{drill.subsystem}_{drill.name}", drill.help) == metrics.RESTORE_DRILL_SUCCESS
    labels = metrics.SessionLabels("BackupConfiguration", "bc", "demo", repository="repo")
    agents = InvokerLabels("BackupConfiguration", "bc", "demo", repository="repo")
    assert labels.values() == agents.values()
    assert labels.job == job_name("BackupConfiguration", "demo", "bc") == "backupconfiguration-demo-bc"


def test_a_failed_session_is_success_0_under_both_prefixes() -> None:
    labels = metrics.SessionLabels("RestoreSession", "rs", "demo")
    text = generate_latest(metrics.failure_registry(labels, metrics.RESTORE_SESSION_SUCCESS)).decode()
    for prefix in ("stash", "stash_appscode_com"):
        assert (
            f'{prefix}_restore_session_success{{driver="Restic",invoker_kind="RestoreSession",'
            f'invoker_name="rs",namespace="demo",repository=""}} 0.0'
        ) in text
    assert "backup_session_success" not in text


def test_a_drill_without_a_verdict_is_drill_success_0_under_the_configurations_job() -> None:
    labels = metrics.SessionLabels("BackupConfiguration", "bc", "demo", repository="repo")
    text = generate_latest(metrics.failure_registry(labels, metrics.RESTORE_DRILL_SUCCESS)).decode()
    assert labels.job == "backupconfiguration-demo-bc"
    for prefix in ("stash", "stash_appscode_com"):
        assert (
            f'{prefix}_restore_drill_success{{driver="Restic",invoker_kind="BackupConfiguration",'
            f'invoker_name="bc",namespace="demo",repository="repo"}} 0.0'
        ) in text
    assert "session_success" not in text


def test_a_gateways_credentials_never_reach_a_log() -> None:
    assert metrics.redact_url("http://user:secret@pgw:9091/x") == "http://pgw:9091/x"
    assert metrics.redact_url("pgw:9091") == "http://pgw:9091"
