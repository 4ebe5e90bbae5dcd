"""Who backs up: the host identity of this agent and how many hosts a target has.

The restic host name is Stash's (its ``util.GetHostName``), with ``spec.target.alias`` of the
BackupConfiguration or RestoreSession as its prefix when set:

- StatefulSet: every pod is its own host, ``<alias>-<ordinal>`` (without alias ``host-<ordinal>``), all
  of them back up, one at a time.
- DaemonSet: every node is a host, ``<alias>-<node name>`` (without alias the node name).
- Deployment, ReplicaSet and every other kind, the Job model (resource dumps) included: one host,
  ``<alias>`` (without alias ``host-0``); for the workloads, played by whichever replica holds the
  Lease ``lock-<kind>-<name>-backup`` (the Lease is named after the target, never the alias).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput

_ORDINAL = re.compile(r"-(\d+)$")

DEFAULT_HOST = "host-0"
"""The host of a target with a single host and no alias (Stash's ``apis.DefaultHost``)."""

LEASED_KINDS = frozenset({"Deployment", "ReplicaSet", "ReplicationController", "DeploymentConfig"})
STATEFUL_KINDS = frozenset({"StatefulSet"})
NODE_KINDS = frozenset({"DaemonSet"})
SUPPORTED_KINDS = LEASED_KINDS | STATEFUL_KINDS | NODE_KINDS


class HostError(RefuseInput):
    """The agent cannot tell which host it is; the message says what is missing."""


@dataclass(frozen=True)
class HostIdentity:
    """This agent's host name for backups and restores, and whether it must hold the Lease first."""

    name: str
    needs_lease: bool
    """Only the holder of the Lease works (one replica stands for the workload)."""
    takes_turns: bool = False
    """Every host works, one at a time: each takes the Lease for its turn and gives it back."""


def host_name(target_kind: str, pod_name: str, node_name: str | None, alias: str | None = None) -> str:
    """The restic host of this pod for a target of ``target_kind``, as Stash names it (module docstring)."""
    if target_kind in STATEFUL_KINDS:
        match = _ORDINAL.search(pod_name)
        if not match:
            raise HostError(f"pod {pod_name!r} of a StatefulSet has no ordinal suffix")
        return f"{alias or 'host'}-{match.group(1)}"
    if target_kind in NODE_KINDS:
        if not node_name:
            raise HostError("a DaemonSet's agent needs NODE_NAME (the downward API's spec.nodeName)")
        return f"{alias}-{node_name}" if alias else node_name
    return alias or DEFAULT_HOST


def identify(
    target_kind: str, pod_name: str, node_name: str | None, alias: str | None = None
) -> HostIdentity:
    """The host this pod (sidecar or init-container) plays for a workload of ``target_kind``."""
    if target_kind not in SUPPORTED_KINDS:
        raise HostError(
            f"target kind {target_kind!r} is not supported; use one of {', '.join(sorted(SUPPORTED_KINDS))}"
        )
    name = host_name(target_kind, pod_name, node_name, alias)
    if target_kind in LEASED_KINDS:
        return HostIdentity(name, needs_lease=True)
    return HostIdentity(name, needs_lease=False, takes_turns=target_kind in STATEFUL_KINDS)


def job_identity(alias: str | None = None) -> HostIdentity:
    """The host of a backup run as a Job (one host, like a Deployment's replica, without a Lease)."""
    return HostIdentity(host_name("", "", None, alias), needs_lease=False)


def total_hosts(target_kind: str, workload: dict[str, object], configured_replicas: int | None) -> int:
    """How many hosts must report before the target is complete."""
    if target_kind in LEASED_KINDS:
        return 1
    if target_kind in STATEFUL_KINDS:
        if configured_replicas is not None:
            return configured_replicas
        spec = workload.get("spec")
        replicas = spec.get("replicas", 1) if isinstance(spec, dict) else 1
        return int(replicas) if isinstance(replicas, int) else 1
    status = workload.get("status")
    desired = status.get("desiredNumberScheduled", 1) if isinstance(status, dict) else 1
    return max(1, int(desired) if isinstance(desired, int) else 1)
