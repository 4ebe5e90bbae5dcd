"""Found objects -> a BackupConfiguration's validation conditions: pure.

The reconciler looks the dependencies up (:class:`Observed`); :func:`validate` turns what it found into
``RepositoryFound``, ``BackendSecretFound``, ``BackupTargetFound`` and ``ValidationPassed`` and says
whether the configuration may be applied (RBAC, CronJob, sidecar); :func:`with_task_check` adds the rules
for a Task configuration. Every failure names the object and the field that refers to it. Nothing is
applied unless everything is found and valid, so a bad configuration never leaves a workload injected
half-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.validation import Lookup, repository_conditions, validation_passed
from stashlet.operator.injection.sidecar_container import invoker_annotation, target_mounts
from stashlet.operator.kubedump.backup_job import task_problems


class Model(StrEnum):
    """How a configuration is carried out."""

    SIDECAR = "sidecar"
    """A workload's volumes: the agent runs as a sidecar in the workload's pods."""
    JOB = "job"
    """A Task (``spec.task.name``), such as the resource-YAML dump: a Job per session, no sidecar."""


@dataclass(frozen=True)
class Observed:
    """What the reconciler found for one configuration."""

    repository: Lookup[Repository]
    secret_keys: Lookup[frozenset[str]]
    """Keys of the backend Secret that hold a non-empty value (never the values)."""
    workload: Lookup[dict[str, Any]]
    namespace_labels: Mapping[str, str] | None = None
    """Labels of the configuration's namespace (needed when a usage policy selects namespaces)."""


@dataclass(frozen=True)
class Verdict:
    """The validation conditions, and whether the configuration may be applied."""

    updates: tuple[ConditionUpdate, ...]
    applicable: bool
    model: Model


def backup_model(bc: BackupConfiguration) -> Model:
    """Sidecar for workload volumes, job when the configuration names a Task."""
    task = bc.spec.task
    return Model.JOB if task is not None and task.name else Model.SIDECAR


def repository_key(bc: BackupConfiguration) -> tuple[str, str] | None:
    """``(namespace, name)`` of the configuration's Repository (its own namespace when none is given)."""
    ref = bc.spec.repository
    if ref is None:
        return None
    return ref.namespace or bc.metadata.namespace or "", ref.name


def target_kind(bc: BackupConfiguration) -> workloads.WorkloadKind | None:
    """The supported workload kind the configuration targets, or None."""
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is None or ref.kind is None:
        return None
    kind = workloads.WORKLOAD_KINDS.get(ref.kind)
    if kind is None or (ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS):
        return None
    return kind


def spec_problems(bc: BackupConfiguration) -> list[str]:
    """What is wrong with the configuration by itself, each naming the field."""
    problems: list[str] = []
    if bc.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
        problems.append("spec.driver: VolumeSnapshotter is not supported by stashlet; use Restic")
        return problems
    if bc.spec.repository is None:
        problems.append("spec.repository: required with the Restic driver")
    if backup_model(bc) == Model.JOB:
        return problems
    ref = bc.spec.target.ref if bc.spec.target else None
    if ref is None or not ref.kind or not ref.name:
        problems.append("spec.target.ref: the kind and name of the workload to back up are required")
        return problems
    if ref.kind not in workloads.WORKLOAD_KINDS:
        supported = ", ".join(workloads.WORKLOAD_KINDS)
        problems.append(
            f"spec.target.ref.kind: {ref.kind} is not supported; the sidecar goes into {supported}"
        )
    elif ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS:
        problems.append(
            f"spec.target.ref.apiVersion: {ref.api_version} is not supported for {ref.kind}; use apps/v1"
        )
    if ref.namespace and ref.namespace != bc.metadata.namespace:
        problems.append(
            f"spec.target.ref.namespace: the target must be in the configuration's namespace "
            f"{bc.metadata.namespace}, not {ref.namespace}"
        )
    for i, mount in enumerate(target_mounts(bc)):
        if mount.mount_path.rstrip("/") == names.TMP_MOUNT_PATH:
            problems.append(
                f"spec.target.volumeMounts[{i}].mountPath: {names.TMP_MOUNT_PATH} is the sidecar's "
                "temporary directory"
            )
    return problems


def workload_problems(bc: BackupConfiguration, workload: dict[str, Any]) -> list[str]:
    """What keeps the sidecar from going into this workload, each naming the field."""
    meta = workload.get("metadata", {})
    what = workloads.describe(str(workload.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
    problems: list[str] = []
    volumes = workloads.volume_names(workload)
    for i, mount in enumerate(target_mounts(bc)):
        if mount.name not in volumes:
            problems.append(
                f"spec.target.volumeMounts[{i}].name: {what} has no volume {mount.name!r} "
                f"(its volumes: {', '.join(volumes) or 'none'})"
            )
    annotations = workloads.pod_template(workload).get("metadata", {}).get("annotations") or {}
    applied = annotations.get(names.ANNOTATION_LAST_APPLIED_INVOKER)
    if applied and applied != invoker_annotation(bc):
        problems.append(f"spec.target.ref: {what} is already backed up by {applied}")
    elif not applied:
        containers = workloads.pod_spec(workload).get("containers") or []
        if any(c.get("name") == names.SIDECAR_CONTAINER for c in containers):
            problems.append(
                f"spec.target.ref: {what} already has a container named {names.SIDECAR_CONTAINER!r} "
                "that stashlet did not inject"
            )
    return problems


def validate(bc: BackupConfiguration, observed: Observed) -> Verdict:
    """The validation conditions for ``bc`` given what was found (see the module docstring)."""
    model = backup_model(bc)
    updates: list[ConditionUpdate] = []
    problems = spec_problems(bc)
    repo_key = repository_key(bc)
    found_all = repository_conditions(
        updates,
        problems,
        referrer=f"BackupConfiguration {bc.metadata.namespace}/{bc.metadata.name}",
        namespace=bc.metadata.namespace or "",
        repo_name=f"{repo_key[0]}/{repo_key[1]}" if repo_key else None,
        repository=observed.repository,
        secret_keys=observed.secret_keys,
        namespace_labels=observed.namespace_labels,
    )

    if model == Model.SIDECAR and target_kind(bc) is not None:
        ref = bc.spec.target.ref if bc.spec.target else None
        assert ref is not None  # target_kind() checked it
        target = f"{ref.api_version or 'apps/v1'} {str(ref.kind).lower()}/{ref.name}"
        if observed.workload.error is not None:
            found_all = False
            updates.append(
                ConditionUpdate.unknown(
                    ConditionType.BACKUP_TARGET_FOUND,
                    ConditionReason.UNABLE_TO_CHECK_TARGET_AVAILABILITY,
                    f"Failed to check whether backup target {target} exists. "
                    f"Reason: {observed.workload.error}",
                )
            )
        elif observed.workload.value is None:
            found_all = False
            updates.append(
                ConditionUpdate.false(
                    ConditionType.BACKUP_TARGET_FOUND,
                    ConditionReason.TARGET_NOT_AVAILABLE,
                    f"Backup target {target} does not exist (spec.target.ref of BackupConfiguration "
                    f"{bc.metadata.namespace}/{bc.metadata.name}).",
                )
            )
        else:
            updates.append(
                ConditionUpdate.true(
                    ConditionType.BACKUP_TARGET_FOUND,
                    ConditionReason.TARGET_AVAILABLE,
                    f"Backup target {target} found.",
                )
            )
            problems += workload_problems(bc, observed.workload.value)
    else:
        updates.append(ConditionUpdate.remove(ConditionType.BACKUP_TARGET_FOUND))

    updates.append(validation_passed(problems))
    return Verdict(tuple(updates), applicable=found_all and not problems, model=model)


def with_task_check(bc: BackupConfiguration, verdict: Verdict) -> Verdict:
    """``verdict`` with :func:`~stashlet.operator.kubedump.backup_job.task_problems` added to
    ``ValidationPassed`` (and not applicable then)."""
    problems = task_problems(bc)
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
