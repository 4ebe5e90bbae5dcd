"""Putting the ``stash`` sidecar (and its RBAC) into a configuration's target, and taking it out: async.

The pure halves are :mod:`stashlet.operator.injection.sidecar_container` and
:mod:`stashlet.operator.injection.rbac`; :class:`~stashlet.operator.core.placement.Placer` writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.operator.backup.status import REASON_SIDECAR_DELETION_SUCCEEDED
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.events import Events
from stashlet.operator.core.labelled import LabelIndex
from stashlet.operator.core.placement import Placement, Placer, Workload
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.validation import target_kind
from stashlet.operator.injection import rbac, sidecar_container
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.injection.sidecar_container import invoker_annotation
from stashlet.operator.settings import OperatorSettings

SIDECAR = Placement(
    container="sidecar",
    condition=ConditionType.STASH_SIDECAR_INJECTED,
    succeeded=ConditionReason.SIDECAR_INJECTION_SUCCEEDED,
    failed=ConditionReason.SIDECAR_INJECTION_FAILED,
    succeeded_message="Successfully injected stash sidecar into {what}.",
    failed_message="Failed to inject stash sidecar into {what}. Reason: {reason}",
    removed_reason=REASON_SIDECAR_DELETION_SUCCEEDED,
    removed_message="Removed stash sidecar from {what}.",
    owner_label=names.LABEL_BACKUP_CONFIGURATION,
    hash_annotation=names.ANNOTATION_INJECTION_HASH,
)


class Sidecars:
    """Ensures and removes the ``stash`` sidecar of BackupConfigurations."""

    def __init__(
        self,
        resources: Resources,
        settings: OperatorSettings,
        events: Events,
        labels: LabelIndex | None = None,
    ) -> None:
        """Write through ``resources``; report removals through ``events``; ``labels``: the workload
        watches' word on which workloads a configuration labelled (:class:`Placer`)."""
        self.resources = resources
        self.settings = settings
        self.placer = Placer(resources, events, SIDECAR, labels)

    async def ensure(
        self,
        bc: BackupConfiguration,
        kind: workloads.WorkloadKind,
        workload: dict[str, Any],
        repository: Repository,
        *,
        likely_new: bool = False,
    ) -> tuple[ConditionUpdate, dict[str, Any] | None]:
        """RBAC for the sidecar's own service account (made first by the reconciler), then the sidecar; the
        condition, and the workload's metadata when it was written. ``likely_new``: the RBAC is created
        straight away (:meth:`~stashlet.operator.core.resources.Resources.ensure`)."""
        target = workload["metadata"]["name"]
        access = RepositoryAccess.of(repository, bc.metadata.namespace or "")
        for obj in rbac.sidecar_rbac(bc, kind, target, repository=access):
            await self.resources.ensure(obj, rbac.up_to_date, likely_new=likely_new)
        injection = sidecar_container.build_injection(bc, kind.kind, target, repository, self.settings)
        patched = sidecar_container.inject(workload, injection)
        return await self.placer.place(bc, kind, patched, injection.hash, self._remover(bc), target)

    async def strip(self, bc: BackupConfiguration) -> None:
        """Take ``bc``'s sidecar out of every workload labelled for it and out of its target."""
        kind, ref = target_kind(bc), bc.spec.target.ref if bc.spec.target else None
        target = (kind, ref.name) if kind is not None and ref is not None and ref.name else None
        await self.placer.strip(bc, self._remover(bc), target)

    @staticmethod
    def _remover(bc: BackupConfiguration) -> Callable[[Workload], Workload | None]:
        annotation = invoker_annotation(bc)
        return lambda workload: sidecar_container.remove_injection(workload, annotation)
