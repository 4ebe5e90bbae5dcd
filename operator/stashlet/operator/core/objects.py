"""Metadata every object the operator makes for a BackupConfiguration or RestoreSession carries: pure.

The owner reference and the invoker labels are the shared vocabulary's (:mod:`stashlet.api.sessions`,
which the trigger and the agent use too); they are re-exported here for the operator's builders.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.restoresession import RestoreSession
from stashlet.api.sessions import invoker_labels, owner_reference

__all__ = [
    "MAX_NAME",
    "fit_name",
    "invoker_labels",
    "labels_cover",
    "managed_labels",
    "owned_by",
    "owner_reference",
]

MAX_NAME = 63
"""The longest name of an object the operator makes (it also becomes a label value: 63 at most)."""


def fit_name(name: str, limit: int = MAX_NAME) -> str:
    """``name`` when it is at most ``limit`` long, else cut and ended with a hash of the whole name (so two
    long names that share their start stay apart)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-.')}-{digest}"


def managed_labels(owner: BackupConfiguration | RestoreSession) -> dict[str, str]:
    """``app.kubernetes.io/managed-by: stashlet`` plus the invoker labels of ``owner`` (for a
    BackupConfiguration also ``stash.appscode.com/backup-configuration``, as on its sessions)."""
    if isinstance(owner, BackupConfiguration):
        return {names.LABEL_MANAGED_BY: names.MANAGED_BY, **invoker_labels(owner)}
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_INVOKER_TYPE: owner.kind,
        names.LABEL_INVOKER_NAME: owner.metadata.name or "",
    }


def owned_by(obj: dict[str, Any], bc: BackupConfiguration) -> bool:
    """True when ``obj`` lists ``bc`` (by uid) among its owners."""
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("uid") == bc.metadata.uid for o in owners)


def labels_cover(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    """True when ``obj`` carries every one of ``labels``."""
    present = obj.get("metadata", {}).get("labels") or {}
    return all(present.get(k) == v for k, v in labels.items())
