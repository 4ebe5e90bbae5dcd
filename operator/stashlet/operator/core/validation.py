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
from typing import Generic, TypeVar

from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import FromNamespaces, Repository
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
