"""A RestoreSession's ``spec.hooks`` is free-form in the CRD: a hook stash-init could never run is named
in ValidationPassed before anything is injected, instead of failing the restore inside the pod."""

from __future__ import annotations

from typing import Any

import pytest
from tests.operator.restore.test_restore_builders import restore_session

from stashlet.operator.restore.validation import spec_problems


@pytest.mark.parametrize(
    ("hooks", "field"),
    [
        (
            {"preRestore": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 5432}}},
            "spec.hooks.preRestore:",
        ),
        (
            {"postRestore": {"httpGet": {"port": 80}, "executionPolicy": "Sometimes"}},
            "spec.hooks.postRestore",
        ),
        (
            {"postRestore": {"executionPolicy": "OnFinalRetryFailure", "exec": {"command": ["x"]}}},
            "executionPolicy",
        ),
    ],
)
def test_a_hook_that_is_no_handler_is_named(hooks: dict[str, Any], field: str) -> None:
    problems = spec_problems(restore_session(hooks=hooks))
    assert any(problem.startswith("spec.hooks.") and field in problem for problem in problems), problems


def test_a_good_hook_is_no_problem() -> None:
    hooks = {"preRestore": {"httpPost": {"port": 8080, "path": "/pause", "body": "{{ .Name }}"}}}
    assert spec_problems(restore_session(hooks=hooks)) == []
