"""One RestoreSession in: validate, then grant RBAC and inject ``stash-init``; report; clean up on deletion.

Validation (:mod:`stashlet.operator.restore.validation`) sets ``RepositoryFound``, ``BackendSecretFound``,
``RestoreTargetFound`` and ``ValidationPassed``; when all hold, the workload's service account gets the
init-container's Role (:mod:`stashlet.operator.injection.restore_rbac`) and the init-container goes first into
the target's pod template (:mod:`stashlet.operator.injection.init_container`), which rolls the workload's pods
(a ReplicaSet's pods are deleted, as it does not roll by itself): ``StashInitContainerInjected``, with the
events "Init-Container Injection Succeeded" / "Init-Container Injection Failed" (from "Workload Controller").
Failing conditions are Warning events from "RestoreSession Controller". The phase is ``Invalid`` or
``Pending`` while the operator owns it; the agent writes the restore's own progress and result.

Deleting the session (finalizer ``stash.appscode.com``) takes the init-container out of the workload
("Init-Container Deletion Succeeded") and deletes its Roles and RoleBindings. Idempotent like the
BackupConfiguration reconciler: an unchanged session writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession, RestoreSessionStatus
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Invalid, NotFound
from stashlet.kube.events import COMPONENT_RESTORE_SESSION, COMPONENT_WORKLOAD, EventRecorder
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions
from stashlet.operator.core.observe import Dependency, ReconcileResult, lookup, observe_repository
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.validation import Lookup
from stashlet.operator.injection import init_container, restore_rbac
from stashlet.operator.injection.init_container import restore_invoker
from stashlet.operator.injection.rbac import up_to_date
from stashlet.operator.restore.validation import (
    RestoreObserved,
    repository_key,
    restore_phase,
    target_kind,
    validate_restore,
)
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

REASON_INIT_INJECTION_SUCCEEDED = "Init-Container Injection Succeeded"
REASON_INIT_INJECTION_FAILED = "Init-Container Injection Failed"
REASON_INIT_DELETION_SUCCEEDED = "Init-Container Deletion Succeeded"


def restore_events(old: list[Condition], new: list[Condition]) -> list[EventSpec]:
    """The events due because a condition changed: each failure once, and the injection's outcome."""
    before = {c.type: (c.status, c.reason, c.message) for c in old}
    events: list[EventSpec] = []
    for cond in new:
        if before.get(cond.type) == (cond.status, cond.reason, cond.message):
            continue
        message = cond.message or ""
        if cond.type == ConditionType.STASH_INIT_CONTAINER_INJECTED:
            ok = cond.status == ConditionStatus.TRUE
            reason = REASON_INIT_INJECTION_SUCCEEDED if ok else REASON_INIT_INJECTION_FAILED
            events.append(EventSpec("Normal" if ok else "Warning", reason, message, COMPONENT_WORKLOAD))
        elif cond.status != ConditionStatus.TRUE:
            events.append(EventSpec("Warning", cond.reason or cond.type, message, COMPONENT_RESTORE_SESSION))
    return events


def _describe(kind: workloads.WorkloadKind, name: str) -> str:
    return f"{kind.api_version} {kind.kind.lower()}/{name}"


class RestoreReconciler:
    """Reconciles RestoreSessions; one instance serves every object (it holds no per-object state)."""

    def __init__(self, api: client.ApiClient, settings: OperatorSettings) -> None:
        """Use ``api`` (the operator's own identity) and ``settings``."""
        self.api = api
        self.settings = settings
        self.stash = StashClient(api)
        self.resources = Resources(api)
        self._recorders: dict[str, EventRecorder] = {}

    async def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        """Bring RestoreSession ``namespace/name`` to its desired state; see the module docstring."""
        try:
            rs = await self.stash.get(RestoreSession, namespace, name)
        except NotFound:
            return ReconcileResult(gone=True)
        if rs.metadata.deletion_timestamp is not None:
            await self._finalize(rs)
            return ReconcileResult()
        if names.FINALIZER not in (rs.metadata.finalizers or []):
            rs = await self._set_finalizers(rs, [*(rs.metadata.finalizers or []), names.FINALIZER])
        result = ReconcileResult()
        observed = await self._observe(rs, result.dependencies)
        verdict = validate_restore(rs, observed)
        updates = list(verdict.updates)
        kind, workload, repository = target_kind(rs), observed.workload.value, observed.repository.value
        if verdict.applicable and kind is not None and workload is not None and repository is not None:
            injected, written = await self._ensure(rs, kind, workload, repository)
            updates.append(injected)
            if written is not None:
                result.seen[(kind.kind, f"{namespace}/{written['name']}")] = written
        await self._write_status(rs, updates)
        result.seen[(names.KIND_RESTORE_SESSION, f"{namespace}/{name}")] = rs.to_dict()["metadata"]
        if workload is not None:
            key = (str(workload.get("kind")), f"{namespace}/{workload['metadata']['name']}")
            result.seen.setdefault(key, workload["metadata"])
        return result

    # ------------------------------------------------------------ observe

    async def _observe(self, rs: RestoreSession, deps: set[Dependency]) -> RestoreObserved:
        namespace = rs.metadata.namespace or ""
        repo = await observe_repository(self.stash, self.resources, namespace, repository_key(rs), deps)
        workload: Lookup[dict[str, Any]] = Lookup()
        other: str | None = None
        kind = target_kind(rs)
        ref = rs.spec.target.ref if rs.spec.target else None
        if kind is not None and ref is not None and ref.name:
            deps.add((kind.kind, namespace, ref.name))
            workload = await lookup(self.resources.get_workload(kind, namespace, ref.name))
            applied = init_container.applied_restore(workload.value) if workload.value else None
            if applied and applied != restore_invoker(rs):
                other = await self._live_restore(namespace, applied)
        return RestoreObserved(repo.repository, repo.secret_keys, workload, repo.namespace_labels, other)

    async def _live_restore(self, namespace: str, invoker: str) -> str | None:
        """``invoker`` when that RestoreSession still exists (and is not being deleted), else None."""
        try:
            other = await self.stash.get(RestoreSession, namespace, invoker.partition("/")[2])
        except NotFound:
            return None
        return invoker if other.metadata.deletion_timestamp is None else None

    # ------------------------------------------------------------ apply

    async def _ensure(
        self,
        rs: RestoreSession,
        kind: workloads.WorkloadKind,
        workload: dict[str, Any],
        repository: Repository,
    ) -> tuple[ConditionUpdate, dict[str, Any] | None]:
        """RBAC for the workload's service account, then the init-container; the condition, and the
        workload's metadata when it was written."""
        namespace, target = rs.metadata.namespace or "", workload["metadata"]["name"]
        what = _describe(kind, target)
        for obj in restore_rbac.restore_rbac(
            rs,
            kind,
            target,
            service_account=workloads.service_account(workload),
            repository_namespace=repository.metadata.namespace or namespace,
            repository=repository.metadata.name or "",
            secret=repository.spec.backend.storage_secret_name or "",
        ):
            await self.resources.ensure(obj, up_to_date)
        injection = init_container.build_init_injection(rs, kind.kind, target, repository, self.settings)
        patched = init_container.inject(workload, injection)
        written: dict[str, Any] | None = None
        if patched is not None:
            try:
                written = await self.resources.replace_workload(kind, patched)
            except Invalid as exc:
                return ConditionUpdate.false(
                    ConditionType.STASH_INIT_CONTAINER_INJECTED,
                    ConditionReason.INIT_CONTAINER_INJECTION_FAILED,
                    f"Failed to inject Stash init-container into {what}. Reason: {exc.message}",
                ), None
            log.info(
                "init-container injected",
                extra={"object": f"{namespace}/{rs.metadata.name}", "target": what, "hash": injection.hash},
            )
            if kind.kind == "ReplicaSet":
                await self.resources.restart_replicaset(
                    patched, names.ANNOTATION_RESTORE_INJECTION_HASH, injection.hash
                )
            await self.strip(rs, keep=(kind.kind, target))  # the session may have moved to another target
        done = ConditionUpdate.true(
            ConditionType.STASH_INIT_CONTAINER_INJECTED,
            ConditionReason.INIT_CONTAINER_INJECTION_SUCCEEDED,
            f"Successfully injected stash init-container into {what}.",
        )
        return done, (written or {}).get("metadata")

    async def strip(self, rs: RestoreSession, keep: tuple[str, str] | None = None) -> None:
        """Take ``rs``'s init-container out of every workload labelled for it but ``keep`` (kind, name);
        without ``keep`` also out of its target, should the label have gone."""
        namespace = rs.metadata.namespace or ""
        selector = f"{names.LABEL_RESTORE_SESSION}={rs.metadata.name}"
        found = [
            (kind, workload)
            for kind in workloads.WORKLOAD_KINDS.values()
            for workload in await self.resources.list_workloads(kind, namespace, selector)
        ]
        kind = target_kind(rs)
        ref = rs.spec.target.ref if rs.spec.target else None
        if keep is None and kind is not None and ref is not None and ref.name:
            with contextlib.suppress(NotFound):
                target = await self.resources.get_workload(kind, namespace, ref.name)
                if all(w["metadata"]["uid"] != target["metadata"]["uid"] for _, w in found):
                    found.append((kind, target))
        for kind, workload in found:
            name = workload["metadata"]["name"]
            if keep == (kind.kind, name):
                continue
            cleaned = init_container.remove_injection(workload, restore_invoker(rs))
            if cleaned is None:
                continue
            await self.resources.replace_workload(kind, cleaned)
            what = _describe(kind, name)
            log.info(
                "init-container removed", extra={"object": f"{namespace}/{rs.metadata.name}", "target": what}
            )
            message = f"Removed stash init-container from {what}."
            await self._event(
                rs, EventSpec("Normal", REASON_INIT_DELETION_SUCCEEDED, message, COMPONENT_WORKLOAD)
            )

    # ------------------------------------------------------------ status and events

    async def _write_status(self, rs: RestoreSession, updates: list[ConditionUpdate]) -> None:
        namespace, name = rs.metadata.namespace or "", rs.metadata.name or ""
        before: list[Condition] = []
        after: list[Condition] = []

        def mutate(current: RestoreSession) -> bool:
            nonlocal before, after
            status = current.status or RestoreSessionStatus()
            before = list(status.conditions or [])
            after = apply_conditions(
                before,
                updates,
                now=dt.datetime.now(dt.UTC).replace(microsecond=0),
                generation=rs.metadata.generation,
            )
            phase = restore_phase(after, status.phase)
            if _comparable(before) == _comparable(after) and status.phase == phase:
                return False
            status.conditions, status.phase = after, phase
            current.status = status
            return True

        updated = await self.stash.update_status(RestoreSession, namespace, name, mutate)
        for event in restore_events(before, after):
            await self._event(updated, event)

    async def _event(self, rs: RestoreSession, event: EventSpec) -> None:
        if event.source not in self._recorders:
            self._recorders[event.source] = EventRecorder(self.api, event.source)
        await self._recorders[event.source].record(
            rs.to_dict(), "Warning" if event.type == "Warning" else "Normal", event.reason, event.message
        )

    # ------------------------------------------------------------ deletion

    async def _set_finalizers(self, rs: RestoreSession, finalizers: list[str]) -> RestoreSession:
        patch = {
            "metadata": {"finalizers": finalizers or None, "resourceVersion": rs.metadata.resource_version}
        }
        return await self.stash.patch(RestoreSession, rs.metadata.namespace, rs.metadata.name or "", patch)

    async def _finalize(self, rs: RestoreSession) -> None:
        """Remove the init-container and the RBAC made for ``rs``, then let go of it."""
        if names.FINALIZER not in (rs.metadata.finalizers or []):
            return
        await self.strip(rs)
        repo_key = repository_key(rs)
        for obj in restore_rbac.created_for(rs, repo_key[0] if repo_key else None):
            await self.resources.delete(obj.kind, obj.namespace, obj.name)
        try:
            await self._set_finalizers(rs, [f for f in rs.metadata.finalizers or [] if f != names.FINALIZER])
        except NotFound:
            return
        log.info("finalized", extra={"object": f"{rs.metadata.namespace}/{rs.metadata.name}"})


def _comparable(conditions: list[Condition]) -> list[tuple[Any, ...]]:
    return [(c.type, c.status, c.reason, c.message, c.observed_generation) for c in conditions]
