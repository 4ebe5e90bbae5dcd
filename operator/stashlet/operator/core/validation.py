"""What every reconciler's validation shares: lookups, the Repository and its Secret, the verdict: pure.

A reconciler looks its dependencies up (each a :class:`Lookup`: found, missing, or unknown). For the
``spec.repository`` of a BackupConfiguration or a RestoreSession, :func:`repository_conditions` turns what
was found into ``RepositoryFound`` and ``BackendSecretFound`` (the Repository's ``usagePolicy`` must admit
the referring namespace; the Secret must hold the keys its backend needs), so both kinds say the same thing
in the same words; :func:`validation_passed` sums the problems up as ``ValidationPassed``.

The target is checked the same way for both kinds: :func:`target_problems` (the reference itself),
:func:`mount_problems` and :func:`foreign_container` (against the found workload), and
:func:`target_condition` (``BackupTargetFound`` / ``RestoreTargetFound``). :func:`checked` puts the
repository, the target and ``ValidationPassed`` together into one verdict; :func:`repository_key` and
:func:`target_kind` read what an owner refers to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import KubeObject, TargetRef, VolumeMount
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import FromNamespaces, Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core import field_support, workloads
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
    problems += [
        f"Repository {repo_name} {problem}"
        for problem in field_support.refusals(names.KIND_REPOSITORY, found.to_dict()["spec"])
    ]
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


def repository_key(owner: BackupConfiguration | RestoreSession) -> tuple[str, str] | None:
    """``(namespace, name)`` of ``owner``'s Repository (its own namespace when none is given)."""
    ref = owner.spec.repository
    if ref is None:
        return None
    return ref.namespace or owner.metadata.namespace or "", ref.name


def target_kind(owner: BackupConfiguration | RestoreSession) -> workloads.WorkloadKind | None:
    """The supported workload kind ``owner`` targets by name, or None."""
    ref = owner.spec.target.ref if owner.spec.target else None
    if ref is None or ref.kind is None or not ref.name:
        return None
    kind = workloads.WORKLOAD_KINDS.get(ref.kind)
    if kind is None or (ref.api_version and ref.api_version not in workloads.SUPPORTED_API_VERSIONS):
        return None
    return kind


def target_text(owner: BackupConfiguration | RestoreSession) -> str:
    """How conditions name ``owner``'s target: ``apps/v1 deployment/web``."""
    ref = owner.spec.target.ref if owner.spec.target else None
    assert ref is not None  # only called once target_kind() found one
    return f"{ref.api_version or 'apps/v1'} {str(ref.kind).lower()}/{ref.name}"


def checked(
    owner: BackupConfiguration | RestoreSession,
    observed: Observed,
    problems: list[str],
    target_type: ConditionType,
    texts: TargetTexts | None,
    on_workload: Callable[[dict[str, Any]], list[str]],
) -> tuple[tuple[ConditionUpdate, ...], bool]:
    """The validation conditions of ``owner``: the Repository and its Secret, the target (``texts``; None
    when there is no workload target to check, which removes ``target_type``), ``on_workload``'s problems
    with the found workload, and ``ValidationPassed`` summing ``problems`` up. Also whether everything
    was found and valid, so that the owner may be applied."""
    updates: list[ConditionUpdate] = []
    found_all = repository_conditions(updates, problems, owner, repository_key(owner), observed)
    if texts is None:
        updates.append(ConditionUpdate.remove(target_type))
    else:
        updates.append(target_condition(target_type, observed.workload, texts))
        if observed.workload.value is None:
            found_all = False
        else:
            problems += on_workload(observed.workload.value)
    updates.append(validation_passed(problems))
    return tuple(updates), found_all and not problems


def foreign_container(workload: dict[str, Any], field: str, name: str, noun: str) -> list[str]:
    """A problem when ``workload``'s pods already have, in ``field``, ``noun`` (e.g. "a container")
    called ``name`` that stashlet did not put there."""
    if all(c.get("name") != name for c in workloads.pod_spec(workload).get(field) or []):
        return []
    what = what_workload(workload)
    return [f"spec.target.ref: {what} already has {noun} named {name!r} that stashlet did not inject"]
