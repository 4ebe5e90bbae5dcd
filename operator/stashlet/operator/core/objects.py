"""Metadata every object the operator makes for a BackupConfiguration carries: pure."""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration


def owner_reference(bc: BackupConfiguration, *, block_owner_deletion: bool = True) -> dict[str, Any]:
    """An ownerReference to ``bc`` as controller, so garbage collection removes the owned object with it.

    ``block_owner_deletion`` needs the right to update the owner's finalizers where the
    OwnerReferencesPermissionEnforcement admission plugin runs; the trigger, which has no such right,
    leaves it out.
    """
    ref: dict[str, Any] = {
        "apiVersion": names.API_VERSION_BETA,
        "kind": names.KIND_BACKUP_CONFIGURATION,
        "name": bc.metadata.name,
        "uid": bc.metadata.uid,
        "controller": True,
    }
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref


def invoker_labels(bc: BackupConfiguration) -> dict[str, str]:
    """The labels that tie an object to its BackupConfiguration (as Stash sets them on sessions)."""
    name = bc.metadata.name or ""
    return {
        names.LABEL_BACKUP_CONFIGURATION: name,
        names.LABEL_INVOKER_TYPE: names.KIND_BACKUP_CONFIGURATION,
        names.LABEL_INVOKER_NAME: name,
    }


def managed_labels(bc: BackupConfiguration) -> dict[str, str]:
    """``invoker_labels`` plus ``app.kubernetes.io/managed-by: stashlet``."""
    return {names.LABEL_MANAGED_BY: names.MANAGED_BY, **invoker_labels(bc)}


def owned_by(obj: dict[str, Any], bc: BackupConfiguration) -> bool:
    """True when ``obj`` lists ``bc`` (by uid) among its owners."""
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("uid") == bc.metadata.uid for o in owners)


def labels_cover(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    """True when ``obj`` carries every one of ``labels``."""
    present = obj.get("metadata", {}).get("labels") or {}
    return all(present.get(k) == v for k, v in labels.items())
