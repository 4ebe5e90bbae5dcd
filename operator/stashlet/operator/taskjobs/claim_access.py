"""Where a stand-alone PersistentVolumeClaim's backup Job can mount it: pure.

Stash backs up a stand-alone claim from a Job that mounts it, and asks for ``ReadWriteMany`` (or a claim
no other pod holds) because a ``ReadWriteOnce`` volume is attached to one node at a time: a Job scheduled
on another node than the pods using the claim would wait for the attachment for ever. So, before a
session's Job is made, the claim and the pods that mount it are looked at:

- ``ReadWriteMany`` or ``ReadOnlyMany`` in the claim's access modes, or no live pod mounting it: the Job
  goes wherever the scheduler puts it;
- ``ReadWriteOnce`` mounted by live pods on one node: the Job is pinned to that node (the volume may be
  mounted by several pods there);
- ``ReadWriteOnce`` mounted on several nodes, or ``ReadWriteOncePod`` mounted by any live pod: the Job could
  never start; the session fails at once, saying so (never a Job left ``Pending``);
- a claim whose volume is ``Lost``: the same.

A live pod is one that has not ended (phase other than ``Succeeded`` and ``Failed``); pods not yet
scheduled do not hold the volume anywhere yet and are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SHARED_MODES = frozenset({"ReadWriteMany", "ReadOnlyMany"})
ONE_POD = "ReadWriteOncePod"
ENDED = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class ClaimAccess:
    """Where the Job may run: any node (``node`` None), one node, or nowhere (``problem`` says why)."""

    node: str | None = None
    problem: str | None = None


def access_modes(claim: Mapping[str, Any]) -> list[str]:
    """The claim's access modes: those of its bound volume (``status``), else those it asks for."""
    status = claim.get("status") or {}
    modes = status.get("accessModes") or (claim.get("spec") or {}).get("accessModes") or []
    return [str(m) for m in modes]


def mounts_claim(pod: Mapping[str, Any], claim: str) -> bool:
    """True when ``pod`` has a volume from PersistentVolumeClaim ``claim``."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in volumes)


def holders(pods: Iterable[Mapping[str, Any]], claim: str) -> list[tuple[str, str]]:
    """``(pod name, node name)`` of each live, scheduled pod that mounts ``claim``, by name."""
    found = []
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if node and phase not in ENDED and mounts_claim(pod, claim):
            found.append((str((pod.get("metadata") or {}).get("name")), str(node)))
    return sorted(found)


def claim_access(claim: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> ClaimAccess:
    """Where a Job mounting ``claim`` can run, given the pods of its namespace (module docstring)."""
    meta = claim.get("metadata") or {}
    name = str(meta.get("name"))
    what = f"PersistentVolumeClaim {meta.get('namespace')}/{name}"
    if (claim.get("status") or {}).get("phase") == "Lost":
        return ClaimAccess(problem=f"{what} has lost its PersistentVolume: there is nothing to back up")
    modes = access_modes(claim)
    if SHARED_MODES & set(modes):
        return ClaimAccess()
    held = holders(pods, name)
    if not held:
        return ClaimAccess()
    listed = ", ".join(f"{pod} on node {node}" for pod, node in held)
    if ONE_POD in modes:
        return ClaimAccess(
            problem=f"{what} is ReadWriteOncePod and mounted by pod {listed}: the backup job cannot mount "
            "it (back up a ReadWriteMany claim, as Stash requires, or one no running pod holds)"
        )
    nodes = sorted({node for _, node in held})
    if len(nodes) > 1:
        return ClaimAccess(
            problem=f"{what} is {'/'.join(modes) or 'ReadWriteOnce'} and mounted on several nodes "
            f"({listed}): the backup job cannot mount it (Stash requires ReadWriteMany, or the pods on one "
            "node)"
        )
    return ClaimAccess(node=nodes[0])


def pin_to_node(pod_spec: dict[str, Any], node: str) -> None:
    """Make ``pod_spec`` schedulable on node ``node`` only (in place), keeping any node affinity it has:
    the node's name is added to every required term (a term with the name and the user's conditions)."""
    match = {"key": "metadata.name", "operator": "In", "values": [node]}
    affinity = pod_spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        term["matchFields"] = [*(term.get("matchFields") or []), match]
    required["nodeSelectorTerms"] = terms
