"""The reconcile core the BackupConfiguration and RestoreSession reconcilers plug into: async.

:meth:`FinalizingReconciler.reconcile` reads the object (gone: the controller forgets it); an object being
deleted has what was made for it released (:meth:`~FinalizingReconciler.release`), then stashlet's
finalizer removed; otherwise the finalizer is added when missing and the kind's own
:meth:`~FinalizingReconciler.apply` runs. :meth:`~FinalizingReconciler.write_status` lays condition updates
over the status, sets the phase, writes only a real change (Conflict: read again, re-apply) and records the
events due to the transitions.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Condition
from stashlet.api.restoresession import RestoreSession
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, NotFound
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions
from stashlet.operator.core.events import Events
from stashlet.operator.core.observe import ReconcileResult
from stashlet.operator.core.resources import Resources
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Owned = TypeVar("Owned", BackupConfiguration, RestoreSession)
"""A kind the operator acts for and holds a finalizer on."""


class FinalizingReconciler(ABC, Generic[Owned]):
    """Get, deletion and finalizer, apply: one instance serves every object of :attr:`model`."""

    model: ClassVar[type[Any]]
    """The kind reconciled: BackupConfiguration or RestoreSession."""
    tracks_generation: ClassVar[bool] = False
    """Whether the status records ``observedGeneration``."""
    sole_status_writer: ClassVar[bool] = False
    """Whether only the operator writes this kind's status: then the status this reconcile read is current
    (a Conflict says when it is not), and :meth:`write_status` does not read it again."""

    def __init__(self, api: ApiClient, settings: OperatorSettings) -> None:
        """Use ``api`` (the operator's own identity) and ``settings``."""
        self.api = api
        self.settings = settings
        self.stash = StashClient(api)
        self.resources = Resources(api)
        self.events = Events(api)

    async def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        """Bring ``namespace/name`` to its desired state (module docstring)."""
        try:
            obj: Owned = await self.stash.get(self.model, namespace, name)
        except NotFound:
            return ReconcileResult(gone=True)
        held: list[str] = list(obj.metadata.finalizers or [])
        if obj.metadata.deletion_timestamp is not None:
            if names.FINALIZER in held:
                await self.release(obj)
                with contextlib.suppress(NotFound):  # gone meanwhile: nothing left to let go of
                    await self._set_finalizers(obj, [f for f in held if f != names.FINALIZER])
                    log.info("finalized", extra={"object": f"{namespace}/{name}", "kind": obj.kind})
            return ReconcileResult()
        if names.FINALIZER not in held:
            obj = await self._set_finalizers(obj, [*held, names.FINALIZER])
        result = await self.apply(obj)
        result.seen[(obj.kind, f"{namespace}/{name}")] = obj.to_dict()["metadata"]
        return result

    @abstractmethod
    async def apply(self, obj: Owned) -> ReconcileResult:
        """Make what ``obj`` asks for and write its status; say what it depends on."""

    @abstractmethod
    async def release(self, obj: Owned) -> None:
        """Undo what was made for ``obj`` that garbage collection does not remove."""

    @abstractmethod
    def new_status(self) -> Any:
        """An empty status of :attr:`model`."""

    @abstractmethod
    def transition_events(self, before: list[Condition], after: list[Condition]) -> list[EventSpec]:
        """The events due because conditions went from ``before`` to ``after``."""

    async def _set_finalizers(self, obj: Owned, finalizers: list[str]) -> Owned:
        patch = {
            "metadata": {"finalizers": finalizers or None, "resourceVersion": obj.metadata.resource_version}
        }
        written: Owned = await self.stash.patch(
            self.model, obj.metadata.namespace, obj.metadata.name or "", patch
        )
        return written

    async def write_status(
        self, obj: Owned, updates: list[ConditionUpdate], phase: Callable[[list[Condition], Any], Any]
    ) -> Owned:
        """Lay ``updates`` over the conditions, set ``phase(conditions, previous phase)``; write only a
        change, then record the transition events."""
        before: list[Condition] = []
        after: list[Condition] = []
        generation = obj.metadata.generation

        def mutate(current: Any) -> bool:
            nonlocal before, after
            status = current.status or self.new_status()
            before = list(status.conditions or [])
            now = now_utc()
            after = apply_conditions(before, updates, now=now, generation=generation)
            new_phase = phase(after, status.phase)
            unchanged = _comparable(before) == _comparable(after) and status.phase == new_phase
            if self.tracks_generation:
                unchanged = unchanged and status.observed_generation == generation
                status.observed_generation = generation
            if unchanged:
                return False
            status.conditions, status.phase = after, new_phase
            current.status = status
            return True

        namespace, name = obj.metadata.namespace or "", obj.metadata.name or ""
        updated: Owned
        if self.sole_status_writer:
            updated = type(obj).from_dict(obj.to_dict())  # as this reconcile read it
            if mutate(updated):
                try:
                    updated = await self.stash.replace_status(updated)
                except Conflict:  # written meanwhile: read again and re-apply
                    updated = await self.stash.update_status(self.model, namespace, name, mutate)
        else:
            updated = await self.stash.update_status(self.model, namespace, name, mutate)
        if updated.status is not None and updated.status.phase is not None:
            log.debug("status", extra={"object": f"{namespace}/{name}", "phase": str(updated.status.phase)})
        for event in self.transition_events(before, after):
            await self.events.emit(updated, event)
        return updated


def _comparable(conditions: list[Condition]) -> list[tuple[Any, ...]]:
    return [(c.type, c.status, c.reason, c.message, c.observed_generation) for c in conditions]
