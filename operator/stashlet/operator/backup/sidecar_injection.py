"""Putting the sidecar (and its RBAC) into a configuration's target, and taking it out again: async.

The pure halves are :mod:`stashlet.operator.injection.sidecar_container` and
:mod:`stashlet.operator.injection.rbac`; this module applies them to the server through
:class:`~stashlet.operator.core.resources.Resources`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.kube.errors import Invalid, NotFound
from stashlet.operator.backup.status import REASON_SIDECAR_DELETION_SUCCEEDED, SOURCE_WORKLOAD
from stashlet.operator.backup.validation import target_kind
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec
from stashlet.operator.core.resources import Resources
from stashlet.operator.injection import rbac, sidecar_container
from stashlet.operator.injection.sidecar_container import invoker_annotation
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Recorder = Callable[[BackupConfiguration, EventSpec], Awaitable[None]]


def _describe(kind: workloads.WorkloadKind, name: str) -> str:
    return f"{kind.api_version} {kind.kind.lower()}/{name}"


class Sidecars:
    """Ensures and removes the ``stash`` sidecar of BackupConfigurations."""

    def __init__(self, resources: Resources, settings: OperatorSettings, record: Recorder) -> None:
        """Write through ``resources``; report removals through ``record``."""
        self.resources = resources
        self.settings = settings
        self.record = record

    async def ensure(
        self,
        bc: BackupConfiguration,
        kind: workloads.WorkloadKind,
        workload: dict[str, Any],
        repository: Repository,
    ) -> tuple[ConditionUpdate, dict[str, Any] | None]:
        """RBAC for the workload's service account, then the sidecar; the condition, and the workload's
        metadata when it was written."""
        namespace, target = bc.metadata.namespace or "", workload["metadata"]["name"]
        what = _describe(kind, target)
        for obj in rbac.sidecar_rbac(
            bc,
            kind,
            target,
            service_account=workloads.service_account(workload),
            repository_namespace=repository.metadata.namespace or namespace,
            repository=repository.metadata.name or "",
            secret=repository.spec.backend.storage_secret_name or "",
        ):
            await self.resources.ensure(obj, rbac.up_to_date)
        injection = sidecar_container.build_injection(bc, kind.kind, target, repository, self.settings)
        patched = sidecar_container.inject(workload, injection)
        written: dict[str, Any] | None = None
        if patched is not None:
            try:
                written = await self.resources.replace_workload(kind, patched)
            except Invalid as exc:
                failed = ConditionUpdate.false(
                    ConditionType.STASH_SIDECAR_INJECTED,
                    ConditionReason.SIDECAR_INJECTION_FAILED,
                    f"Failed to inject stash sidecar into {what}. Reason: {exc.message}",
                )
                return failed, None
            log.info(
                "sidecar injected",
                extra={"object": f"{namespace}/{bc.metadata.name}", "target": what, "hash": injection.hash},
            )
            if kind.kind == "ReplicaSet":
                await self.resources.restart_replicaset(
                    patched, names.ANNOTATION_INJECTION_HASH, injection.hash
                )
            await self.strip(bc, keep=(kind.kind, target))  # the configuration may have moved on
        done = ConditionUpdate.true(
            ConditionType.STASH_SIDECAR_INJECTED,
            ConditionReason.SIDECAR_INJECTION_SUCCEEDED,
            f"Successfully injected stash sidecar into {what}.",
        )
        return done, (written or {}).get("metadata")

    async def strip(self, bc: BackupConfiguration, keep: tuple[str, str] | None = None) -> None:
        """Take ``bc``'s sidecar out of every workload labelled for it but ``keep`` (kind, name); without
        ``keep`` also out of its target, should the label have gone."""
        namespace = bc.metadata.namespace or ""
        selector = f"{names.LABEL_BACKUP_CONFIGURATION}={bc.metadata.name}"
        found = [
            (kind, workload)
            for kind in workloads.WORKLOAD_KINDS.values()
            for workload in await self.resources.list_workloads(kind, namespace, selector)
        ]
        kind = target_kind(bc)
        ref = bc.spec.target.ref if bc.spec.target else None
        if keep is None and kind is not None and ref is not None and ref.name:
            with contextlib.suppress(NotFound):
                target = await self.resources.get_workload(kind, namespace, ref.name)
                if all(w["metadata"]["uid"] != target["metadata"]["uid"] for _, w in found):
                    found.append((kind, target))
        for kind, workload in found:
            name = workload["metadata"]["name"]
            cleaned = (
                None
                if keep == (kind.kind, name)
                else sidecar_container.remove_injection(workload, invoker_annotation(bc))
            )
            if cleaned is None:
                continue
            await self.resources.replace_workload(kind, cleaned)
            what = _describe(kind, name)
            log.info("sidecar removed", extra={"object": f"{namespace}/{bc.metadata.name}", "target": what})
            message = f"Removed stash sidecar from {what}."
            await self.record(
                bc, EventSpec("Normal", REASON_SIDECAR_DELETION_SUCCEEDED, message, SOURCE_WORKLOAD)
            )
