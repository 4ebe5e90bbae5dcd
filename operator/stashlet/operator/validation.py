"""Found objects -> a BackupConfiguration's validation conditions: pure.

The reconciler looks the dependencies up (:class:`Observed`); :func:`validate` turns what it found into
``RepositoryFound``, ``BackendSecretFound``, ``BackupTargetFound`` and ``ValidationPassed`` and says
whether the configuration may be applied (RBAC, CronJob, sidecar). Every failure names the object and
the field that refers to it. Nothing is applied unless everything is found and valid, so a bad
configuration never leaves a workload injected half-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Snapshotter, VolumeMount
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import FromNamespaces, Repository
from stashlet.operator import workloads
from stashlet.operator.status import ConditionUpdate
from stashlet.operator.usage_policy import usage_allowed

T = TypeVar("T")

RESTIC_PASSWORD = "RESTIC_PASSWORD"  # noqa: S105 - a key name


class Model(StrEnum):
    """How a configuration is carried out."""

    SIDECAR = "sidecar"
    """A workload's volumes: the agent runs as a sidecar in the workload's pods."""
    JOB = "job"
    """A Task (``spec.task.name``), such as the resource-YAML dump: a Job per session, no sidecar."""


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """The result of looking one object up: found (``value``), missing (neither), or unknown (``error``)."""

    value: T | None = None
    error: str | None = None


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


def needs_namespace_labels(repository: Repository | None) -> bool:
    """True when the Repository's usage policy selects namespaces by label."""
    policy = repository.spec.usage_policy if repository else None
    allowed = policy.allowed_namespaces if policy else None
    return allowed is not None and allowed.from_ == FromNamespaces.SELECTOR


def target_mounts(bc: BackupConfiguration) -> list[VolumeMount]:
    """``spec.target.volumeMounts`` (empty when not given)."""
    return list(bc.spec.target.volume_mounts or []) if bc.spec.target else []


def invoker_annotation(bc: BackupConfiguration) -> str:
    """The value of the ``last-applied-invoker`` annotation: ``BackupConfiguration/<name>``."""
    return f"{names.KIND_BACKUP_CONFIGURATION}/{bc.metadata.name}"


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


def secret_problems(repository: Repository, secret: str, keys: frozenset[str]) -> list[str]:
    """Keys the backend needs that the Secret lacks (the same rules the agent applies when it runs restic)."""
    where = f"Backend Secret {repository.metadata.namespace}/{secret}"
    problems: list[str] = []
    if RESTIC_PASSWORD not in keys:
        problems.append(f"{where} has no non-empty key {RESTIC_PASSWORD} (every backend needs it)")
    backend = repository.spec.backend

    def pair(first: str, second: str) -> None:
        if (first in keys) != (second in keys):
            present, missing = (first, second) if first in keys else (second, first)
            problems.append(f"{where} sets {present} but has no {missing}")

    if backend.s3 is not None:
        pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    if backend.b2 is not None:
        for key in ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"):
            if key not in keys:
                problems.append(f"{where} has no {key} (the b2 backend needs it)")
    if backend.azure is not None:
        storage_account = (backend.azure.model_extra or {}).get("storageAccount")
        if "AZURE_ACCOUNT_NAME" not in keys and not storage_account:
            problems.append(
                f"{where} has no AZURE_ACCOUNT_NAME and spec.backend.azure sets no storageAccount"
            )
    if backend.rest is not None and "REST_SERVER_PASSWORD" in keys and "REST_SERVER_USERNAME" not in keys:
        problems.append(f"{where} sets REST_SERVER_PASSWORD but has no REST_SERVER_USERNAME")
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


def validation_passed(problems: list[str]) -> ConditionUpdate:
    """``ValidationPassed``: False listing every problem (each names its field), else True."""
    if problems:
        return ConditionUpdate.false(
            ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_FAILED, "; ".join(problems)
        )
    return ConditionUpdate.true(
        ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_PASSED, "Successfully validated."
    )


def repository_conditions(
    updates: list[ConditionUpdate],
    problems: list[str],
    *,
    referrer: str,
    namespace: str,
    repo_name: str | None,
    repository: Lookup[Repository],
    secret_keys: Lookup[frozenset[str]],
    namespace_labels: Mapping[str, str] | None,
) -> bool:
    """Add the RepositoryFound and BackendSecretFound conditions for the object ``referrer`` (e.g.
    ``BackupConfiguration demo/pause-backup``) in ``namespace``, whose ``spec.repository`` names
    ``repo_name``; a usagePolicy refusal goes into ``problems``. True when both were found and usable.
    Shared by BackupConfigurations and RestoreSessions, so both say the same thing in the same words.
    Without a ``repo_name`` (no ``spec.repository``) both conditions are removed."""
    if repo_name is None:
        updates += [ConditionUpdate.remove(ConditionType.REPOSITORY_FOUND)]
        updates += [ConditionUpdate.remove(ConditionType.BACKEND_SECRET_FOUND)]
        return True
    repo = repository
    if repo.error is not None or repo.value is None:
        if repo.error is not None:
            updates.append(
                ConditionUpdate.unknown(
                    ConditionType.REPOSITORY_FOUND,
                    ConditionReason.UNABLE_TO_CHECK_REPOSITORY_AVAILABILITY,
                    f"Failed to check whether the Repository {repo_name} exists. Reason: {repo.error}",
                )
            )
        else:
            updates.append(
                ConditionUpdate.false(
                    ConditionType.REPOSITORY_FOUND,
                    ConditionReason.REPOSITORY_NOT_AVAILABLE,
                    f"Repository {repo_name} does not exist (spec.repository of {referrer}).",
                )
            )
        updates.append(
            ConditionUpdate.unknown(
                ConditionType.BACKEND_SECRET_FOUND,
                ConditionReason.UNABLE_TO_CHECK_BACKEND_SECRET_AVAILABILITY,
                f"The backend Secret is named by Repository {repo_name}, which was not found.",
            )
        )
        return False
    found = repo.value
    updates.append(
        ConditionUpdate.true(
            ConditionType.REPOSITORY_FOUND,
            ConditionReason.REPOSITORY_AVAILABLE,
            f"Repository {repo_name} exists.",
        )
    )
    decision = usage_allowed(found, namespace, namespace_labels)
    if not decision.allowed:
        problems.append(f"spec.repository: {decision.message}")
        # The Secret of a Repository this namespace may not use is none of its business.
        updates.append(ConditionUpdate.remove(ConditionType.BACKEND_SECRET_FOUND))
        return False
    secret = found.spec.backend.storage_secret_name
    secret_name = f"{found.metadata.namespace}/{secret}"
    keys = secret_keys
    if not secret:
        message = f"Repository {repo_name} names no backend Secret (spec.backend.storageSecretName)."
        updates.append(
            ConditionUpdate.false(
                ConditionType.BACKEND_SECRET_FOUND, ConditionReason.BACKEND_SECRET_NOT_AVAILABLE, message
            )
        )
        return False
    if keys.error is not None:
        updates.append(
            ConditionUpdate.unknown(
                ConditionType.BACKEND_SECRET_FOUND,
                ConditionReason.UNABLE_TO_CHECK_BACKEND_SECRET_AVAILABILITY,
                f"Failed to check whether the backend Secret {secret_name} exists. Reason: {keys.error}",
            )
        )
        return False
    if keys.value is None:
        updates.append(
            ConditionUpdate.false(
                ConditionType.BACKEND_SECRET_FOUND,
                ConditionReason.BACKEND_SECRET_NOT_AVAILABLE,
                f"Backend Secret {secret_name} does not exist "
                f"(spec.backend.storageSecretName of Repository {repo_name}).",
            )
        )
        return False
    missing = secret_problems(found, secret, keys.value)
    if missing:
        updates.append(
            ConditionUpdate.false(
                ConditionType.BACKEND_SECRET_FOUND,
                ConditionReason.BACKEND_SECRET_NOT_AVAILABLE,
                "; ".join(missing) + f" (spec.backend.storageSecretName of Repository {repo_name}).",
            )
        )
        return False
    updates.append(
        ConditionUpdate.true(
            ConditionType.BACKEND_SECRET_FOUND,
            ConditionReason.BACKEND_SECRET_AVAILABLE,
            f"Backend Secret {secret_name} exists.",
        )
    )
    return True
