"""Who backs up: the host identity of this agent and how many hosts a target has.

- Deployment, ReplicaSet (and anything else with interchangeable replicas): one host, ``host-0``,
  played by whichever replica holds the Lease ``lock-<kind>-<name>-backup``.
- StatefulSet: every pod is its own host, ``host-<ordinal>``, all of them back up.
- DaemonSet: every node is a host, named after the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput

_ORDINAL = re.compile(r"-(\d+)$")

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


def identify(target_kind: str, pod_name: str, node_name: str | None) -> HostIdentity:
    """The host this pod plays for a target of ``target_kind``."""
    if target_kind in LEASED_KINDS:
        return HostIdentity("host-0", needs_lease=True)
    if target_kind in STATEFUL_KINDS:
        match = _ORDINAL.search(pod_name)
        if not match:
            raise HostError(f"pod {pod_name!r} of a StatefulSet has no ordinal suffix")
        return HostIdentity(f"host-{match.group(1)}", needs_lease=False, takes_turns=True)
    if target_kind in NODE_KINDS:
        if not node_name:
            raise HostError("a DaemonSet's agent needs NODE_NAME (the downward API's spec.nodeName)")
        return HostIdentity(node_name, needs_lease=False)
    raise HostError(
        f"target kind {target_kind!r} is not supported; use one of {', '.join(sorted(SUPPORTED_KINDS))}"
    )


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
