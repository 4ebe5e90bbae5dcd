"""Where a ``kubectl stash`` command runs restic: in the cluster (:class:`PodAccess`, the default: a
short-lived Pod from the agent image running ``stashlet-agent repo``, the storage Secret mounted as the
sidecar mounts it, its results read back from the pod's log) or here (:class:`LocalAccess`, ``--local``:
the user's restic, the Secret read through the API and held in memory and 0600 files in a private
temporary folder, removed afterwards). Both run :func:`stashlet.agent.repo_command.perform`, the one
place the operations are written, and hand each result to the caller; neither prints a secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stashlet.agent.repo_command import ENV_REQUEST, MARK, Emit, Request, perform, waiting_for_locks
from stashlet.agent.restic.backend import build_repository, decode_secret_data
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.runner import Restic, ResticSettings, inherited_env
from stashlet.agent.settings import MODE_REPO
from stashlet.api import agent_contract, names
from stashlet.api.agent_identity import ENV_STORAGE_SECRETS_DIR
from stashlet.api.repository import Repository
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.paths import collection_path, object_path
from stashlet.kube.rest import KubeApi
from stashlet.kubectl_stash.errors import PluginError, object_name
from stashlet.kubectl_stash.repositories import read_secret, secret_path, storage_secret_name
from stashlet.kubectl_stash.runtime_env import runtime_for
from stashlet.operator.injection.agent_container import (
    agent_container,
    agent_credentials,
    agent_storage,
    default_security_context,
)
from stashlet.operator.settings import DEFAULT_AGENT_IMAGE, OperatorSettings

CONTAINER = "stash-repo"
NEW_PASSWORD_KEY = "NEW_RESTIC_PASSWORD"  # noqa: S105 - a key name
NEW_PASSWORD_DIR = "/var/run/stashlet/new-password"  # noqa: S105 - a path
POD_TIMEOUT = 600.0
_TOKEN_VOLUME = "stash-unused-token"  # noqa: S105 - a volume name
_SECRET_VOLUME = "stash-storage-secret"  # noqa: S105 - a volume name
_LOCAL_VOLUME = "stash-local"


class Access(Protocol):
    """Runs one request on a Repository; ``new_password`` for ``key-add``."""

    async def perform(
        self, repo: Repository, request: Request, emit: Emit, new_password: bytes | None = None
    ) -> None:
        """Run ``request`` and hand each result line to ``emit``; PluginError on a failure."""
        ...


def _where(repo: Repository) -> str:
    return object_name(names.KIND_REPOSITORY, repo.metadata.namespace, repo.metadata.name or "")


def request_for(repo: Repository, operation: str, **params: Any) -> Request:
    """A request for ``operation`` on ``repo``."""
    where = f"{repo.metadata.namespace}/{repo.metadata.name}"
    return Request(operation, where, repo.spec.backend.to_dict(), params)


async def collect(access: Access, repo: Repository, operation: str, **params: Any) -> list[dict[str, Any]]:
    """Run ``operation`` on ``repo`` through ``access``; its result lines."""
    lines: list[dict[str, Any]] = []
    await access.perform(repo, request_for(repo, operation, **params), lines.append)
    return lines


@dataclass
class LocalAccess:
    """The user's restic (``--local``), with the Secret read through the user's API access."""

    api: KubeApi
    restic_binary: str = "restic"

    async def perform(
        self, repo: Repository, request: Request, emit: Emit, new_password: bytes | None = None
    ) -> None:
        """See :class:`Access`."""
        secret = await read_secret(self.api, repo)
        folder = tempfile.mkdtemp(prefix="kubectl-stash-")  # 0700
        restic: Restic | None = None
        try:
            data = decode_secret_data(secret.get("data"))
            built = build_repository(
                repo.spec.backend.to_dict(), data, files_dir=folder, secret_namespace=repo.metadata.namespace
            )
            params = dict(request.params)
            if new_password is not None:
                path = os.path.join(folder, "new-password")
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(new_password)
                params["new_password_file"] = path
            settings = ResticSettings(
                binary=self.restic_binary,
                cache_dir=os.path.join(folder, "cache"),
                tmp_dir=folder,
                base_env=inherited_env(os.environ),
            )
            restic = Restic(waiting_for_locks(settings), built)
            await perform(
                restic, Request(request.operation, request.repository, request.backend, params), emit
            )
        except (BackendError, ResticError) as exc:
            text = restic.scrub(str(exc)) if restic is not None else str(exc)
            raise PluginError(f"{_where(repo)}: {text}") from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _name(repo: Repository) -> str:
    base = f"stash-repo-{repo.metadata.name}"[:50].rstrip("-.")
    return f"{base}-{secrets.token_hex(3)}"


def repo_pod(
    repo: Repository,
    request: Request,
    image: str,
    name: str,
    password_secret: str | None,
    runtime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Pod that runs ``request`` with the agent image (module docstring): no service account token,
    the storage Secret (and the new password's Secret) mounted read-only, never restarted; ``runtime`` is
    the ``env``/``envFrom`` of the configuration using the Repository (:mod:`.runtime_env`)."""
    namespace = repo.metadata.namespace or ""
    settings = OperatorSettings(agent_image=image)
    volumes, mounts = agent_storage(None, repo, names.TMP_VOLUME, _LOCAL_VOLUME)
    secret_volumes, secret_mounts, secret_env = agent_credentials(
        "", namespace, repo, token_volume=_TOKEN_VOLUME, secret_volume=_SECRET_VOLUME
    )
    # the sidecar's storage Secret mount without its own token (this pod uses no API)
    volumes += [v for v in secret_volumes if v["name"] != _TOKEN_VOLUME]
    mounts += [m for m in secret_mounts if m["name"] != _TOKEN_VOLUME]
    env = [e for e in secret_env if e["name"] == ENV_STORAGE_SECRETS_DIR]
    params = dict(request.params)
    if password_secret is not None:
        volumes.append({"name": "new-password", "secret": {"secretName": password_secret}})
        mounts.append({"name": "new-password", "mountPath": NEW_PASSWORD_DIR, "readOnly": True})
        params["new_password_file"] = f"{NEW_PASSWORD_DIR}/{NEW_PASSWORD_KEY}"
    carried = Request(request.operation, request.repository, request.backend, params)
    args = agent_contract.AgentInvocation(
        mode=MODE_REPO,
        invoker_kind=names.KIND_REPOSITORY,
        invoker_name=repo.metadata.name or "",
        target_kind="",
        target_name="",
        status_port=names.DEFAULT_STATUS_PORT,
        tmp_dir=names.TMP_MOUNT_PATH,
    ).args()
    container = agent_container(CONTAINER, args, mounts, runtime or {}, ("envFrom",), settings)
    own = {ENV_REQUEST, *(e["name"] for e in env)}
    container["env"] = [e for e in container["env"] if e.get("name") not in own]
    container["env"] += [*env, {"name": ENV_REQUEST, "value": carried.to_json()}]
    if repo.spec.backend.local is not None:  # the sidecar wrote the files as root
        default_security_context(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY,
                "app.kubernetes.io/component": "kubectl-stash",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": int(POD_TIMEOUT),
            "containers": [container],
            "volumes": volumes,
        },
    }


def parse_results(lines: list[str]) -> list[dict[str, Any]]:
    """The result lines (:data:`MARK`) of a pod's log, in order; log lines are skipped."""
    found: list[dict[str, Any]] = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and MARK in obj:
            found.append(obj)
    return found


@dataclass
class PodAccess:
    """A short-lived Pod from the agent image in the Repository's namespace (the default)."""

    api: KubeApi
    image: str = DEFAULT_AGENT_IMAGE
    timeout: float = POD_TIMEOUT
    poll: float = 1.0
    on_pod: Callable[[str], None] | None = None
    """Told each pod's name as it is created (tests watch it)."""
    backupconfig: str | None = None
    """The BackupConfiguration whose runtime env the pod takes (``--backupconfig``, :mod:`.runtime_env`)."""

    async def perform(
        self, repo: Repository, request: Request, emit: Emit, new_password: bytes | None = None
    ) -> None:
        """See :class:`Access`."""
        namespace, name = repo.metadata.namespace or "", _name(repo)
        storage_secret_name(repo)
        runtime = await runtime_for(self.api, repo, self.backupconfig)
        password_secret = f"{name}-new-password" if new_password is not None else None
        pods = collection_path("", "v1", "pods", namespace)
        try:
            if password_secret is not None and new_password is not None:
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": password_secret, "namespace": namespace},
                    "type": "Opaque",
                    "data": {NEW_PASSWORD_KEY: base64.b64encode(new_password).decode()},
                }
                await self.api.send("POST", secret_path(namespace), body=body)
            await self.api.send(
                "POST", pods, body=repo_pod(repo, request, self.image, name, password_secret, runtime)
            )
            if self.on_pod is not None:
                self.on_pod(name)
            phase = await self._finished(namespace, name)
            lines = [
                line.decode(errors="replace")
                async for line in self.api.stream(
                    f"{pods}/{name}/log", {"container": CONTAINER}, accept="*/*"
                )
            ]
        except KubeError as exc:
            raise PluginError(f"{_where(repo)}: cannot run the restic pod {namespace}/{name}: {exc}") from exc
        finally:
            await self._delete(object_path("", "v1", "pods", namespace, name))
            if password_secret is not None:
                await self._delete(secret_path(namespace, password_secret))
        results = parse_results(lines)
        for line in results:
            if line[MARK] == "error":
                raise PluginError(str(line.get("message")))
            emit(line)
        if phase != "Succeeded":
            raise PluginError(
                f"{_where(repo)}: the restic pod {namespace}/{name} ended {phase} with no result"
            )

    async def _finished(self, namespace: str, name: str) -> str:
        """Wait for the pod to end; its phase. A pod that cannot start (image, volume) fails with why."""
        path = object_path("", "v1", "pods", namespace, name)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            pod = await self.api.send("GET", path)
            status = pod.get("status") or {}
            phase = str(status.get("phase") or "Pending")
            if phase in ("Succeeded", "Failed"):
                return phase
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                    raise PluginError(
                        f"the restic pod {namespace}/{name} cannot pull image {self.image!r} (--image): "
                        f"{waiting.get('message') or waiting.get('reason')}"
                    )
            await asyncio.sleep(self.poll)
        raise PluginError(f"the restic pod {namespace}/{name} did not finish within {self.timeout:g}s")

    async def _delete(self, path: str) -> None:
        try:
            await self.api.send("DELETE", path, query={"gracePeriodSeconds": 0})
        except NotFound:
            return
        except KubeError:
            return  # best effort; the pod's activeDeadlineSeconds ends it anyway
