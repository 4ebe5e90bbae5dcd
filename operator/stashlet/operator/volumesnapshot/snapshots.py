"""Which claims a VolumeSnapshotter target has, and the VolumeSnapshots made of them: pure.

As Stash's ``create-vs``: a PersistentVolumeClaim target is its own claim; a Deployment's (DaemonSet's,
ReplicaSet's) are the ``persistentVolumeClaim`` volumes of its pod template; a StatefulSet's are
``<template>-<statefulset>-<ordinal>`` for each of its ``volumeClaimTemplates`` and ordinals ``0 ..
replicas-1`` (``spec.target.replicas`` when set, else the StatefulSet's own), then its pod template's claim
volumes. A snapshot is named ``<claim>-<suffix>``, the suffix being the last ``-`` part of the
BackupSession's name (its Unix seconds for ``<bc>-<unix seconds>``).

Snapshots carry the configuration's invoker labels and the session's, never an ownerReference: they are
the backups, and outlive the configuration and the session as in Stash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.sessions import invoker_labels
from stashlet.operator.core import workloads

GROUP: Final = "snapshot.storage.k8s.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "VolumeSnapshot"
PLURAL: Final = "volumesnapshots"
CLASS_PLURAL: Final = "volumesnapshotclasses"
DEFAULT_CLASS_ANNOTATION: Final = "snapshot.storage.kubernetes.io/is-default-class"
LABEL_SOURCE_CLAIM: Final = f"{names.GROUP}/source-claim"
"""Which claim a snapshot was taken of (also in ``spec.source``; the label lets retention list them)."""


@dataclass(frozen=True)
class Claim:
    """One claim to snapshot, and how the target came to name it (for messages)."""

    name: str
    why: str


def target_claims(kind: str, target: dict[str, Any], replicas: int | None) -> list[Claim]:
    """The claims of ``target`` (a workload or a claim read from the API), in Stash's order."""
    name = str(target.get("metadata", {}).get("name", ""))
    if kind == names.KIND_PERSISTENT_VOLUME_CLAIM:
        return [Claim(name, "the target")]
    found: list[Claim] = []
    if kind == "StatefulSet":
        count = replicas if replicas is not None else int(target.get("spec", {}).get("replicas", 1) or 0)
        for ordinal in range(count):
            for template in target.get("spec", {}).get("volumeClaimTemplates") or []:
                template_name = str(template.get("metadata", {}).get("name", ""))
                found.append(
                    Claim(
                        f"{template_name}-{name}-{ordinal}",
                        f"volumeClaimTemplate {template_name}, ordinal {ordinal}",
                    )
                )
    for volume in workloads.pod_spec(target).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            found.append(Claim(str(claim), f"volume {volume.get('name')}"))
    unique: dict[str, Claim] = {}
    for claim in found:
        unique.setdefault(claim.name, claim)
    return list(unique.values())


def snapshot_name(claim: str, session: str) -> str:
    """``<claim>-<last part of the session's name>``, as Stash names it."""
    return f"{claim}-{session.rsplit('-', 1)[-1]}"


def snapshot_labels(bc: BackupConfiguration, session: str, claim: str) -> dict[str, str]:
    """The labels that find a snapshot by configuration, session and claim."""
    return {**invoker_labels(bc), names.LABEL_BACKUP_SESSION: session, LABEL_SOURCE_CLAIM: claim}


def config_selector(bc: BackupConfiguration) -> str:
    """A label selector for every snapshot made for ``bc``."""
    return ",".join(f"{k}={v}" for k, v in sorted(invoker_labels(bc).items()))


def build_snapshot(
    bc: BackupConfiguration, session: str, claim: str, snapshot_class: str | None
) -> dict[str, Any]:
    """The VolumeSnapshot of ``claim`` for ``session`` (no class: the cluster's default for the claim's
    driver, chosen by the snapshot controller)."""
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": claim}}
    if snapshot_class:
        spec["volumeSnapshotClassName"] = snapshot_class
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": snapshot_name(claim, session),
            "namespace": bc.metadata.namespace,
            "labels": snapshot_labels(bc, session, claim),
        },
        "spec": spec,
    }


def made_for(snapshot: dict[str, Any], bc: BackupConfiguration, session: str) -> bool:
    """True when ``snapshot`` was made for ``session`` of ``bc`` (a name clash otherwise)."""
    labels = snapshot.get("metadata", {}).get("labels") or {}
    wanted = {**invoker_labels(bc), names.LABEL_BACKUP_SESSION: session}
    return all(labels.get(k) == v for k, v in wanted.items())


class State(StrEnum):
    """Where a VolumeSnapshot stands."""

    READY = "ready"
    FAILED = "failed"
    PENDING = "pending"


def snapshot_state(snapshot: dict[str, Any]) -> tuple[State, str]:
    """Ready (``status.readyToUse``), failed (``status.error``, with its message) or still pending."""
    status = snapshot.get("status") or {}
    if status.get("readyToUse") is True:
        return State.READY, ""
    error = status.get("error") or {}
    if error.get("message"):
        return State.FAILED, str(error["message"])
    return State.PENDING, ""


def default_classes(classes: list[dict[str, Any]]) -> list[str]:
    """The names of the VolumeSnapshotClasses marked as the default."""
    return [
        str(c.get("metadata", {}).get("name"))
        for c in classes
        if (c.get("metadata", {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
