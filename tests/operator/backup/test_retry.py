"""``spec.retryConfig``: which failed sessions are retried, when, and as what (pure), and the operator
retrying them on the real control plane until the retries run out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.operator.conftest import backup_configuration
from tests.polling import eventually

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.sessions import build_session
from stashlet.operator.backup.retry_policy import delay_problems, is_retry_of, plan_retry, retry_session


def config(**spec: Any) -> BackupConfiguration:
    return BackupConfiguration.from_dict(backup_configuration(**spec))


def failed(session: BackupSession, phase: str = "Failed") -> BackupSession:
    return BackupSession.from_dict({**session.to_dict(), "status": {"phase": phase}})


def test_a_session_starts_with_max_retry_retries_left() -> None:
    """As Stash: the configuration's ``maxRetry`` becomes the new session's ``spec.retryLeft``."""
    assert build_session(config(retryConfig={"maxRetry": 3, "delay": "1m"}), 100).spec.retry_left == 3
    assert build_session(config(), 100).to_dict()["spec"].keys() == {"invoker"}


def test_a_failed_session_with_retries_left_is_retried_after_the_delay() -> None:
    bc = config(retryConfig={"maxRetry": 2, "delay": "1m30s"})
    retry = plan_retry(failed(build_session(bc, 100)), bc, failed_at=1000.0)
    assert retry is not None
    assert (retry.failed, retry.retry_left, retry.due) == ("pause-backup-100", 1, 1090.0)
    made = retry_session(bc, retry, 1090)
    assert made.metadata.name == "pause-backup-1090"
    assert made.spec.retry_left == 1
    assert is_retry_of(made, "pause-backup-100")
    assert made.metadata.labels == build_session(bc, 1).metadata.labels  # found like any other session


@pytest.mark.parametrize(
    ("phase", "retry_left", "paused"),
    [
        ("Succeeded", 2, False),
        ("Running", 2, False),
        ("Failed", 0, False),
        ("Failed", None, False),
        ("Failed", 2, True),
    ],
)
def test_no_retry_without_failure_retries_or_an_active_configuration(
    phase: str, retry_left: int | None, paused: bool
) -> None:
    bc = config(retryConfig={"maxRetry": 2}, paused=paused)
    session = failed(build_session(bc, 100), phase)
    session.spec.retry_left = retry_left
    assert plan_retry(session, bc, failed_at=0.0) is None


def test_no_delay_means_at_once_and_a_bad_delay_names_the_field() -> None:
    bc = config(retryConfig={"maxRetry": 1})
    retry = plan_retry(failed(build_session(bc, 1)), bc, failed_at=50.0)
    assert retry is not None and retry.due == 50.0
    assert delay_problems(bc) == []
    [problem] = delay_problems(config(retryConfig={"maxRetry": 1, "delay": "soon"}))
    assert problem.startswith("spec.retryConfig.delay: not a Go duration: 'soon'")


@pytest.mark.cluster
async def test_a_failed_session_is_retried_until_no_retries_are_left(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """``maxRetry: 2``: the failed session gets a retry with ``retryLeft: 1`` (annotated with what it
    retries, an event on the failed one says so), that one's failure a retry with ``retryLeft: 0``, and
    that one's failure nothing more. The Deployment has no replicas: no sidecar acts on the sessions."""
    deployment = make.deployment(namespace=namespace)
    deployment["spec"]["replicas"] = 0
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(namespace))
    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))
    await akubectl("apply", "-f", "-", input_obj=deployment)
    controller = await operator.start(namespace)
    bc_obj = make.backup_configuration(
        namespace=namespace, backupHistoryLimit=5, retryConfig={"maxRetry": 2, "delay": "2s"}
    )
    await akubectl("apply", "-f", "-", input_obj=bc_obj)
    bc = BackupConfiguration.from_dict(await akubectl.wait_phase(namespace, "pause-backup", "Ready"))
    first = build_session(bc, 1000)
    await akubectl("create", "-f", "-", input_obj=first.to_dict())

    async def fail(name: str) -> None:
        await akubectl("patch", "backupsession", name, "-n", namespace, "--subresource=status",
                       "--type=merge", "-p", json.dumps({"status": {"phase": "Failed"}}))  # fmt: skip

    async def retry_of(name: str) -> dict[str, Any] | None:
        sessions: list[dict[str, Any]] = await akubectl.items("backupsessions", namespace)
        for session in sessions:
            if (session["metadata"].get("annotations") or {}).get(names.ANNOTATION_RETRY_OF) == name:
                return session
        return None

    await fail("pause-backup-1000")
    second = await eventually(lambda: retry_of("pause-backup-1000"), timeout=30, what="the first retry")
    assert second["spec"]["retryLeft"] == 1
    await akubectl.event(
        namespace,
        "pause-backup-1000",
        lambda e: e["reason"] == "BackupSessionRetried" and second["metadata"]["name"] in e["message"],
        what="the BackupSessionRetried event",
    )
    await fail(second["metadata"]["name"])
    third = await eventually(
        lambda: retry_of(second["metadata"]["name"]), timeout=30, what="the second retry"
    )
    assert third["spec"]["retryLeft"] == 0
    await fail(third["metadata"]["name"])
    # The operator acts on a failure within a second or two (the first retries show it); nothing comes now.
    await operator.rested(controller, namespace, f"BackupSession/{third['metadata']['name']}")
    sessions = await akubectl.items("backupsessions", namespace)
    assert len(sessions) == 3, [s["metadata"]["name"] for s in sessions]
