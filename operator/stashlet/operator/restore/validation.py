"""Found objects -> a RestoreSession's validation conditions and phase: pure.

The reconciler looks the dependencies up (:class:`RestoreObserved`); :func:`validate_restore` turns what
it found into ``RepositoryFound``, ``BackendSecretFound``, ``RestoreTargetFound`` and
``ValidationPassed`` and says whether the init-container may be injected. Every failure names the
object and the field. Nothing is injected unless everything is found and valid.

What is checked, besides the objects existing: the target is a workload the init-container model
serves (Deployment, StatefulSet, DaemonSet, ReplicaSet in ``apps/v1``, in the session's namespace), the
``volumeMounts`` name volumes of its pod, the driver is Restic and there is no ``task`` or
``volumeClaimTemplates`` (the job model), the Repository's ``usagePolicy`` admits the namespace, and the
rules (:func:`stashlet.api.restore_rules.rule_problems`: the very checks the agent makes again before it
restores, so a session the operator passes is one the agent accepts, and both say the same words).

The phase: the operator owns it only until the agent starts (None, ``Pending``, ``Invalid``): ``Invalid``
when ``ValidationPassed`` is False, else ``Pending``. From ``Running`` on the agent writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.common import Condition, ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.api.restore_rules import rule_problems, rules_of
from stashlet.api.restoresession import RestorePhase, RestoreSession
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.validation import Lookup, repository_conditions, validation_passed

OPERATOR_PHASES = frozenset({None, RestorePhase.PENDING, RestorePhase.INVALID})
"""Phases the operator may overwrite; the agent owns every other one."""


@dataclass(frozen=True)
class RestoreObserved:
    """What the reconciler found for one RestoreSession."""

    repository: Lookup[Repository]
    secret_keys: Lookup[frozenset[str]]
    workload: Lookup[dict[str, Any]]
    namespace_labels: Mapping[str, str] | None = None
    other_restore: str | None = None
    """Another live RestoreSession whose init-container the target already carries."""


@dataclass(frozen=True)
class RestoreVerdict:
    """The validation conditions, and whether the init-container may be injected."""

    updates: tuple[ConditionUpdate, ...]
    applicable: bool


def repository_key(rs: RestoreSession) -> tuple[str, str] | None:
    """``(namespace, name)`` of the session's Repository (its own namespace when none is given)."""
    ref = rs.spec.repository
    if ref is None:
        return None
    return ref.namespace or rs.metadata.namespace or "", ref.name


def target_kind(rs: RestoreSession) -> workloads.WorkloadKind | None:
    """The supported workload kind the session restores into, or None."""
    ref = rs.spec.target.ref if rs.spec.target else None
    if ref is None or ref.kind is None or not ref.name:
        return None
    kind = workloads.WORKLOAD_KINDS.get(ref.kind)
    if kind is None or (ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS):
        return None
    return kind


def spec_problems(rs: RestoreSession) -> list[str]:
    """What is wrong with the session by itself, each naming the field."""
    spec = rs.spec
    if spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
        return ["spec.driver: VolumeSnapshotter is not supported by stashlet; use Restic"]
    problems: list[str] = []
    if spec.repository is None:
        problems.append("spec.repository: required with the Restic driver")
    if spec.task is not None and spec.task.name:
        problems.append(
            f"spec.task: task {spec.task.name!r} is not supported: stashlet restores workload volumes "
            "through the stash-init init-container (a kubedump backup is restored with restic and "
            "kubectl, see docs/kubedump-restore.md)"
        )
    target = spec.target
    if target is not None and target.volume_claim_templates:
        problems.append(
            "spec.target.volumeClaimTemplates: restoring into new PVCs (a restore Job) is not supported"
        )
    ref = target.ref if target else None
    if ref is None or not ref.kind or not ref.name:
        problems.append("spec.target.ref: the kind and name of the workload to restore into are required")
    elif ref.kind not in workloads.WORKLOAD_KINDS:
        supported = ", ".join(workloads.WORKLOAD_KINDS)
        problems.append(
            f"spec.target.ref.kind: {ref.kind} is not supported; the init-container goes into {supported}"
        )
    elif ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS:
        problems.append(
            f"spec.target.ref.apiVersion: {ref.api_version} is not supported for {ref.kind}; use apps/v1"
        )
    if ref is not None and ref.namespace and ref.namespace != rs.metadata.namespace:
        problems.append(
            f"spec.target.ref.namespace: the target must be in the session's namespace "
            f"{rs.metadata.namespace}, not {ref.namespace}"
        )
    for i, mount in enumerate(target.volume_mounts or [] if target else []):
        if mount.mount_path.rstrip("/") == names.TMP_MOUNT_PATH:
            problems.append(
                f"spec.target.volumeMounts[{i}].mountPath: {names.TMP_MOUNT_PATH} is the init-container's "
                "temporary directory"
            )
    where, rules = rules_of(rs)
    problems += rule_problems(rules, where)
    return problems


def workload_problems(rs: RestoreSession, workload: dict[str, Any], other: str | None) -> list[str]:
    """What keeps the init-container from going into this workload, each naming the field."""
    meta = workload.get("metadata", {})
    what = workloads.describe(str(workload.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
    problems: list[str] = []
    volumes = workloads.volume_names(workload)
    target = rs.spec.target
    for i, mount in enumerate(target.volume_mounts or [] if target else []):
        if mount.name not in volumes:
            problems.append(
                f"spec.target.volumeMounts[{i}].name: {what} has no volume {mount.name!r} "
                f"(its volumes: {', '.join(volumes) or 'none'})"
            )
    template_annotations = workloads.pod_template(workload).get("metadata", {}).get("annotations") or {}
    applied = template_annotations.get(names.ANNOTATION_LAST_APPLIED_RESTORE)
    if other is not None:
        problems.append(
            f"spec.target.ref: {what} already carries the {names.INIT_CONTAINER} init-container of {other}; "
            "delete that RestoreSession first"
        )
    elif not applied:
        inits = workloads.pod_spec(workload).get("initContainers") or []
        if any(c.get("name") == names.INIT_CONTAINER for c in inits):
            problems.append(
                f"spec.target.ref: {what} already has an init-container named {names.INIT_CONTAINER!r} "
                "that stashlet did not inject"
            )
    return problems


def _target_text(rs: RestoreSession) -> str:
    ref = rs.spec.target.ref if rs.spec.target else None
    assert ref is not None
    return f"{ref.api_version or 'apps/v1'} {str(ref.kind).lower()}/{ref.name}"


def validate_restore(rs: RestoreSession, observed: RestoreObserved) -> RestoreVerdict:
    """The validation conditions for ``rs`` given what was found (see the module docstring)."""
    updates: list[ConditionUpdate] = []
    problems = spec_problems(rs)
    repo_key = repository_key(rs)
    found_all = repository_conditions(
        updates,
        problems,
        referrer=f"RestoreSession {rs.metadata.namespace}/{rs.metadata.name}",
        namespace=rs.metadata.namespace or "",
        repo_name=f"{repo_key[0]}/{repo_key[1]}" if repo_key else None,
        repository=observed.repository,
        secret_keys=observed.secret_keys,
        namespace_labels=observed.namespace_labels,
    )

    if target_kind(rs) is not None:
        target = _target_text(rs)
        if observed.workload.error is not None:
            found_all = False
            updates.append(
                ConditionUpdate.unknown(
                    ConditionType.RESTORE_TARGET_FOUND,
                    ConditionReason.UNABLE_TO_CHECK_TARGET_AVAILABILITY,
                    f"Failed to check whether restore target {target} exist or not. "
                    f"Reason: {observed.workload.error}",
                )
            )
        elif observed.workload.value is None:
            found_all = False
            updates.append(
                ConditionUpdate.false(
                    ConditionType.RESTORE_TARGET_FOUND,
                    ConditionReason.TARGET_NOT_AVAILABLE,
                    f"Restore target {target} does not exist.",
                )
            )
        else:
            updates.append(
                ConditionUpdate.true(
                    ConditionType.RESTORE_TARGET_FOUND,
                    ConditionReason.TARGET_AVAILABLE,
                    f"Restore target {target} found.",
                )
            )
            problems += workload_problems(rs, observed.workload.value, observed.other_restore)
    else:
        updates.append(ConditionUpdate.remove(ConditionType.RESTORE_TARGET_FOUND))

    updates.append(validation_passed(problems))
    return RestoreVerdict(tuple(updates), applicable=found_all and not problems)


def restore_phase(conditions: Sequence[Condition], current: RestorePhase | None) -> RestorePhase | None:
    """The phase the operator writes: ``Invalid`` or ``Pending`` while it owns the phase, else ``current``."""
    if current not in OPERATOR_PHASES:
        return current
    for condition in conditions:
        if condition.type == ConditionType.VALIDATION_PASSED and condition.status == ConditionStatus.FALSE:
            return RestorePhase.INVALID
    return RestorePhase.PENDING
