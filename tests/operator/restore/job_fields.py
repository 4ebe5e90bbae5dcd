"""The field-support entries a RestoreSession restored through Jobs needs (pvc-restore, volumeClaimTemplates).

Until :mod:`stashlet.operator.core.field_support` carries them, the tests of restores through Jobs lay them
over the table with :func:`support_restore_jobs`; once the table carries them this is a no-op to delete.
"""

from __future__ import annotations

import pytest

from stashlet.operator.core import field_support
from stashlet.operator.core.field_support import ONLY_JOB, Support, ok, refused

_WORKLOADS_NEED_NO_TASK = (
    "a workload is restored by the stash-init init-container, without a Task; the Task pvc-restore runs as "
    "a Job"
)

RESTORE_JOB_FIELDS: dict[str, Support] = {
    "spec.task": ok(runners=ONLY_JOB, elsewhere=_WORKLOADS_NEED_NO_TASK),
    "spec.task.name": ok(runners=ONLY_JOB, elsewhere=_WORKLOADS_NEED_NO_TASK),
    **dict.fromkeys(
        ("spec.task.params", "spec.task.params[].name", "spec.task.params[].value"),
        refused("stashlet's pvc-restore takes no params: the rules say what is restored"),
    ),
    "spec.target.volumeClaimTemplates": ok(runners=ONLY_JOB, opaque=True),
    "spec.target.volumeMounts": ok(opaque=True),
}
"""What changes in ``field_support.RESTORE_SESSION``."""


def support_restore_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lay :data:`RESTORE_JOB_FIELDS` over the RestoreSession's field table for one test."""
    for path, support in RESTORE_JOB_FIELDS.items():
        monkeypatch.setitem(field_support.RESTORE_SESSION, path, support)
