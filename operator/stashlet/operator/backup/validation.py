"""Found objects -> a BackupConfiguration's validation conditions: pure.

The reconciler looks the dependencies up (:class:`Observed`); :func:`validate` turns what it found into
``RepositoryFound``, ``BackendSecretFound``, ``BackupTargetFound`` and ``ValidationPassed`` and says
whether the configuration may be applied (RBAC, CronJob, sidecar); :func:`with_task_check` adds the rules
for a Task configuration. A ``pvc-backup`` configuration's claim is its target (``BackupTargetFound``), as a
workload is the sidecar's. Every failure names the object and the field that refers to it. Nothing is
applied unless everything is found and valid, so a bad configuration never leaves a workload injected
half-way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, target_path_problems
from stashlet.api.common import ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.durations import go_duration_problem
from stashlet.api.hooks import backup_hook_problems
from stashlet.api.repository import retention_problems
from stashlet.api.schedules import schedule_problem
from stashlet.operator.backup.retry_policy import delay_problems
from stashlet.operator.core import field_support, workloads
from stashlet.operator.core import validation as shared
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.injection.sidecar_container import invoker_annotation, target_mounts
from stashlet.operator.taskjobs.backup_job import claim_name, task_problems
from stashlet.operator.volumesnapshot import validation as snapshot_rules

_WORDS = shared.TargetWords(owner="configuration", verb="back up", container="sidecar")


class Model(StrEnum):
    """How a configuration is carried out."""

    SIDECAR = "sidecar"
    """A workload's volumes: the agent runs as a sidecar in the workload's pods."""
    JOB = "job"
    """A Task (``spec.task.name``): the resource-YAML dump or a stand-alone PersistentVolumeClaim, a Job
    per session, no sidecar."""
    VOLUME_SNAPSHOTTER = "volume-snapshotter"
    """``driver: VolumeSnapshotter``: the operator snapshots the target's claims itself
    (:mod:`stashlet.operator.volumesnapshot`); no sidecar, no Job, no Repository."""


@dataclass(frozen=True)
class Verdict:
    """The validation conditions, and whether the configuration may be applied."""

    updates: tuple[ConditionUpdate, ...]
    applicable: bool
    model: Model


def backup_model(bc: BackupConfiguration) -> Model:
    """Sidecar for workload volumes, job when the configuration names a Task; VolumeSnapshotter by driver."""
    if bc.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
        return Model.VOLUME_SNAPSHOTTER
    task = bc.spec.task
    return Model.JOB if task is not None and task.name else Model.SIDECAR


RUNNERS = {Model.SIDECAR: field_support.Runner.SIDECAR, Model.JOB: field_support.Runner.JOB}
"""The field-support runner of each model (a stand-alone claim's Job is :func:`runner_of`'s)."""


def runner_of(bc: BackupConfiguration) -> field_support.Runner:
    """How ``bc`` is carried out, as the field-support table tells its fields apart."""
    if backup_model(bc) == Model.JOB and claim_name(bc) is not None:
        return field_support.Runner.CLAIM_JOB
    return RUNNERS[backup_model(bc)]


def value_problems(bc: BackupConfiguration) -> list[str]:
    """The values that could never run, each naming the field: a schedule the CronJob controller refuses, a
    ``timeOut`` or ``retryConfig.delay`` Go cannot read, a relative target path, a retention policy restic
    refuses, a hook that is no ``prober.Handler`` (the CRD takes hooks free-form). The API server refuses
    the others at the door (the CRD's rules); this names them in an object stored before the rules."""
    snapshotter = backup_model(bc) == Model.VOLUME_SNAPSHOTTER
    problems = [
        problem
        for problem in (
            schedule_problem(bc.spec.schedule),
            go_duration_problem("spec.timeOut", bc.spec.time_out, positive=True),
        )
        if problem is not None
    ]
    problems += delay_problems(bc)
    problems += target_path_problems(bc.spec.target)
    problems += backup_hook_problems(bc.spec.hooks)
    return problems + retention_problems(bc.spec.retention_policy, needs_rule=not snapshotter)


def spec_problems(bc: BackupConfiguration) -> list[str]:
    """What is wrong with the configuration by itself, each naming the field: the fields stashlet does not
    carry out (:mod:`~stashlet.operator.core.field_support`), then the values it cannot."""
    if backup_model(bc) == Model.VOLUME_SNAPSHOTTER:  # its refusals too: the table's runner for it
        return [*snapshot_rules.backup_problems(bc), *value_problems(bc)]
    runner = runner_of(bc)
    problems = field_support.refusals(names.KIND_BACKUP_CONFIGURATION, bc.to_dict()["spec"], runner)
    problems += value_problems(bc)
    if bc.spec.repository is None:
        problems.append("spec.repository: required with the Restic driver")
    if backup_model(bc) == Model.JOB:
        return problems
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is not None and ref.kind == names.KIND_PERSISTENT_VOLUME_CLAIM:
        task = sorted(names.PVC_BACKUP_TASKS)[0]
        return [
            *problems,
            f"spec.task.name: a stand-alone PersistentVolumeClaim is backed up by a Job: set spec.task.name "
            f"to {task} (the sidecar goes into {', '.join(workloads.WORKLOAD_KINDS)})",
        ]
    return problems + shared.target_problems(ref, target_mounts(bc), bc.metadata.namespace, _WORDS)


def workload_problems(bc: BackupConfiguration, workload: dict[str, Any]) -> list[str]:
    """What keeps the sidecar from going into this workload, each naming the field."""
    what = shared.what_workload(workload)
    problems = shared.mount_problems(target_mounts(bc), workload)
    annotations = workloads.pod_template(workload).get("metadata", {}).get("annotations") or {}
    applied = annotations.get(names.ANNOTATION_LAST_APPLIED_INVOKER)
    if applied and applied != invoker_annotation(bc):
        problems.append(f"spec.target.ref: {what} is already backed up by {applied}")
    elif not applied:
        problems += shared.foreign_container(workload, "containers", names.SIDECAR_CONTAINER, "a container")
    return problems


def validate(bc: BackupConfiguration, observed: shared.Observed) -> Verdict:
    """The validation conditions for ``bc`` given what was found (see the module docstring)."""
    model = backup_model(bc)
    texts = None
    claim = claim_name(bc)
    if model == Model.SIDECAR and shared.target_kind(bc) is not None:
        texts = _target_texts(bc, shared.target_text(bc))
    elif model == Model.JOB and claim is not None:
        texts = _target_texts(bc, f"v1 persistentvolumeclaim/{claim}")
    elif model == Model.VOLUME_SNAPSHOTTER and snapshot_rules.claim_target(bc) is not None:
        texts = _target_texts(bc, f"v1 persistentvolumeclaim/{snapshot_rules.claim_target(bc)}")
    elif model == Model.VOLUME_SNAPSHOTTER and shared.target_kind(bc) is not None:
        texts = _target_texts(bc, shared.target_text(bc))
    updates, applicable = shared.checked(
        bc,
        observed,
        spec_problems(bc),
        ConditionType.BACKUP_TARGET_FOUND,
        texts,
        lambda target: workload_problems(bc, target) if model == Model.SIDECAR else [],
    )
    return Verdict(updates, applicable=applicable, model=model)


def _target_texts(bc: BackupConfiguration, target: str) -> shared.TargetTexts:
    return shared.TargetTexts(
        unable=f"Failed to check whether backup target {target} exists. Reason: {{reason}}",
        missing=f"Backup target {target} does not exist (spec.target.ref of BackupConfiguration "
        f"{bc.metadata.namespace}/{bc.metadata.name}).",
        found=f"Backup target {target} found.",
    )


def with_task_check(bc: BackupConfiguration, verdict: Verdict) -> Verdict:
    """``verdict`` with :func:`~stashlet.operator.taskjobs.backup_job.task_problems` added."""
    return with_problems(verdict, task_problems(bc))


def with_problems(verdict: Verdict, problems: list[str]) -> Verdict:
    """``verdict`` with ``problems`` added to ``ValidationPassed`` (and not applicable then)."""
    if not problems:
        return verdict
    updates: list[ConditionUpdate] = []
    for update in verdict.updates:
        if update.type != ConditionType.VALIDATION_PASSED:
            updates.append(update)
            continue
        earlier = [update.message] if update.status == ConditionStatus.FALSE else []
        updates.append(
            ConditionUpdate.false(
                ConditionType.VALIDATION_PASSED,
                ConditionReason.RESOURCE_VALIDATION_FAILED,
                "; ".join([*earlier, *problems]),
            )
        )
    return replace(verdict, updates=tuple(updates), applicable=False)
