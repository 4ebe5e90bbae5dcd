"""``stashlet-agent repo``: one restic command on one Repository, for ``kubectl stash`` (a short-lived Pod).

The plugin writes the request into ``$STASHLET_REPO_REQUEST`` (JSON: the operation, its parameters, the
Repository's name and its ``spec.backend``; never a secret) and mounts the storage Secret as the sidecar
mounts it (``$STASHLET_STORAGE_SECRETS_DIR/<secret name>``); a new password, for ``key add``, comes in
a file of another mounted Secret. No Kubernetes API is used: the pod needs no account.

Each result is one JSON line on stdout carrying :data:`MARK` (``{"stashlet-repo": "snapshot", ...}``),
which the plugin reads back from the pod's log; a failure is one ``error`` line (restic's message, the
Secret's values scrubbed) and exit status 1. :func:`perform` is the one place the operations are written:
``kubectl stash --local`` calls it too, with the user's restic. Both let restic wait up to
:data:`RETRY_LOCK` seconds for a lock (:func:`waiting_for_locks`): a sidecar's retention or integrity check
may hold one when a command comes, and ``key remove`` or ``forget`` need the repository to themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stashlet.agent.errors import RefuseInput
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import PASSWORD_KEY, build_repository
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.errors import ResticError, WrongPassword, error_for_exit
from stashlet.agent.restic.mounted_secret import read_mounted_secret
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.agent.settings import AgentSettings

log = logging.getLogger(__name__)

ENV_REQUEST = "STASHLET_REPO_REQUEST"
MARK = "stashlet-repo"
"""The key that tells a result line from a log line in the pod's log."""
EXIT_DONE = 0
EXIT_FAILED = 1

Emit = Callable[[dict[str, Any]], None]

OPERATIONS = (
    "snapshots",
    "unlock",
    "check",
    "forget",
    "read",
    "key-list",
    "key-add",
    "key-remove",
    "restore",
)


class RequestError(RefuseInput):
    """The request is not one this mode runs; the message names the field."""


@dataclass(frozen=True)
class Request:
    """One operation on one Repository (``namespace/name``, for messages)."""

    operation: str
    repository: str
    backend: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The request as the plugin puts it into the pod's environment."""
        return json.dumps(
            {
                "operation": self.operation,
                "repository": self.repository,
                "backend": dict(self.backend),
                "params": dict(self.params),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Request:
        """The request from ``$STASHLET_REPO_REQUEST``; RequestError names what is wrong."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RequestError(f"{ENV_REQUEST} is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise RequestError(f"{ENV_REQUEST} must be a JSON object")
        operation = raw.get("operation")
        if operation not in OPERATIONS:
            raise RequestError(f"{ENV_REQUEST}.operation must be one of {', '.join(OPERATIONS)}")
        backend, params = raw.get("backend"), raw.get("params") or {}
        if not isinstance(backend, dict) or not isinstance(params, dict):
            raise RequestError(f"{ENV_REQUEST}.backend and .params must be JSON objects")
        return cls(str(operation), str(raw.get("repository") or ""), backend, params)


def result(kind: str, **fields: Any) -> dict[str, Any]:
    """One result line's object."""
    return {MARK: kind, **fields}


async def _checked(restic: Restic, args: Sequence[str], *, collect: bool = False) -> str:
    """Run restic; its stdout, or the taxonomy's error (scrubbed)."""
    ran = await restic.run(args, collect=collect)
    json_error = restic.scrub(ran.exit_error.message) if ran.exit_error else None
    location = restic.repository.display_url if restic.repository is not None else None
    error = error_for_exit(ran.exit_code, ran.stderr_tail, json_error, location=location)
    if error is not None:
        raise error
    return ran.stdout


def _snapshot(snapshot: rj.Snapshot) -> dict[str, Any]:
    summary = snapshot.summary
    return result(
        "snapshot",
        id=snapshot.id,
        short_id=snapshot.short_id,
        time=snapshot.time.isoformat() if snapshot.time else None,
        hostname=snapshot.hostname,
        paths=list(snapshot.paths),
        tags=list(snapshot.tags),
        size=summary.total_bytes_processed if summary is not None else None,
    )


async def _keys(restic: Restic) -> list[dict[str, Any]]:
    keys = json.loads(await _checked(restic, ["key", "list", "--no-lock"], collect=True) or "[]")
    return [k for k in keys if isinstance(k, dict)]


async def perform(restic: Restic, request: Request, emit: Emit) -> None:
    """Run ``request`` against the repository ``restic`` is bound to, emitting each result."""
    params = request.params
    if request.operation == "snapshots":
        for snapshot in await restic.snapshots(no_lock=True):
            emit(_snapshot(snapshot))
    elif request.operation == "unlock":
        await (restic.unlock_all() if params.get("remove_all") else restic.unlock())
        emit(result("unlocked"))
    elif request.operation == "check":
        subset = "100%" if params.get("read_data") else params.get("read_data_subset")
        report = await restic.check_report(read_data_subset=str(subset) if subset else None)
        emit(result("check", ok=report.ok, num_errors=report.num_errors, errors=list(report.errors)))
    elif request.operation == "forget":
        ids = [str(i) for i in params.get("ids") or []]
        await restic.forget_snapshots(ids)
        if params.get("prune"):
            await restic.prune()
        emit(result("forgotten", ids=ids))
    elif request.operation == "read":
        config = await restic.cat_config()
        count = len(await restic.snapshots(no_lock=True))
        emit(result("read", repository_id=config.get("id"), snapshots=count))
    elif request.operation == "key-list":
        for key in await _keys(restic):
            emit(result("key", **key))
    elif request.operation == "key-add":
        await _key_add(restic, params, emit)
    elif request.operation == "key-remove":
        await _checked(restic, ["key", "remove", str(params["id"])])
        emit(result("key-removed", id=str(params["id"])))
    elif request.operation == "restore":
        await _restore(restic, params, emit)


async def _opens_with(restic: Restic, password_file: str) -> str | None:
    """The ID of the key ``password_file``'s password opens, or None when it opens none (restic reads the
    file's first line)."""
    repo = restic.repository
    if repo is None:
        return None
    raw = await asyncio.to_thread(Path(password_file).read_bytes)
    lines = raw.decode(errors="replace").splitlines()
    password = lines[0] if lines else ""
    probe_repo = dataclasses.replace(
        repo,
        env={**repo.env, PASSWORD_KEY: password},
        secrets=repo.secrets | ({password} if password else set()),
    )
    try:
        keys = await _keys(Restic(restic.settings, probe_repo))
    except WrongPassword:
        return None
    return next((str(k.get("id")) for k in keys if k.get("current")), None)


async def _key_add(restic: Restic, params: Mapping[str, Any], emit: Emit) -> None:
    """Add the key; with ``reuse_existing``, a password that already opens the repository is not added
    again (a rotation run a second time after its key was added)."""
    password_file = str(params["new_password_file"])
    if params.get("reuse_existing"):
        existing = await _opens_with(restic, password_file)
        if existing is not None:
            emit(result("key-added", id=existing, existed=True))
            return
    before = {str(k.get("id")) for k in await _keys(restic)}
    args = ["key", "add", f"--new-password-file={password_file}"]
    args += [f"--host={params['host']}"] if params.get("host") else []
    args += [f"--user={params['user']}"] if params.get("user") else []
    await _checked(restic, args)
    added = [str(k.get("id")) for k in await _keys(restic) if str(k.get("id")) not in before]
    emit(result("key-added", id=added[0] if len(added) == 1 else None, existed=False))


async def _restore(restic: Restic, params: Mapping[str, Any], emit: Emit) -> None:
    def progress(status: rj.RestoreStatus) -> None:
        emit(
            result(
                "progress",
                percent=status.percent_done,
                files=status.files_restored,
                total_files=status.total_files,
                bytes=status.bytes_restored,
                total_bytes=status.total_bytes,
            )
        )

    summary = await restic.restore(
        str(params.get("snapshot") or "latest"),
        target=str(params["target"]),
        include=[str(p) for p in params.get("include") or []],
        progress_cb=progress,
    )
    emit(result("restored", files=summary.files_restored, bytes=summary.bytes_restored))


def _print(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


RETRY_LOCK = 300.0
"""Seconds restic waits for another process's lock before a command fails as locked."""


def waiting_for_locks(settings: ResticSettings) -> ResticSettings:
    """``settings`` with restic's lock wait (:data:`RETRY_LOCK`) unless a wait is already set."""
    return settings if settings.retry_lock else dataclasses.replace(settings, retry_lock=RETRY_LOCK)


async def run(settings: AgentSettings, restic_settings: ResticSettings) -> int:
    """Run the request of ``$STASHLET_REPO_REQUEST`` (module docstring)."""
    try:
        request = Request.from_json(os.environ.get(ENV_REQUEST, ""))
    except RequestError as exc:
        _print(result("error", message=str(exc)))
        return EXIT_FAILED
    where = request.repository
    secret_name = str(request.backend.get("storageSecretName") or "")
    folder = Path(settings.storage_secrets_dir or "") / secret_name
    data = read_mounted_secret(folder) if settings.storage_secrets_dir and secret_name else None
    if not data:
        message = (
            f"Repository {where}: storage Secret {secret_name!r} (spec.backend.storageSecretName) "
            "is not mounted or empty"
        )
        _print(result("error", message=message))
        return EXIT_FAILED
    restic: Restic | None = None
    try:
        repo = build_repository(
            request.backend,
            data,
            files_dir=os.path.join(settings.tmp_dir, "repo-files"),
            secret_namespace=settings.namespace,
        )
        restic = Restic(waiting_for_locks(restic_settings), repo)
        await perform(restic, request, _print)
    except (BackendError, ResticError) as exc:
        text = restic.scrub(str(exc)) if restic is not None else str(exc)
        log.error("repository command failed", extra={"repository": where, "operation": request.operation})
        _print(result("error", message=f"Repository {where}: {text}"))
        return EXIT_FAILED
    log.info("repository command done", extra={"repository": where, "operation": request.operation})
    return EXIT_DONE
