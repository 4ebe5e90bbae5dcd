"""Putting an agent container into a target workload and taking it out of every other one: async.

The sidecar of a BackupConfiguration and the ``stash-init`` init-container of a RestoreSession are placed
the same way: the pure builders (:mod:`stashlet.operator.injection`) give the patched workload, this
module writes it (a ReplicaSet's pods are restarted, as it does not roll by itself), reports the outcome as
a condition, and strips the container from any workload the owner no longer targets, with an event per
workload cleaned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.common import KubeObject
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.kube.errors import Invalid, NotFound
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.core.labelled import LabelIndex
from stashlet.operator.core.resources import Resources

log = logging.getLogger(__name__)

Workload = dict[str, Any]


@dataclass(frozen=True)
class Placement:
    """One kind of agent container: its condition and the texts Stash reports it with (``{what}`` is the
    workload, e.g. ``apps/v1 deployment/web``; ``{reason}`` the API server's message)."""

    container: str
    """For logs: "sidecar" or "init-container"."""
    condition: ConditionType
    succeeded: ConditionReason
    failed: ConditionReason
    succeeded_message: str
    failed_message: str
    removed_reason: str
    removed_message: str
    owner_label: str
    """The label every workload carrying the container has, valued with the owner's name."""
    hash_annotation: str
    """The pod-template annotation holding the injection's hash (a ReplicaSet's restart key)."""


def describe(kind: workloads.WorkloadKind, name: str) -> str:
    """How Stash names a workload in its messages: ``apps/v1 deployment/web``."""
    return f"{kind.api_version} {kind.kind.lower()}/{name}"


class Placer:
    """Writes and strips one :class:`Placement` for its owners."""

    def __init__(
        self, resources: Resources, events: Events, placement: Placement, labels: LabelIndex | None = None
    ) -> None:
        """Write through ``resources``; report removals through ``events``; after a placement, learn from
        ``labels`` (the workload watches) which other workloads the owner labelled (None: list them)."""
        self.resources = resources
        self.events = events
        self.placement = placement
        self.labels = labels

    async def place(
        self,
        owner: KubeObject,
        kind: workloads.WorkloadKind,
        patched: Workload | None,
        injection_hash: str,
        remove: Callable[[Workload], Workload | None],
        target: str,
    ) -> tuple[ConditionUpdate, dict[str, Any] | None]:
        """Write ``patched`` (None: already in place) into workload ``target``; strip the container from the
        owner's other workloads. The condition, and the workload's metadata when it was written."""
        p = self.placement
        what = describe(kind, target)
        written: Workload | None = None
        if patched is not None:
            try:
                written = await self.resources.replace_workload(kind, patched)
            except Invalid as exc:
                message = p.failed_message.format(what=what, reason=exc.message)
                return ConditionUpdate.false(p.condition, p.failed, message), None
            owner_key = f"{owner.metadata.namespace}/{owner.metadata.name}"
            extra = {"object": owner_key, "target": what, "hash": injection_hash}
            log.info(f"{p.container} injected", extra=extra)
            if kind.kind == "ReplicaSet":
                await self.resources.restart_replicaset(patched, p.hash_annotation, injection_hash)
        # The owner may have moved on: the watches say where it was (a deletion lists, to be sure); when
        # they saw the old workload's label late, this runs again for it (the controller enqueues the owner
        # of a workload labelled for it that it no longer depends on).
        await self.strip(owner, remove, None, keep=(kind.kind, target), watched=True)
        done = ConditionUpdate.true(p.condition, p.succeeded, p.succeeded_message.format(what=what))
        return done, (written or {}).get("metadata")

    async def strip(
        self,
        owner: KubeObject,
        remove: Callable[[Workload], Workload | None],
        target: tuple[workloads.WorkloadKind, str] | None,
        keep: tuple[str, str] | None = None,
        *,
        watched: bool = False,
    ) -> None:
        """Take the container out of every workload labelled for ``owner`` but ``keep`` (kind, name), and
        out of ``target`` (kind, name) too, should its label have gone. ``watched``: the labelled
        workloads as the watches know them, once they have listed (else listed from the API server)."""
        namespace = owner.metadata.namespace or ""
        found = await self._labelled(namespace, owner.metadata.name or "", keep, watched=watched)
        if target is not None:
            with contextlib.suppress(NotFound):
                extra = await self.resources.get_workload(target[0], namespace, target[1])
                if all(w["metadata"]["uid"] != extra["metadata"]["uid"] for _, w in found):
                    found.append((target[0], extra))
        for kind, workload in found:
            name = workload["metadata"]["name"]
            cleaned = None if keep == (kind.kind, name) else remove(workload)
            if cleaned is None:
                continue
            await self.resources.replace_workload(kind, cleaned)
            what = describe(kind, name)
            owner_key = f"{namespace}/{owner.metadata.name}"
            log.info(f"{self.placement.container} removed", extra={"object": owner_key, "target": what})
            message = self.placement.removed_message.format(what=what)
            await self.events.emit(
                owner, EventSpec("Normal", self.placement.removed_reason, message, names.COMPONENT_WORKLOAD)
            )

    async def _labelled(
        self, namespace: str, owner: str, keep: tuple[str, str] | None, *, watched: bool
    ) -> list[tuple[workloads.WorkloadKind, Workload]]:
        """The workloads of ``namespace`` labelled for ``owner``: those the watches name (``keep`` not
        read at all), or every kind listed when not ``watched`` or the watches have not listed yet."""
        label = self.placement.owner_label
        holders = self.labels.carrying(label, namespace, owner) if watched and self.labels else None
        if holders is None:
            return [
                (kind, workload)
                for kind in workloads.WORKLOAD_KINDS.values()
                for workload in await self.resources.list_workloads(kind, namespace, f"{label}={owner}")
            ]
        found: list[tuple[workloads.WorkloadKind, Workload]] = []
        for kind_name, name in holders:
            if keep == (kind_name, name) or kind_name not in workloads.WORKLOAD_KINDS:
                continue
            kind = workloads.WORKLOAD_KINDS[kind_name]
            with contextlib.suppress(NotFound):  # gone meanwhile: nothing to take out
                found.append((kind, await self.resources.get_workload(kind, namespace, name)))
        return found
