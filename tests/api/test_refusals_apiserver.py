"""The refusals of tests/api/test_refusals.py on the real kube-apiserver (server-side dry runs).

Every bad value of a ``schema`` row is a 422 whose message names the field and says why; every accepted
edge value is taken; and api/schedules.py judges each schedule as the API server's CronJob validation does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from tests.api.test_refusals import ACCEPTED, INVENTORY, SCHEDULES, stash_docs_examples

from stashlet.api.schedules import schedule_problem

pytestmark = pytest.mark.cluster

BAD = [(row, path, obj) for row in INVENTORY if row.door == "schema" for path, obj in row.bad]


def dry_run(kubectl: Callable[..., Any], obj: dict[str, Any], namespace: str) -> Any:
    """``kubectl create --dry-run=server`` of ``obj`` (in ``namespace`` unless cluster-scoped)."""
    obj = copy.deepcopy(obj)
    if obj["kind"] != "BackupBlueprint":
        obj["metadata"]["namespace"] = namespace
    return kubectl("create", "--dry-run=server", "-f", "-", input_obj=obj, check=False)


@pytest.mark.parametrize(
    ("message", "path", "obj"),
    [(row.message, path, obj) for row, path, obj in BAD],
    ids=[f"{path}-{i}" for i, (_, path, _) in enumerate(BAD)],
)
def test_a_value_that_cannot_run_is_refused_naming_the_field(
    message: str, path: str, obj: dict[str, Any], namespace: str, kubectl: Callable[..., Any]
) -> None:
    """The API server answers 422: the message starts with the field's path and says why."""
    result = dry_run(kubectl, obj, namespace)
    assert result.returncode != 0, obj
    assert "is invalid" in result.stderr
    assert f"{path}: " in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(("name", "obj"), ACCEPTED, ids=[name for name, _ in ACCEPTED])
def test_an_edge_value_that_runs_is_accepted(
    name: str, obj: dict[str, Any], namespace: str, kubectl: Callable[..., Any]
) -> None:
    """keepLast -1 and 0, keepTags alone, a VolumeSnapshotter policy without a rule, delay 0s, ... pass."""
    result = dry_run(kubectl, obj, namespace)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("obj", stash_docs_examples(), ids=lambda obj: obj["kind"])
def test_the_stash_docs_examples_are_accepted(
    obj: dict[str, Any], namespace: str, kubectl: Callable[..., Any]
) -> None:
    """Stash's own examples, with their timeOut, retryConfig and retentionPolicy, are taken as written."""
    result = dry_run(kubectl, obj, namespace)
    assert result.returncode == 0, result.stderr


def test_schedules_are_judged_as_the_api_server_judges_a_cronjob(
    namespace: str, kubectl: Callable[..., Any]
) -> None:
    """For every schedule of the table, the CronJob validation and api/schedules.py agree (and the table's
    verdict is theirs)."""
    disagreements = []
    for schedule, accepted in SCHEDULES:
        cronjob = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {
                "schedule": schedule,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox"}],
                            }
                        }
                    }
                },
            },
        }
        server = kubectl("create", "--dry-run=server", "-f", "-", input_obj=cronjob, check=False)
        ours = schedule_problem(schedule) is None
        if (server.returncode == 0) != ours or ours != accepted:
            disagreements.append((schedule, server.returncode == 0, ours, server.stderr.strip()))
    assert disagreements == []
