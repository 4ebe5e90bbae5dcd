"""What every session handler of one agent process shares: settings, clients, identity, live state."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stashlet.agent.errors import RefuseInput
from stashlet.agent.hosts import HostIdentity, identify, job_identity
from stashlet.agent.live import LiveState
from stashlet.agent.restic.backend import ResticRepository, build_repository, decode_secret_data
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.mounted_secret import follow_changes, read_mounted_secret
from stashlet.agent.restic.priority import priority_from_container
from stashlet.agent.restic.runner import ResticSettings, inherited_env
from stashlet.agent.settings import AgentSettings
from stashlet.api import agent_contract as contract
from stashlet.api import names
from stashlet.api.common import Condition, ConditionStatus, EmptyDirSettings, RuntimeSettings
from stashlet.api.durations import parse_duration
from stashlet.api.repository import Repository
from stashlet.kube import paths
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import NotFound
from stashlet.kube.events import EventRecorder
from stashlet.kube.leases import LeaseLock
from stashlet.kube.rest import KubeApi, RestClient

if TYPE_CHECKING:  # the kinds read_invoker is given; their modules are loaded by the mode that uses one
    from stashlet.api.backupconfiguration import BackupConfiguration
    from stashlet.api.restoresession import RestoreSession

_WORKLOADS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "ReplicaSet": "replicasets",
}


log = logging.getLogger(__name__)


class PreparationError(RefuseInput):
    """Something the session needs is missing or wrong; ``reason`` is a condition-style word."""


class InvokerTarget(Protocol):
    """What the agent reads of an invoker's ``spec.target`` (BackupTarget and RestoreTarget)."""

    @property
    def alias(self) -> str | None: ...  # noqa: D102


class InvokerSpec(Protocol):
    """What the agent reads of an invoker's spec besides the work itself (BackupConfiguration and
    RestoreSession): the target's alias, the runtime settings and the temporary directory."""

    @property
    def target(self) -> InvokerTarget | None: ...  # noqa: D102
    @property
    def runtime_settings(self) -> RuntimeSettings | None: ...  # noqa: D102
    @property
    def temp_dir(self) -> EmptyDirSettings | None: ...  # noqa: D102


def target_alias(spec: InvokerSpec) -> str | None:
    """``spec.target.alias``, None when unset or empty."""
    return (spec.target.alias if spec.target is not None else None) or None


def agent_host(settings: AgentSettings, alias: str | None) -> HostIdentity:
    """The host this agent plays: a Job's single host, or the sidecar's or init-container's."""
    if settings.mode == contract.MODE_JOB:
        return job_identity(alias)
    return identify(settings.target_kind, settings.pod_name, settings.node_name, alias)


def restic_for(base: ResticSettings, spec: InvokerSpec) -> ResticSettings:
    """``base`` as the invoker asks: the niceness and I/O priority of ``runtimeSettings.container``
    (``nice``, ``ionice``) for every restic process, and no cache under ``tempDir.disableCaching``.

    Raises :class:`~stashlet.agent.restic.errors.PriorityRefused` for a malformed nice or ionice.
    """
    container = spec.runtime_settings.container if spec.runtime_settings is not None else None
    no_cache = bool(spec.temp_dir is not None and spec.temp_dir.disable_caching)
    return dataclasses.replace(
        base,
        priority=priority_from_container(container),
        cache_dir=None if no_cache else base.cache_dir,
    )


def upsert_condition(
    conditions: list[Condition] | None, type_: str, ok: bool, reason: str, message: str, now: dt.datetime
) -> list[Condition]:
    """``conditions`` with ``type_`` set; lastTransitionTime changes only when its status does."""
    new_status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
    conditions = conditions or []
    for condition in conditions:
        if condition.type == type_:
            if condition.status != new_status:
                condition.last_transition_time = now
            condition.status, condition.reason, condition.message = new_status, reason, message
            break
    else:
        conditions.append(
            Condition(type=type_, status=new_status, reason=reason, message=message, last_transition_time=now)
        )
    return conditions


def target_lease(
    api: KubeApi,
    settings: AgentSettings,
    purpose: str,
    *,
    duration: int = 15,
    renew_every: float = 5.0,
) -> LeaseLock:
    """The Lease ``lock-<target kind>-<target name>-<purpose>`` of this agent's target, held as this pod."""
    name = names.lease_name(settings.target_kind, settings.target_name, purpose)
    return LeaseLock(
        api, settings.namespace, name, settings.pod_name, duration=duration, renew_every=renew_every
    )


def live_state(settings: AgentSettings, host: HostIdentity) -> LiveState:
    """The empty ``GET /status`` record of this agent: its invoker, target (none for a Job), host, mode."""
    return LiveState(
        invoker={
            "kind": settings.invoker_kind,
            "name": settings.invoker_name,
            "namespace": settings.namespace,
        },
        target={"kind": settings.target_kind, "name": settings.target_name} if settings.target_kind else {},
        host=host.name,
        mode=settings.mode,
    )


@dataclass
class AgentContext:
    """Everything a session handler needs; built once per process."""

    settings: AgentSettings
    api: RestClient
    stash: StashClient
    events: EventRecorder
    host: HostIdentity
    live: LiveState
    restic: ResticSettings
    lease: LeaseLock | None = None
    """The Lease this host holds while it works, where hosts take turns (None otherwise)."""
    agent_pods: dict[str, str] = dataclasses.field(default_factory=dict)
    """The pods that ran an agent of this namespace, as the sessions this agent has seen named them (host
    name -> pod): the judge of a repository's locks (:mod:`stashlet.agent.stale_locks`) still knows them
    once the operator has pruned those sessions."""
    secret_watch: asyncio.Task[None] | None = None
    """Follows the mounted storage Secrets (:func:`follow_changes`), when there are any."""

    @classmethod
    def of_process(
        cls,
        settings: AgentSettings,
        api: RestClient,
        *,
        component: str,
        host: HostIdentity,
        restic: ResticSettings,
    ) -> AgentContext:
        """The context of this process: clients on ``api``, events as ``component`` from this pod, an
        empty live state, and (when the operator mounted storage Secrets) their changes followed."""
        return cls(
            settings=settings,
            api=api,
            stash=StashClient(api),
            events=EventRecorder(api, component, host=settings.pod_name),
            host=host,
            live=live_state(settings, host),
            restic=restic,
            secret_watch=follow_mounted_secrets(settings),
        )

    @property
    def namespace(self) -> str:
        """The namespace of this pod, its invoker and its target."""
        return self.settings.namespace

    def follow_alias(self, spec: InvokerSpec) -> None:
        """Play the host the invoker's ``spec.target.alias`` names now (it may change between sessions)."""
        host = agent_host(self.settings, target_alias(spec))
        if host == self.host:
            return
        log.info(
            "host name follows spec.target.alias",
            extra={"invoker": self.object_ref(), "host": host.name, "was": self.host.name},
        )
        self.host = host
        self.live.host = host.name

    def restic_for(self, spec: InvokerSpec) -> ResticSettings:
        """This agent's restic settings as the invoker asks (see :func:`restic_for`)."""
        return restic_for(self.restic, spec)

    async def read_workload(self) -> dict[str, Any]:
        """The target workload (Deployment, StatefulSet, DaemonSet, ReplicaSet) as a dict."""
        plural = _WORKLOADS.get(self.settings.target_kind)
        if plural is None:
            return {}
        path = paths.object_path("apps", "v1", plural, self.namespace, self.settings.target_name)
        try:
            return await self.api.send("GET", path)
        except NotFound as exc:
            raise PreparationError(
                f"{self.settings.target_kind} {self.namespace}/{self.settings.target_name} not found",
                reason="TargetNotFound",
            ) from exc

    async def repository(self, name: str, namespace: str | None) -> tuple[Repository, ResticRepository]:
        """Read the Repository and its storage Secret (fresh, every session) and build restic's view."""
        repo_ns = namespace or self.namespace
        try:
            repo = await self.stash.get(Repository, repo_ns, name)
        except NotFound as exc:
            raise PreparationError(
                f"Repository {repo_ns}/{name} not found", reason="RepositoryNotFound"
            ) from exc
        backend = repo.spec.backend.to_dict()
        secret_name = backend.get("storageSecretName")
        if not secret_name:
            raise PreparationError(
                f"Repository {repo_ns}/{name}: spec.backend.storageSecretName is empty",
                reason="BackendSecretNotAvailable",
            )
        data = await self.storage_secret(repo_ns, secret_name, name)
        files_dir = Path(self.settings.tmp_dir) / "credentials" / name
        files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            restic_repo = build_repository(
                backend,
                data,
                files_dir=str(files_dir),
                secret_namespace=repo_ns,
            )
        except BackendError as exc:
            raise PreparationError(
                f"Repository {repo_ns}/{name}: {exc}", reason="BackendSecretNotAvailable"
            ) from exc
        return repo, restic_repo

    async def storage_secret(self, namespace: str, secret: str, repository: str) -> dict[str, bytes]:
        """The storage Secret's data: from the volume the operator mounted when it lives in this agent's
        namespace (the agent may not read it through the API then), else through the API (a Repository
        of another namespace, whose ``usagePolicy`` grants this one by name)."""
        ref = (
            f"storage Secret {namespace}/{secret} "
            f"(Repository {namespace}/{repository} spec.backend.storageSecretName)"
        )
        mounted = self.settings.storage_secrets_dir
        if mounted is not None and namespace == self.namespace:
            data = await asyncio.to_thread(read_mounted_secret, Path(mounted) / secret)
            if data is None:
                raise PreparationError(
                    f"{ref} is not mounted into this container (the operator mounts the Secret the "
                    "Repository names and injects the sidecar again when that name changes)",
                    reason="BackendSecretNotAvailable",
                )
            if not data:
                raise PreparationError(f"{ref} not found", reason="BackendSecretNotAvailable")
            return data
        try:
            found = await self.api.send("GET", paths.core("secrets", namespace, secret))
        except NotFound as exc:
            raise PreparationError(f"{ref} not found", reason="BackendSecretNotAvailable") from exc
        try:
            return decode_secret_data(found.get("data"))
        except BackendError as exc:
            raise PreparationError(
                f"Repository {namespace}/{repository}: {exc}", reason="BackendSecretNotAvailable"
            ) from exc

    def may_initialize(self, repo: Repository) -> bool:
        """False when the Repository forbids initialising a missing restic repository."""
        annotations = repo.metadata.annotations or {}
        return annotations.get(names.ANNOTATION_INIT_REPOSITORY, "true").lower() != "false"

    def object_ref(self) -> str:
        """``namespace/name`` of this agent's invoker, for logs."""
        return f"{self.namespace}/{self.settings.invoker_name}"


def follow_mounted_secrets(settings: AgentSettings) -> asyncio.Task[None] | None:
    """A task logging each change of the storage Secrets mounted for this agent, when there are any (and an
    event loop runs)."""
    mounted = settings.storage_secrets_dir
    if mounted is None or not Path(mounted).is_dir():
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.create_task(follow_changes(Path(mounted)), name="storage-secret-watch")


def missing_paths(paths: list[str]) -> list[str]:
    """The target paths that do not exist in this container."""
    return [p for p in paths if not os.path.exists(p)]


def restic_settings(settings: AgentSettings) -> ResticSettings:
    """How this agent runs restic: its binary, cache and temporary folders in the agent's tmp volume, and
    how long it waits for a live lock holder (``STASHLET_LOCK_WAIT``) and for a backend restic keeps
    retrying (``STASHLET_BACKEND_GIVE_UP_AFTER``) when a session has no ``timeOut``: Go durations."""
    return ResticSettings(
        binary=settings.restic_binary,
        cache_dir=settings.cache_dir,
        tmp_dir=settings.tmp_dir,
        base_env={**inherited_env(os.environ), "HOME": settings.tmp_dir},
        lock_wait=parse_duration(os.environ.get("STASHLET_LOCK_WAIT", "10m")),
        backend_give_up=parse_duration(os.environ.get("STASHLET_BACKEND_GIVE_UP_AFTER", "5m")),
    )


def identity_fields(settings: AgentSettings, host: HostIdentity) -> dict[str, str]:
    """Who this agent is, for its start-up log line: invoker, host and target."""
    return {
        "invoker": f"{settings.namespace}/{settings.invoker_name}",
        "host": host.name,
        "target": f"{settings.target_kind}/{settings.target_name}",
    }


async def read_invoker(
    api: KubeApi, settings: AgentSettings, kind: type[BackupConfiguration] | type[RestoreSession]
) -> InvokerSpec | None:
    """The spec of this agent's invoker, of the ``kind`` its mode serves (the sidecar a
    BackupConfiguration, a restore a RestoreSession: each process loads only its own model); None if it
    does not exist."""
    try:
        return (await StashClient(api).get(kind, settings.namespace, settings.invoker_name)).spec
    except NotFound:
        log.warning(
            "invoker not found at start", extra={"invoker": f"{settings.namespace}/{settings.invoker_name}"}
        )
        return None
