"""How a BackupSession for a BackupConfiguration is made, by the trigger CronJob or the agent's API.

One place, so a scheduled session and an instant one look the same: name ``<bc>-<unix seconds>``,
the invoker labels, an owner reference to the configuration, and ``spec.retryLeft`` set to the
configuration's ``retryConfig.maxRetry`` (as Stash does), which the operator counts down on each retry.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupInvokerRef, BackupSession, BackupSessionSpec
from stashlet.api.common import KubeObject, ObjectMeta


def owner_reference(owner: KubeObject, *, block_owner_deletion: bool = True) -> dict[str, Any]:
    """An ownerReference to ``owner`` (a BackupConfiguration, a RestoreSession) as controller, so garbage
    collection removes the owned object with it.

    ``block_owner_deletion`` needs the right to update the owner's finalizers where the
    OwnerReferencesPermissionEnforcement admission plugin runs; the trigger and the agent, which have
    no such right, leave it out.
    """
    ref: dict[str, Any] = {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
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


def session_name(bc_name: str, unix: int) -> str:
    """``<bc>-<unix seconds>``."""
    return f"{bc_name}-{unix}"


def build_session(
    bc: BackupConfiguration, unix: int, annotations: dict[str, str] | None = None
) -> BackupSession:
    """A new BackupSession for ``bc`` named after ``unix`` seconds."""
    meta: dict[str, Any] = {
        "name": session_name(bc.metadata.name or "", unix),
        "namespace": bc.metadata.namespace,
        "labels": invoker_labels(bc),
        "ownerReferences": [owner_reference(bc, block_owner_deletion=False)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    spec = BackupSessionSpec(
        invoker=BackupInvokerRef(
            api_group=names.GROUP, kind=names.KIND_BACKUP_CONFIGURATION, name=bc.metadata.name or ""
        )
    )
    if max_retry(bc):
        spec.retry_left = max_retry(bc)
    return BackupSession(metadata=ObjectMeta.from_dict(meta), spec=spec)


def max_retry(bc: BackupConfiguration) -> int:
    """How many times a failed session of ``bc`` is retried (``spec.retryConfig.maxRetry``, 0 if unset)."""
    retry = bc.spec.retry_config
    return max(retry.max_retry or 0, 0) if retry is not None else 0
