"""Which workloads carry an owner's label, as the watches saw them (no server)."""

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfigurationStatus
from stashlet.api.conditions import ConditionType
from stashlet.operator.core.conditions import reported
from stashlet.operator.core.labelled import LabelIndex

LABEL = names.LABEL_BACKUP_CONFIGURATION


def meta(name: str, namespace: str = "demo", **labels: str) -> dict[str, object]:
    return {"name": name, "namespace": namespace, "labels": labels}


def listed_index() -> LabelIndex:
    index = LabelIndex([LABEL])
    index.listed = lambda: True
    return index


def test_nothing_is_known_before_the_watches_have_listed() -> None:
    """Before every workload watch has listed, the index answers None (the placer then lists)."""
    index = LabelIndex([LABEL])
    index.observe("Deployment", meta("app", **{LABEL: "bc"}))
    assert index.carrying(LABEL, "demo", "bc") is None
    index.listed = lambda: True
    assert index.carrying(LABEL, "demo", "bc") == [("Deployment", "app")]


def test_a_label_followed_through_changes_moves_and_deletions() -> None:
    """A workload is found by its label's value in its namespace; relabelled, unlabelled or deleted, it
    is no longer found under the old value."""
    index = listed_index()
    index.observe("Deployment", meta("app", **{LABEL: "bc"}))
    index.observe("StatefulSet", meta("db", **{LABEL: "bc"}))
    index.observe("Deployment", meta("app", namespace="other", **{LABEL: "bc"}))
    index.observe("Deployment", meta("unrelated", app="web"))
    assert index.carrying(LABEL, "demo", "bc") == [("Deployment", "app"), ("StatefulSet", "db")]
    index.observe("Deployment", meta("app", **{LABEL: "bc2"}))
    assert index.carrying(LABEL, "demo", "bc") == [("StatefulSet", "db")]
    assert index.carrying(LABEL, "demo", "bc2") == [("Deployment", "app")]
    index.observe("StatefulSet", meta("db"))
    index.observe("Deployment", meta("app", **{LABEL: "bc2"}), gone=True)
    assert index.carrying(LABEL, "demo", "bc") == []
    assert index.carrying(LABEL, "demo", "bc2") == []
    assert index.carrying(LABEL, "other", "bc") == [("Deployment", "app")]


def test_reported_means_the_condition_held_once() -> None:
    """A condition reported True says what it stands for was made; False, missing or no status do not."""
    status = BackupConfigurationStatus.model_validate(  # as the server sends it
        {
            "conditions": [
                {"type": "CronJobCreated", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                {
                    "type": "StashSidecarInjected",
                    "status": "False",
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                },
            ]
        }
    )
    assert reported(status, ConditionType.CRON_JOB_CREATED)
    assert not reported(status, ConditionType.STASH_SIDECAR_INJECTED)
    assert not reported(status, ConditionType.REPOSITORY_FOUND)
    assert not reported(None, ConditionType.CRON_JOB_CREATED)
