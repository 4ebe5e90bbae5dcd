"""Found objects -> a RestoreSession's validation conditions and phase: pure.

The reconciler looks the dependencies up (:class:`RestoreObserved`); :func:`validate_restore` turns what
it found into ``RepositoryFound``, ``BackendSecretFound``, ``RestoreTargetFound`` and
``ValidationPassed`` and says whether the init-container may be injected. Every failure names the
object and the field. Nothing is injected unless everything is found and valid.

What is checked, besides the objects existing: the target is a workload the init-container model
serves (Deployment, StatefulSet, DaemonSet, ReplicaSet in ``apps/v1``, in the session's namespace), the
``volumeMounts`` name volumes of its pod, the driver is Restic, no field stashlet does not carry out is
set (``task``, ``volumeClaimTemplates``, ...: :mod:`stashlet.operator.core.field_support`), the
Repository's ``usagePolicy`` admits the namespace, and the
rules (:func:`stashlet.api.restore_rules.rule_problems`: the very checks the agent makes again before it
restores, so a session the operator passes is one the agent accepts, and both say the same words).

A session that restores through Jobs (:func:`stashlet.api.restore_jobs.restores_by_job`: task
``pvc-restore`` with a PersistentVolumeClaim, or ``volumeClaimTemplates``) is checked as a Job's
(:mod:`stashlet.operator.restore.claims`; the fields a Job takes), its claim target looked up
(``RestoreTargetFound``), and what the API server says of each claim its templates make in a dry run
(``RestoreObserved.claim_problems``) is part of ``ValidationPassed``.

The phase: the operator owns it only until the agent starts (None, ``Pending``, ``Invalid``): ``Invalid``
when ``ValidationPassed`` is False, ``Failed`` when the restore Jobs or their claims could not be made
(``RestoreExecutorEnsured`` False), else ``Pending``. From ``Running`` on the agent writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stashlet.api import names, restore_jobs
from stashlet.api.common import Condition, ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionType
from stashlet.api.durations import go_duration_problem
from stashlet.api.hooks import restore_hook_problems
from stashlet.api.restore_rules import rule_problems, rules_of
from stashlet.api.restoresession import RestorePhase, RestoreSession
from stashlet.operator.core import field_support, workloads
from stashlet.operator.core import validation as shared
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.restore import claims
from stashlet.operator.volumesnapshot import validation as snapshot_rules

_WORDS = shared.TargetWords(owner="session", verb="restore into", container="init-container")

OPERATOR_PHASES = frozenset({None, RestorePhase.PENDING, RestorePhase.INVALID})
"""Phases the operator may overwrite; the agent owns every other one."""


@dataclass(frozen=True)
class RestoreObserved(shared.Observed):
    """What the reconciler found for one RestoreSession."""

    other_restore: str | None = None
    """Another live RestoreSession whose init-container the target already carries."""
    claim_problems: tuple[str, ...] = ()
    """What the API server refuses in the claims the volumeClaimTemplates make (a dry run), each naming
    the template."""


@dataclass(frozen=True)
class RestoreVerdict:
    """The validation conditions, and whether the init-container may be injected."""

    updates: tuple[ConditionUpdate, ...]
    applicable: bool


def spec_problems(rs: RestoreSession) -> list[str]:
    """What is wrong with the session by itself, each naming the field: the fields stashlet does not carry
    out (:mod:`~stashlet.operator.core.field_support`), then the values it cannot."""
    spec = rs.spec
    time_out = go_duration_problem("spec.timeOut", spec.time_out, positive=True)
    if spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:  # claims from VolumeSnapshots: no Repository, no agent
        return [*snapshot_rules.restore_problems(rs), *([time_out] if time_out else [])]
    by_job = restore_jobs.restores_by_job(rs)
    runner = field_support.Runner.JOB if by_job else field_support.Runner.INIT_CONTAINER
    problems = field_support.refusals(names.KIND_RESTORE_SESSION, rs.to_dict()["spec"], runner)
    if spec.repository is None:
        problems.append("spec.repository: required with the Restic driver")
    target = spec.target
    ref = target.ref if target else None
    mounts = list(target.volume_mounts or [] if target else [])
    if by_job:
        problems += claims.job_problems(rs)
        problems += [
            f"spec.target.volumeMounts[{i}].mountPath: {names.TMP_MOUNT_PATH} is the restore Job's "
            "temporary directory"
            for i, mount in enumerate(mounts)
            if mount.mount_path.rstrip("/") == names.TMP_MOUNT_PATH
        ]
    else:
        problems += shared.target_problems(ref, mounts, rs.metadata.namespace, _WORDS)
    where, rules = rules_of(rs)
    problems += rule_problems(rules, where)
    problems += restore_hook_problems(spec.hooks)
    return problems if time_out is None else [*problems, time_out]


def workload_problems(rs: RestoreSession, workload: dict[str, Any], other: str | None) -> list[str]:
    """What keeps the init-container from going into this workload, each naming the field (nothing for
    the claim a restore Job mounts)."""
    if restore_jobs.restores_by_job(rs):
        return []
    what = shared.what_workload(workload)
    target = rs.spec.target
    problems = shared.mount_problems(list(target.volume_mounts or [] if target else []), workload)
    template_annotations = workloads.pod_template(workload).get("metadata", {}).get("annotations") or {}
    applied = template_annotations.get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    if other is not None:
        problems.append(
            f"spec.target.ref: {what} already carries the {names.INIT_CONTAINER} init-container of {other}; "
            "delete that RestoreSession first"
        )
    elif not applied:
        problems += shared.foreign_container(
            workload, "initContainers", names.INIT_CONTAINER, "an init-container"
        )
    return problems


def validate_restore(rs: RestoreSession, observed: RestoreObserved) -> RestoreVerdict:
    """The validation conditions for ``rs`` given what was found (see the module docstring)."""
    texts = None
    if restore_jobs.names_claim(rs) or shared.target_kind(rs) is not None:
        target = claim_text(rs) if restore_jobs.names_claim(rs) else shared.target_text(rs)
        texts = shared.TargetTexts(
            unable=f"Failed to check whether restore target {target} exist or not. Reason: {{reason}}",
            missing=f"Restore target {target} does not exist.",
            found=f"Restore target {target} found.",
        )
    updates, applicable = shared.checked(
        rs,
        observed,
        [*spec_problems(rs), *observed.claim_problems],
        ConditionType.RESTORE_TARGET_FOUND,
        texts,
        lambda workload: workload_problems(rs, workload, observed.other_restore),
    )
    return RestoreVerdict(updates, applicable=applicable)


def claim_text(rs: RestoreSession) -> str:
    """How conditions name a claim target: ``v1 persistentvolumeclaim/data``."""
    ref = rs.spec.target.ref if rs.spec.target else None
    return f"v1 persistentvolumeclaim/{ref.name if ref else ''}"


def restore_phase(conditions: Sequence[Condition], current: RestorePhase | None) -> RestorePhase | None:
    """The phase the operator writes: ``Invalid``, ``Failed`` or ``Pending`` while it owns the phase, else
    ``current``."""
    if current not in OPERATOR_PHASES:
        return current
    failed = {c.type for c in conditions if c.status == ConditionStatus.FALSE}
    if ConditionType.VALIDATION_PASSED in failed:
        return RestorePhase.INVALID
    if ConditionType.RESTORE_EXECUTOR_ENSURED in failed:
        return RestorePhase.FAILED
    return RestorePhase.PENDING
