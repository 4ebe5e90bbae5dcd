"""What auto-backup finds on the server against what it wants there: ownership and patches: pure.

An object is auto-backup's to change only when it carries ``app.kubernetes.io/created-by:
stash-auto-backup`` and names the same workload in ``stash.appscode.com/auto-backup-target``; anything
else of that name is left alone. Changes are JSON merge patches limited to the spec fields auto-backup
owns, and to its own labels, annotations and owner reference, so fields others set (``spec.paused``, a
label of the user's) survive.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from stashlet.api import names
from stashlet.operator.autobackup.resolution import Target


def created_for(obj: Mapping[str, Any], target: Target) -> bool:
    """True when auto-backup created ``obj`` for ``target`` (label and target annotation)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        labels.get(names.LABEL_CREATED_BY) == names.CREATED_BY_AUTO_BACKUP
        and annotations.get(names.ANNOTATION_AUTO_BACKUP_TARGET) == target.key
    )


def merge_patch(existing: Any, desired: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``existing`` into ``desired``; None when they are equal.

    Keys of ``existing`` that ``desired`` lacks become ``None`` (removed); lists are replaced whole.
    """
    if existing == desired:
        return None
    if not isinstance(existing, dict) or not isinstance(desired, dict):
        return copy.deepcopy(desired)
    patch: dict[str, Any] = {key: None for key in existing if key not in desired}
    for key, value in desired.items():
        if key not in existing:
            patch[key] = copy.deepcopy(value)
            continue
        sub = merge_patch(existing[key], value)
        if sub is not None:
            patch[key] = sub
    return patch or None


def update_patch(existing: Mapping[str, Any], desired: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The merge patch bringing ``existing``'s owned spec ``keys``, labels, annotations and owners to
    ``desired``'s (None when nothing differs). Other spec fields, labels and annotations are kept."""
    patch: dict[str, Any] = {}
    old_spec = existing.get("spec") or {}
    new_spec = desired.get("spec") or {}
    spec = merge_patch(
        {k: old_spec[k] for k in keys if k in old_spec}, {k: new_spec[k] for k in keys if k in new_spec}
    )
    if spec is not None:
        patch["spec"] = spec
    old_meta = existing.get("metadata") or {}
    new_meta = desired.get("metadata") or {}
    meta: dict[str, Any] = {}
    for field in ("labels", "annotations"):
        present = old_meta.get(field) or {}
        changes = {k: v for k, v in (new_meta.get(field) or {}).items() if present.get(k) != v}
        if changes:
            meta[field] = changes
    owners = new_meta.get("ownerReferences")
    if owners is not None and _owner_uids(old_meta) != _owner_uids(new_meta):
        meta["ownerReferences"] = owners
    if meta:
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        patch["metadata"] = meta
    return patch or None


def _owner_uids(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    return sorted((str(o.get("kind")), str(o.get("uid"))) for o in meta.get("ownerReferences") or [])
