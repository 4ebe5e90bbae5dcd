"""The workload kinds the sidecar goes into, and what stashlet reads from them; the claim kind: pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkloadKind:
    """A kind stashlet backs up: a workload (a pod template under ``spec.template``, served by
    ``apps/v1``) or :data:`CLAIM_KIND`."""

    kind: str
    plural: str
    group: str = "apps"
    version: str = "v1"

    @property
    def api_version(self) -> str:
        """``apps/v1`` (``v1`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version


WORKLOAD_KINDS: dict[str, WorkloadKind] = {
    kind.kind: kind
    for kind in (
        WorkloadKind("Deployment", "deployments"),
        WorkloadKind("StatefulSet", "statefulsets"),
        WorkloadKind("DaemonSet", "daemonsets"),
        WorkloadKind("ReplicaSet", "replicasets"),
    )
}
"""The kinds the sidecar model supports, by kind name."""

SUPPORTED_API_VERSIONS = frozenset({"apps/v1"})

CLAIM_KIND = WorkloadKind("PersistentVolumeClaim", "persistentvolumeclaims", group="", version="v1")
"""A stand-alone PersistentVolumeClaim: no sidecar; backed up by a Job that mounts it (Task
``pvc-backup``)."""


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's ``spec.template`` (an empty dict when absent)."""
    template: dict[str, Any] = workload.get("spec", {}).get("template") or {}
    return template


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template's ``spec``."""
    spec: dict[str, Any] = pod_template(workload).get("spec") or {}
    return spec


def volume_names(workload: dict[str, Any]) -> list[str]:
    """Names a container of the pod may mount: the pod's volumes and a StatefulSet's claim templates."""
    found = [str(v.get("name")) for v in pod_spec(workload).get("volumes") or []]
    for claim in workload.get("spec", {}).get("volumeClaimTemplates") or []:
        found.append(str(claim.get("metadata", {}).get("name")))
    return found


def service_account(workload: dict[str, Any]) -> str:
    """The service account the workload's pods run as (``default`` when the template names none)."""
    spec = pod_spec(workload)
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def describe(kind: str, namespace: str, name: str) -> str:
    """``Deployment demo/stash-demo``."""
    return f"{kind} {namespace}/{name}"
