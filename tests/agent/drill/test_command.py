"""The report step's reading of the command container's state from the pod's status: pure."""

from __future__ import annotations

from typing import Any

from stashlet.agent.drill.command import outcome_of


def pod(state: dict[str, Any] | None) -> dict[str, Any]:
    statuses = [] if state is None else [{"name": "drill-command", "state": state}]
    return {
        "spec": {"containers": [{"name": "drill-command", "image": "registry.local/check:2"}]},
        "status": {"containerStatuses": [{"name": "drill-report", "state": {"running": {}}}, *statuses]},
    }


def test_a_command_that_has_not_ended_has_no_outcome() -> None:
    assert outcome_of(pod(None)) is None
    assert outcome_of(pod({"waiting": {"reason": "ContainerCreating"}})) is None
    assert outcome_of(pod({"running": {"startedAt": "2026-12-05T10:00:00Z"}})) is None


def test_exit_0_passes_and_another_code_fails_naming_the_container() -> None:
    ok = outcome_of(pod({"terminated": {"exitCode": 0, "reason": "Completed"}}))
    assert ok is not None and ok.ok
    failed = outcome_of(pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    assert failed is not None and not failed.ok
    assert (failed.reason, failed.message) == (
        "CommandFailed",
        "the command in container drill-command (image registry.local/check:2) exited with 137 (OOMKilled)",
    )


def test_an_image_that_cannot_be_pulled_fails_at_once() -> None:
    waiting = {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "registry.local/check:2"',
        }
    }
    found = outcome_of(pod(waiting))
    assert found is not None and not found.ok
    assert found.reason == "CommandNotStarted"
    assert found.message.startswith(
        "container drill-command (image registry.local/check:2) cannot start: ImagePullBackOff"
    )
