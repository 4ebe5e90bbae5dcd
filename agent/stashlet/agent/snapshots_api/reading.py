"""Snapshots read from the backends: each selected Repository, its storage Secret, ``restic snapshots``.

Every read runs restic without a cache, in a private folder of its own (the key and certificate files of
the Secret, mode 0600) removed afterwards; the Secret's values stay in memory and in restic's environment
and never reach a message (restic's words are scrubbed of them). Before restic runs, the backend's
endpoint is probed, so a refused connection is answered at once; restic itself is bounded by
``timeout`` (the API server gives a proxied request a minute). A repository restic finds no repository
at has no snapshots, as in Stash. A ``local`` backend lives on a workload's volume, out of this server's
reach: a list leaves it out with a warning, a get names it.

A failure is a :class:`ReadFailure` naming the Repository (and field) and the HTTP status and reason
of the Status it is answered with.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stashlet.agent.errors import ReportFailure
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import build_repository, decode_secret_data
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.endpoint import probe_for
from stashlet.agent.restic.errors import RepositoryNotFound, ResticError
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.api import names
from stashlet.kube.errors import Forbidden, KubeError, NotFound
from stashlet.kube.paths import collection_path, core, object_path
from stashlet.kube.rest import KubeApi

log = logging.getLogger(__name__)

RESTIC_TIMEOUT = 45.0
"""How long restic may take to list one repository (the API server ends a proxied request after 60 s)."""
CONCURRENT_READS = 4


class ReadFailure(ReportFailure):
    """A Repository whose snapshots cannot be read, answered with HTTP ``code`` and a Status whose
    reason is this error's ``reason`` (``NotFound``, ``InternalError``, ``ServiceUnavailable``...)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        """Answer ``message`` with ``code`` and ``reason``."""
        super().__init__(message, reason=reason)
        self.code = code


@dataclass(frozen=True)
class Listed:
    """What a list found: each Repository's snapshots, and warnings on what was left out."""

    snapshots: list[tuple[dict[str, Any], rj.Snapshot]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def where(repository: Mapping[str, Any]) -> str:
    """``Repository <namespace>/<name>``."""
    metadata = repository.get("metadata") or {}
    return f"{names.KIND_REPOSITORY} {metadata.get('namespace')}/{metadata.get('name')}"


def backend_of(repository: Mapping[str, Any]) -> dict[str, Any]:
    """The Repository's ``spec.backend`` (empty when missing)."""
    backend = (repository.get("spec") or {}).get("backend")
    return dict(backend) if isinstance(backend, Mapping) else {}


def is_local(repository: Mapping[str, Any]) -> bool:
    """Whether the Repository's backend is a local volume."""
    return isinstance(backend_of(repository).get("local"), Mapping)


def local_warning(repository: Mapping[str, Any]) -> str:
    """Why a local Repository is not read here, and what reads it."""
    name = (repository.get("metadata") or {}).get("name")
    return (
        f"{where(repository)}: spec.backend.local is a volume of the workload, not reachable from the "
        f"snapshots API server; list its snapshots with: kubectl stash snapshots {name}"
    )


@dataclass
class SnapshotReader:
    """Reads Repositories and Secrets through ``api`` (this server's own account) and snapshots with
    restic as ``settings`` says; private folders go under ``tmp_dir``."""

    api: KubeApi
    settings: ResticSettings
    tmp_dir: str
    timeout: float = RESTIC_TIMEOUT
    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_READS))

    async def repositories(self, namespace: str | None) -> list[dict[str, Any]]:
        """The Repositories of ``namespace`` (None: of every namespace)."""
        path = collection_path(names.GROUP, names.V1ALPHA1, names.REPOSITORIES, namespace)
        try:
            answer = await self.api.send("GET", path)
        except KubeError as exc:
            raise ReadFailure(500, "InternalError", f"listing Repositories failed: {exc.message}") from exc
        return [item for item in answer.get("items") or [] if isinstance(item, dict)]

    async def repository(self, namespace: str, name: str) -> dict[str, Any]:
        """One Repository; a 404 ReadFailure naming it when it does not exist."""
        path = object_path(names.GROUP, names.V1ALPHA1, names.REPOSITORIES, namespace, name)
        try:
            return await self.api.send("GET", path)
        except NotFound as exc:
            raise ReadFailure(404, "NotFound", f'repositories.stash.appscode.com "{name}" not found') from exc
        except KubeError as exc:
            raise ReadFailure(
                500, "InternalError", f"reading Repository {namespace}/{name} failed: {exc.message}"
            ) from exc

    async def _secret(self, repository: Mapping[str, Any]) -> dict[str, bytes]:
        namespace = (repository.get("metadata") or {}).get("namespace") or ""
        secret_name = backend_of(repository).get("storageSecretName")
        field_name = "spec.backend.storageSecretName"
        if not isinstance(secret_name, str) or not secret_name:
            raise ReadFailure(500, "InternalError", f"{where(repository)}: {field_name} is not set")
        try:
            secret = await self.api.send("GET", core("secrets", namespace, secret_name))
        except NotFound as exc:
            # not a 404: kubectl reads a list's 404 as "no such resource" and rewords it
            message = f'{where(repository)}: {field_name}: Secret "{namespace}/{secret_name}" not found'
            raise ReadFailure(500, "InternalError", message) from exc
        except Forbidden as exc:
            named = f'Secret "{namespace}/{secret_name}"'
            message = f"{where(repository)}: {field_name}: this server may not read {named}"
            raise ReadFailure(500, "InternalError", message) from exc
        except KubeError as exc:
            message = f'{where(repository)}: reading Secret "{namespace}/{secret_name}" failed: {exc.message}'
            raise ReadFailure(500, "InternalError", message) from exc
        try:
            return decode_secret_data(secret.get("data"))
        except BackendError as exc:
            raise ReadFailure(500, "InternalError", f"{where(repository)}: {exc}") from exc

    async def snapshots(self, repository: Mapping[str, Any]) -> list[rj.Snapshot]:
        """The restic snapshots of ``repository`` (oldest first); ReadFailure naming it if unreadable."""
        if is_local(repository):
            raise ReadFailure(400, "BadRequest", local_warning(repository))
        data = await self._secret(repository)
        async with self.limit:
            folder = tempfile.mkdtemp(prefix="snapshots-", dir=self.tmp_dir)
            try:
                return await self._restic_snapshots(repository, data, folder)
            finally:
                await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _restic_snapshots(
        self, repository: Mapping[str, Any], data: Mapping[str, bytes], folder: str
    ) -> list[rj.Snapshot]:
        namespace = (repository.get("metadata") or {}).get("namespace")
        try:
            built = build_repository(
                backend_of(repository), data, files_dir=folder, secret_namespace=namespace
            )
        except BackendError as exc:
            raise ReadFailure(500, "InternalError", f"{where(repository)}: spec.backend: {exc}") from exc
        probe = probe_for(built, self.settings.base_env)
        refused = await probe() if probe is not None else None
        if refused is not None:
            message = f"{where(repository)}: backend {built.display_url} unreachable: {refused}"
            raise ReadFailure(503, "ServiceUnavailable", built.scrub(message))
        last_retry: list[str] = []

        def heard(notice: rj.BackendNotice) -> None:
            if isinstance(notice, rj.BackendRetry):
                last_retry[:] = [notice.error]

        restic = Restic(replace(self.settings, cache_dir=None, tmp_dir=folder), built, on_backend=heard)
        try:
            async with asyncio.timeout(self.timeout):
                return await restic.snapshots(no_lock=True)
        except RepositoryNotFound:
            return []
        except ResticError as exc:
            raise ReadFailure(500, "InternalError", f"{where(repository)}: {restic.scrub(str(exc))}") from exc
        except TimeoutError as exc:
            said = f"; restic's last error: {last_retry[0]}" if last_retry else ""
            late = f"did not answer within {self.timeout:g}s"
            message = f"{where(repository)}: backend {built.display_url} {late}{said}"
            raise ReadFailure(504, "Timeout", restic.scrub(message)) from exc

    async def read_all(self, repositories: list[dict[str, Any]]) -> Listed:
        """Each Repository's snapshots, local ones left out with a warning; the first failure (by
        Repository) raised, naming every Repository that failed."""
        readable = [r for r in repositories if not is_local(r)]
        listed = Listed(warnings=[local_warning(r) for r in repositories if is_local(r)])
        results = await asyncio.gather(*(self.snapshots(r) for r in readable), return_exceptions=True)
        failures = [result for result in results if isinstance(result, ReadFailure)]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ReadFailure):
                raise result
        if failures:
            first = failures[0]
            message = "; ".join(f.message for f in failures)
            raise ReadFailure(first.code, first.reason, message)
        for repository, found in zip(readable, results, strict=True):
            assert isinstance(found, list)
            listed.snapshots.extend((repository, snapshot) for snapshot in found)
        return listed
