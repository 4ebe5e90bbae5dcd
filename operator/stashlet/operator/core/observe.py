"""Reading what a BackupConfiguration or RestoreSession depends on, and recording the dependencies: async.

A reconcile hands the controller a :class:`ReconcileResult`: the objects it depends on (their changes
enqueue it again) and the metadata of what it wrote.

Both reconcilers look up the same things for the ``spec.repository`` they are given: the Repository,
the key names of its storage Secret, and the labels of the referring namespace when the Repository's
``usagePolicy`` needs them (another namespace, or a Selector). Each read is a :class:`Lookup`: found,
missing, or unknown (no right to read it, with the API server's message).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError, NotFound
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.validation import Lookup, needs_namespace_labels

Dependency = tuple[str, str, str]
"""(kind, namespace or "", name) of an object a reconcile read."""


@dataclass
class ReconcileResult:
    """What the controller needs back: the objects to watch on the configuration's behalf."""

    dependencies: set[Dependency] = field(default_factory=set)
    gone: bool = False
    seen: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Metadata of objects as this reconcile left them, by ``(kind, namespace/name)``: their watch events
    need not trigger another reconcile."""


async def lookup(pending: Awaitable[Any]) -> Lookup[Any]:
    """Await a read: found, missing (NotFound), or unknown (no right to read it, with the message)."""
    try:
        return Lookup(value=await pending)
    except NotFound:
        return Lookup()
    except KubeError as exc:
        if exc.status in (403, 401):
            return Lookup(error=exc.message)
        raise


@dataclass(frozen=True)
class RepositoryObserved:
    """The Repository a ``spec.repository`` names, its Secret's key names, the namespace's labels."""

    repository: Lookup[Repository]
    secret_keys: Lookup[frozenset[str]]
    namespace_labels: dict[str, str] | None


async def observe_repository(
    stash: StashClient,
    resources: Resources,
    namespace: str,
    repo_key: tuple[str, str] | None,
    deps: set[Dependency],
) -> RepositoryObserved:
    """Look up Repository ``repo_key`` referred to from ``namespace`` and what validating it needs;
    every object read goes into ``deps``."""
    repository: Lookup[Repository] = Lookup()
    secret_keys: Lookup[frozenset[str]] = Lookup()
    labels: dict[str, str] | None = None
    if repo_key is not None:
        deps.add(("Repository", *repo_key))
        repository = await lookup(stash.get(Repository, *repo_key))
    repo = repository.value
    if repo is not None and repo_key is not None:
        secret = repo.spec.backend.storage_secret_name
        if secret:
            deps.add(("Secret", repo_key[0], secret))
            secret_keys = await lookup(resources.secret_keys(repo_key[0], secret))
        if repo_key[0] != namespace or needs_namespace_labels(repo):
            deps.add(("Namespace", "", namespace))
            labels = (await lookup(resources.namespace_labels(namespace))).value
    return RepositoryObserved(repository, secret_keys, labels)
