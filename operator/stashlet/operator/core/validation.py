"""What every reconciler's validation shares: lookups, the Repository and its Secret, the verdict: pure.

A reconciler looks its dependencies up (each a :class:`Lookup`: found, missing, or unknown). For the
``spec.repository`` of a BackupConfiguration or a RestoreSession, :func:`repository_conditions` turns what
was found into ``RepositoryFound`` and ``BackendSecretFound`` (the Repository's ``usagePolicy`` must admit
the referring namespace; the Secret must hold the keys its backend needs), so both kinds say the same thing
in the same words; :func:`validation_passed` sums the problems up as ``ValidationPassed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stashlet.api import names
from stashlet.api.common import KubeObject, TargetRef, VolumeMount
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import FromNamespaces, Repository
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.usage_policy import usage_allowed

T = TypeVar("T")


RESTIC_PASSWORD = "RESTIC_PASSWORD"  # noqa: S105 - a key name


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """The result of looking one object up: found (``value``), missing (neither), or unknown (``error``)."""

    value: T | None = None
    error: str | None = None


def needs_namespace_labels(repository: Repository | None) -> bool:
    """True when the Repository's usage policy selects namespaces by label."""
    policy = repository.spec.usage_policy if repository else None
    allowed = policy.allowed_namespaces if policy else None
    return allowed is not None and allowed.from_ == FromNamespaces.SELECTOR


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


def validation_passed(problems: list[str]) -> ConditionUpdate:
    """``ValidationPassed``: False listing every problem (each names its field), else True."""
    if problems:
        return ConditionUpdate.false(
            ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_FAILED, "; ".join(problems)
        )
    return ConditionUpdate.true(
        ConditionType.VALIDATION_PASSED, ConditionReason.RESOURCE_VALIDATION_PASSED, "Successfully validated."
    )


@dataclass(frozen=True)
class Observed:
    """What a reconciler found for one BackupConfiguration or RestoreSession."""

    repository: Lookup[Repository]
    secret_keys: Lookup[frozenset[str]]
    """Keys of the backend Secret that hold a non-empty value (never the values)."""
    workload: Lookup[dict[str, Any]]
    namespace_labels: Mapping[str, str] | None = None
    """Labels of the owner's namespace (needed when a usage policy selects namespaces)."""


def repository_conditions(
    updates: list[ConditionUpdate],
    problems: list[str],
    owner: KubeObject,
    repo_key: tuple[str, str] | None,
    observed: Observed,
) -> bool:
    """Add the RepositoryFound and BackendSecretFound conditions for ``owner``, whose ``spec.repository``
    names ``repo_key`` (namespace, name); a usagePolicy refusal goes into ``problems``. True when both
    were found and usable. Shared by BackupConfigurations and RestoreSessions, so both say the same thing
    in the same words. Without a ``repo_key`` (no ``spec.repository``) both conditions are removed."""
    namespace = owner.metadata.namespace or ""
    referrer = f"{owner.kind} {namespace}/{owner.metadata.name}"
    repo_name = f"{repo_key[0]}/{repo_key[1]}" if repo_key else None
    repository, secret_keys = observed.repository, observed.secret_keys
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
    decision = usage_allowed(found, namespace, observed.namespace_labels)
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


@dataclass(frozen=True)
class TargetTexts:
    """What the target condition says when the target could not be read, is missing, or is found."""

    unable: str
    missing: str
    found: str


def target_condition(type_: ConditionType, workload: Lookup[T], texts: TargetTexts) -> ConditionUpdate:
    """The ``*TargetFound`` condition for a target read as ``workload`` (``{reason}`` in ``texts.unable``
    is the API server's message)."""
    if workload.error is not None:
        message = texts.unable.format(reason=workload.error)
        return ConditionUpdate.unknown(type_, ConditionReason.UNABLE_TO_CHECK_TARGET_AVAILABILITY, message)
    if workload.value is None:
        return ConditionUpdate.false(type_, ConditionReason.TARGET_NOT_AVAILABLE, texts.missing)
    return ConditionUpdate.true(type_, ConditionReason.TARGET_AVAILABLE, texts.found)


@dataclass(frozen=True)
class TargetWords:
    """How a kind's target checks name its owner and its agent container."""

    owner: str
    """"configuration" or "session"."""
    verb: str
    """What is done to the target: "back up" or "restore into"."""
    container: str
    """"sidecar" or "init-container"."""


def target_problems(
    ref: TargetRef | None, mounts: list[VolumeMount], owner_namespace: str | None, words: TargetWords
) -> list[str]:
    """What is wrong with ``spec.target`` by itself: the workload must be named, of a kind the agent
    container goes into, in ``apps/v1`` and the owner's namespace; no mount may take the agent's
    temporary directory. Each problem names the field."""
    problems: list[str] = []
    if ref is None or not ref.kind or not ref.name:
        problems.append(f"spec.target.ref: the kind and name of the workload to {words.verb} are required")
    elif ref.kind not in workloads.WORKLOAD_KINDS:
        supported = ", ".join(workloads.WORKLOAD_KINDS)
        problems.append(
            f"spec.target.ref.kind: {ref.kind} is not supported; the {words.container} goes into {supported}"
        )
    elif ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS:
        problems.append(
            f"spec.target.ref.apiVersion: {ref.api_version} is not supported for {ref.kind}; use apps/v1"
        )
    if ref is not None and ref.namespace and ref.namespace != owner_namespace:
        problems.append(
            f"spec.target.ref.namespace: the target must be in the {words.owner}'s namespace "
            f"{owner_namespace}, not {ref.namespace}"
        )
    for i, mount in enumerate(mounts):
        if mount.mount_path.rstrip("/") == names.TMP_MOUNT_PATH:
            problems.append(
                f"spec.target.volumeMounts[{i}].mountPath: {names.TMP_MOUNT_PATH} is the {words.container}'s "
                "temporary directory"
            )
    return problems


def mount_problems(mounts: list[VolumeMount], workload: dict[str, Any]) -> list[str]:
    """``spec.target.volumeMounts`` that name no volume of ``workload``'s pods."""
    volumes = workloads.volume_names(workload)
    return [
        f"spec.target.volumeMounts[{i}].name: {what_workload(workload)} has no volume {mount.name!r} "
        f"(its volumes: {', '.join(volumes) or 'none'})"
        for i, mount in enumerate(mounts)
        if mount.name not in volumes
    ]


def what_workload(workload: dict[str, Any]) -> str:
    """How problems name ``workload``."""
    meta = workload.get("metadata", {})
    return workloads.describe(str(workload.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
