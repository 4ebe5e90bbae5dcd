"""What a VolumeSnapshotter BackupConfiguration or RestoreSession may ask for, by itself: pure.

The driver needs no Repository, Task, agent or restic: the fields that configure those are refused with
it, by name, through the field table (:data:`stashlet.operator.core.field_support.SNAPSHOTTER_REFUSES`,
runner ``volume-snapshotter``). What it takes is checked here by value:

- backup: ``target.ref`` (a Deployment, StatefulSet, DaemonSet or ReplicaSet in ``apps/v1``, or a ``v1``
  PersistentVolumeClaim, in the configuration's namespace), ``target.replicas`` (a StatefulSet's
  ordinals), besides ``schedule``, ``paused``, ``target.snapshotClassName``, ``retentionPolicy``,
  ``backupHistoryLimit``, ``timeOut`` and ``retryConfig``;
- restore: ``target.volumeClaimTemplates`` (each named, its ``spec.dataSource`` a VolumeSnapshot of
  ``snapshot.storage.k8s.io``), ``target.replicas`` (ordinals ``0 .. replicas-1`` for
  ``${POD_ORDINAL}``), besides ``timeOut``.

Each problem starts with the field's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Snapshotter
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core import workloads
from stashlet.operator.core.field_support import Runner, refusals
from stashlet.operator.volumesnapshot import snapshots


def backup_problems(bc: BackupConfiguration) -> list[str]:
    """What is wrong with a VolumeSnapshotter configuration by itself (module docstring)."""
    problems = refusals(names.KIND_BACKUP_CONFIGURATION, bc.to_dict()["spec"], Runner.VOLUME_SNAPSHOTTER)
    ref = bc.spec.target.ref if bc.spec.target else None
    kinds = [*workloads.WORKLOAD_KINDS, names.KIND_PERSISTENT_VOLUME_CLAIM]
    if ref is None or not ref.kind or not ref.name:
        problems.append(
            "spec.target.ref: the kind and name of the workload or claim to snapshot are required"
        )
        return problems
    if ref.kind not in kinds:
        problems.append(
            f"spec.target.ref.kind: {ref.kind} is not supported; snapshots are taken of {', '.join(kinds)}"
        )
    else:
        wanted = "v1" if ref.kind == names.KIND_PERSISTENT_VOLUME_CLAIM else "apps/v1"
        if ref.api_version and ref.api_version != wanted:
            problems.append(
                f"spec.target.ref.apiVersion: {ref.api_version} is not supported for {ref.kind}; use {wanted}"
            )
    if ref.namespace and ref.namespace != bc.metadata.namespace:
        problems.append(
            f"spec.target.ref.namespace: the target must be in the configuration's namespace "
            f"{bc.metadata.namespace}, not {ref.namespace}"
        )
    replicas = bc.spec.target.replicas if bc.spec.target else None
    if replicas is not None and ref.kind != "StatefulSet":
        problems.append("spec.target.replicas: only a StatefulSet's claims are chosen by ordinal")
    elif replicas is not None and replicas < 1:
        problems.append("spec.target.replicas: must be at least 1")
    return problems


def restore_problems(rs: RestoreSession) -> list[str]:
    """What is wrong with a VolumeSnapshotter RestoreSession by itself (module docstring)."""
    spec = rs.to_dict()["spec"]
    target = spec.get("target") or {}
    problems = refusals(names.KIND_RESTORE_SESSION, spec, Runner.VOLUME_SNAPSHOTTER)
    templates = target.get("volumeClaimTemplates") or []
    if not templates:
        problems.append("spec.target.volumeClaimTemplates: at least one claim to restore is required")
    replicas = target.get("replicas")
    if replicas is not None and replicas < 1:
        problems.append("spec.target.replicas: must be at least 1")
    for i, template in enumerate(templates):
        problems += template_problems(i, template, replicas)
    return problems


def template_problems(index: int, template: Mapping[str, Any], replicas: int | None) -> list[str]:
    """What is wrong with one claim template (its name and its VolumeSnapshot data source)."""
    where = f"spec.target.volumeClaimTemplates[{index}]"
    problems: list[str] = []
    name = str((template.get("metadata") or {}).get("name") or "")
    if not name:
        problems.append(f"{where}.metadata.name: the claim's name is required")
    elif (replicas or 1) > 1 and names.POD_ORDINAL_VARIABLE not in name:
        problems.append(
            f"{where}.metadata.name: must hold {names.POD_ORDINAL_VARIABLE} when spec.target.replicas is "
            f"{replicas}, or every ordinal would make the same claim"
        )
    source = (template.get("spec") or {}).get("dataSource") or {}
    if not source:
        problems.append(f"{where}.spec.dataSource: the VolumeSnapshot to restore from is required")
        return problems
    if source.get("kind") != snapshots.KIND or source.get("apiGroup") != snapshots.GROUP:
        problems.append(
            f"{where}.spec.dataSource: must name a {snapshots.KIND} of apiGroup {snapshots.GROUP}, not "
            f"{source.get('kind')} of {source.get('apiGroup') or 'the core group'}"
        )
    if not source.get("name"):
        problems.append(f"{where}.spec.dataSource.name: the VolumeSnapshot's name is required")
    return problems


def claim_target(bc: BackupConfiguration) -> str | None:
    """The claim a VolumeSnapshotter configuration names as its target (``v1`` PersistentVolumeClaim), or
    None."""
    ref = bc.spec.target.ref if bc.spec.target else None
    if bc.spec.driver != Snapshotter.VOLUME_SNAPSHOTTER or ref is None or not ref.name:
        return None
    if ref.kind != names.KIND_PERSISTENT_VOLUME_CLAIM or (ref.api_version or "v1") != "v1":
        return None
    return ref.name
