"""Workload + BackupConfiguration -> the pod template with the ``stash`` sidecar, and back: pure.

The sidecar runs ``stashlet-agent sidecar`` with the invoker and target arguments from
:class:`stashlet.api.agent_contract.AgentInvocation`, its pod's identity from the downward API, the target's
``volumeMounts`` read-only, the ``stash-tmp-dir`` emptyDir at ``/stash-tmp`` (``spec.tempDir``), a local
backend's volume when the Repository uses one, the container ``runtimeSettings``, and the status port
with liveness (``/healthz``) and readiness (``/readyz``) probes. And what only this container gets (see
:mod:`stashlet.api.agent_identity`): the token of its own ServiceAccount ``stashlet-agent-<bc>`` (volume
``stash-kube-token``) and, when the Repository lives in the configuration's namespace, the storage Secret
(volume ``stash-storage-secret``), both read-only and ``optional`` (a missing Secret keeps the agent, not
the application, from working), with the variables that tell the agent where they are.

Two annotations on the pod template record what was applied: the invoker (``BackupConfiguration/<name>``)
and a hash of the sidecar and its volumes; the workload itself is labelled
``stash.appscode.com/backup-configuration: <name>`` (no rollout), so it can be found again when the
configuration moves to another target or goes away. A workload whose template already carries the
desired hash, container and volumes is left alone, so reconciling an unchanged configuration causes no
rollout, and a change causes exactly one.

GitOps (Argo CD, Flux): re-applying the workload's original manifest with ``kubectl apply`` (client-side,
three-way) or server-side apply leaves the sidecar in place, since the manifest never owned it. A tool
that *replaces* the object (``kubectl replace``, Argo CD's ``Replace=true``, Flux ``force``) drops the
sidecar and the annotations together; the operator sees the workload change, injects once more, and the
result is the same template as before (same hash), so there is exactly one rollout and no loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api import agent_identity as identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import VolumeMount
from stashlet.api.repository import Repository
from stashlet.operator.core.field_support import Runner, container_fields
from stashlet.operator.injection.agent_container import (
    AgentInjection,
    agent_args,
    agent_container,
    agent_credentials,
    agent_storage,
    inject,
    is_injected,
    remove_recorded,
)

__all__ = ["Injection", "build_injection", "inject", "invoker_annotation", "is_injected", "remove_injection"]
from stashlet.operator.settings import OperatorSettings

LOCAL_BACKEND_VOLUME = "stash-local"
"""The volume holding a ``local`` backend, mounted at the backend's ``mountPath``."""
KUBE_TOKEN_VOLUME = "stash-kube-token"  # noqa: S105 - a volume's name
"""The sidecar's own ServiceAccount token (its Secret), at ``KUBE_TOKEN_DIR``."""
STORAGE_SECRET_VOLUME = "stash-storage-secret"  # noqa: S105 - a volume's name
"""The storage Secret of a Repository in the configuration's namespace, at
``<STORAGE_SECRETS_DIR>/<secret name>``."""

STATUS_PORT_NAME = "stash-status"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class Injection(AgentInjection):
    """What goes into a pod template: the sidecar, its volumes, and the annotations that record them."""

    INVOKER_ANNOTATION = names.ANNOTATION_LAST_APPLIED_INVOKER
    HASH_ANNOTATION = names.ANNOTATION_INJECTION_HASH
    CONTAINER = names.SIDECAR_CONTAINER
    FIELD = "containers"
    FIRST = False
    LABEL = names.LABEL_BACKUP_CONFIGURATION
    """Valued with the BackupConfiguration's name."""
    OWN_VOLUMES = (names.TMP_VOLUME, LOCAL_BACKEND_VOLUME, KUBE_TOKEN_VOLUME, STORAGE_SECRET_VOLUME)


def target_mounts(bc: BackupConfiguration) -> list[VolumeMount]:
    """``spec.target.volumeMounts`` (empty when not given)."""
    return list(bc.spec.target.volume_mounts or []) if bc.spec.target else []


def invoker_annotation(bc: BackupConfiguration) -> str:
    """The value of the ``last-applied-invoker`` annotation: ``BackupConfiguration/<name>``."""
    return f"{names.KIND_BACKUP_CONFIGURATION}/{bc.metadata.name}"


def _probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 10, "failureThreshold": 3}


def credentials(
    bc: BackupConfiguration, repository: Repository | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes, mounts and env that give the sidecar its own token and, where the Repository lives in
    ``bc``'s namespace, the storage Secret."""
    return agent_credentials(
        identity.agent_account(bc.metadata.name or ""),
        bc.metadata.namespace or "",
        repository,
        token_volume=KUBE_TOKEN_VOLUME,
        secret_volume=STORAGE_SECRET_VOLUME,
    )


def build_injection(
    bc: BackupConfiguration,
    target_kind: str,
    target_name: str,
    repository: Repository | None,
    settings: OperatorSettings,
) -> Injection:
    """The sidecar and volumes for ``bc``'s target (see the module docstring)."""
    port = settings.status_port
    mounts: list[dict[str, Any]] = []
    for mount in target_mounts(bc):
        entry = mount.to_dict()
        entry["readOnly"] = True
        mounts.append(entry)
    volumes, own_mounts = agent_storage(bc.spec.temp_dir, repository, names.TMP_VOLUME, LOCAL_BACKEND_VOLUME)
    secret_volumes, secret_mounts, secret_env = credentials(bc, repository)
    runtime = (bc.spec.runtime_settings.container if bc.spec.runtime_settings else None) or {}
    container = agent_container(
        names.SIDECAR_CONTAINER,
        agent_args(agent_contract.MODE_SIDECAR, bc, (target_kind, target_name), settings),
        mounts + own_mounts + secret_mounts,
        runtime,
        container_fields(Runner.SIDECAR),
        settings,
        ports=[{"name": STATUS_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        probes={"livenessProbe": _probe(HEALTH_PATH, port), "readinessProbe": _probe(READY_PATH, port)},
    )
    own_env = {e["name"] for e in secret_env}
    container["env"] = [*(e for e in container["env"] if e.get("name") not in own_env), *secret_env]
    return Injection.made_for(bc, container, volumes + secret_volumes)


def remove_injection(workload: dict[str, Any], invoker: str) -> dict[str, Any] | None:
    """A copy of ``workload`` without what ``invoker`` injected (and its label), or None when there is
    nothing of it. A template injected for another invoker is left alone.
    """
    return remove_recorded(workload, invoker, Injection)
