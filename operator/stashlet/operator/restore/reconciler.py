"""One RestoreSession in: validate, then grant RBAC and inject ``stash-init``; report; clean up on deletion.

Validation (:mod:`stashlet.operator.restore.validation`) sets ``RepositoryFound``, ``BackendSecretFound``,
``RestoreTargetFound`` and ``ValidationPassed``; when all hold, the session's own ServiceAccount
``stashlet-restore-<rs>`` and its token Secret are made, that account (never the workload's) gets the
init-container's Role (:mod:`stashlet.operator.injection.restore_rbac`) and the init-container goes first into
the target's pod template (:mod:`stashlet.operator.injection.init_container`), which rolls the workload's pods
(a ReplicaSet's pods are deleted, as it does not roll by itself): ``StashInitContainerInjected``, with the
events "Init-Container Injection Succeeded" / "Init-Container Injection Failed" (from "Workload Controller").
Failing conditions are Warning events from "RestoreSession Controller". The phase is ``Invalid`` or
``Pending`` while the operator owns it; the agent writes the restore's own progress and result.

A session restored by Jobs (a ``pvc-restore`` claim, or ``volumeClaimTemplates``) gets no init-container:
its claim is looked up (``RestoreTargetFound``), its templates judged by the API server, and once valid
its claims and one Job per host are made (:mod:`stashlet.operator.restore.executor`,
``RestoreExecutorEnsured``, with the events "SuccessfullyEnsuredRestoreExecutor" /
"FailedToEnsureRestoreExecutor"; a failure ends the session ``Failed``).

Deleting the session (finalizer ``stash.appscode.com``) takes the init-container out of the workload
("Init-Container Deletion Succeeded") and deletes its Roles and RoleBindings (its ServiceAccount and token
Secret, owned by it, go as garbage); a Job-restored session's Jobs and ServiceAccount go with it (owned),
its claims stay: they are the user's. Idempotent like the
BackupConfiguration reconciler: an unchanged session writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stashlet.api import agent_identity, names, restore_jobs
from stashlet.api.common import Condition, ConditionStatus, Snapshotter
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession, RestoreSessionStatus
from stashlet.kube.errors import NotFound
from stashlet.operator.core import workloads
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec
from stashlet.operator.core.labelled import LabelIndex
from stashlet.operator.core.observe import Dependency, ReconcileResult, lookup, observe_repository
from stashlet.operator.core.placement import Placement, Placer, Workload
from stashlet.operator.core.reconcile import FinalizingReconciler
from stashlet.operator.core.validation import Lookup, repository_key, target_kind
from stashlet.operator.injection import init_container, restore_rbac
from stashlet.operator.injection.init_container import restore_invoker
from stashlet.operator.injection.rbac import RepositoryAccess, up_to_date
from stashlet.operator.restore.executor import RestoreJobs, claim_dependency
from stashlet.operator.restore.validation import RestoreObserved, restore_phase, validate_restore
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
        if cond.type == ConditionType.RESTORE_EXECUTOR_ENSURED:
            ok = cond.status == ConditionStatus.TRUE
            events.append(
                EventSpec(
                    "Normal" if ok else "Warning", cond.reason or "", message, names.COMPONENT_RESTORE_SESSION
                )
            )
        elif cond.type == ConditionType.STASH_INIT_CONTAINER_INJECTED:
            ok = cond.status == ConditionStatus.TRUE
            reason = REASON_INIT_INJECTION_SUCCEEDED if ok else REASON_INIT_INJECTION_FAILED
            events.append(EventSpec("Normal" if ok else "Warning", reason, message, names.COMPONENT_WORKLOAD))
        elif cond.status != ConditionStatus.TRUE:
            events.append(
                EventSpec("Warning", cond.reason or cond.type, message, names.COMPONENT_RESTORE_SESSION)
            )
    return events


INIT_CONTAINER = Placement(
    container="init-container",
    condition=ConditionType.STASH_INIT_CONTAINER_INJECTED,
    succeeded=ConditionReason.INIT_CONTAINER_INJECTION_SUCCEEDED,
    failed=ConditionReason.INIT_CONTAINER_INJECTION_FAILED,
    succeeded_message="Successfully injected stash init-container into {what}.",
    failed_message="Failed to inject Stash init-container into {what}. Reason: {reason}",
    removed_reason=REASON_INIT_DELETION_SUCCEEDED,
    removed_message="Removed stash init-container from {what}.",
    owner_label=names.LABEL_RESTORE_SESSION,
    hash_annotation=names.ANNOTATION_RESTORE_INJECTION_HASH,
)


class RestoreReconciler(FinalizingReconciler[RestoreSession]):
    """Reconciles RestoreSessions; one instance serves every object (it holds no per-object state)."""

    model = RestoreSession

    def __init__(self, api: ApiClient, settings: OperatorSettings, labels: LabelIndex | None = None) -> None:
        """Use ``api`` (the operator's own identity) and ``settings``; ``labels``: which workloads carry a
        session's label, as the controller's watches see them (None: asked of the API server)."""
        super().__init__(api, settings)
        self.placer = Placer(self.resources, self.events, INIT_CONTAINER, labels)
        self.jobs = RestoreJobs(api, self.resources, settings)

    async def apply(self, rs: RestoreSession) -> ReconcileResult:
        """Validate, then the RBAC and the init-container; write the status."""
        namespace = rs.metadata.namespace or ""
        result = ReconcileResult()
        if rs.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:  # the controller hands these to volumesnapshot
            return result
        if restore_jobs.restores_by_job(rs):
            return await self._apply_by_job(rs, result)
        observed = await self._observe(rs, result.dependencies)
        verdict = validate_restore(rs, observed)
        updates = list(verdict.updates)
        kind, workload, repository = target_kind(rs), observed.workload.value, observed.repository.value
        if verdict.applicable and kind is not None and workload is not None and repository is not None:
            injected, written = await self._ensure(rs, kind, workload, repository)
            updates.append(injected)
            if written is not None:
                result.seen[(kind.kind, f"{namespace}/{written['name']}")] = written
        await self.write_status(rs, updates, restore_phase)
        if workload is not None:
            key = (str(workload.get("kind")), f"{namespace}/{workload['metadata']['name']}")
            result.seen.setdefault(key, workload["metadata"])
        return result

    async def _apply_by_job(self, rs: RestoreSession, result: ReconcileResult) -> ReconcileResult:
        """Validate a Job-restored session, then its claims and Jobs; write the status."""
        namespace = rs.metadata.namespace or ""
        repo = await observe_repository(
            self.stash, self.resources, namespace, repository_key(rs), result.dependencies
        )
        claim: Lookup[dict[str, Any]] = Lookup()
        dependency = claim_dependency(rs)
        if dependency is not None:
            result.dependencies.add(dependency)
            claim = await lookup(self.jobs.claim(namespace, dependency[2]))
        problems = await self.jobs.claim_problems(rs)
        observed = RestoreObserved(
            repo.repository, repo.secret_keys, claim, repo.namespace_labels, claim_problems=problems
        )
        verdict = validate_restore(rs, observed)
        updates = list(verdict.updates)
        repository = observed.repository.value
        if verdict.applicable and repository is not None:
            ensured = await self.jobs.ensure(rs, repository)
            if ensured is not None:
                updates.append(ensured)
        await self.write_status(rs, updates, restore_phase)
        return result

    def new_status(self) -> RestoreSessionStatus:
        """An empty RestoreSession status."""
        return RestoreSessionStatus()

    def transition_events(self, before: list[Condition], after: list[Condition]) -> list[EventSpec]:
        """The RestoreSession's events for its condition transitions."""
        return restore_events(before, after)

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
        """The session's own identity and its RBAC, then the init-container; the condition, and the
        workload's metadata when it was written."""
        target = workload["metadata"]["name"]
        problem = identity_name_problem(rs) or await self._ensure_identity(rs)
        if problem is not None:  # no init-container without its own identity
            what = f"{kind.kind} {rs.metadata.namespace}/{target}"
            message = f"Failed to inject Stash init-container into {what}. Reason: {problem}"
            failed = ConditionReason.INIT_CONTAINER_INJECTION_FAILED
            return ConditionUpdate.false(ConditionType.STASH_INIT_CONTAINER_INJECTED, failed, message), None
        access = RepositoryAccess.of(repository, rs.metadata.namespace or "")
        for obj in restore_rbac.restore_rbac(rs, kind, target, repository=access):
            await self.resources.ensure(obj, up_to_date)
        injection = init_container.build_init_injection(rs, kind.kind, target, repository, self.settings)
        patched = init_container.inject(workload, injection)
        return await self.placer.place(rs, kind, patched, injection.hash, _remover(rs), target)

    async def _ensure_identity(self, rs: RestoreSession) -> str | None:
        """Make ``rs``'s account and its token Secret where missing; a problem naming the Secret when one
        of that name exists and is not that account's token (it is never overwritten)."""
        account, token = restore_rbac.restore_identity(rs)
        return await self.resources.ensure_identity(account, token, up_to_date, "stash-init's")

    # ------------------------------------------------------------ deletion

    async def release(self, rs: RestoreSession) -> None:
        """Remove the init-container and the RBAC made for ``rs``."""
        kind, ref = target_kind(rs), rs.spec.target.ref if rs.spec.target else None
        target = (kind, ref.name) if kind is not None and ref is not None and ref.name else None
        await self.placer.strip(rs, _remover(rs), target)
        repo_key = repository_key(rs)
        for obj in restore_rbac.created_for(rs, repo_key[0] if repo_key else None):
            await self.resources.delete(obj.kind, obj.namespace, obj.name)


def identity_name_problem(rs: RestoreSession) -> str | None:
    """Why ``rs``'s name cannot carry its own ServiceAccount (too long), or None."""
    longest = agent_identity.MAX_OBJECT_NAME - len(agent_identity.RESTORE_ACCOUNT_PREFIX)
    if len(rs.metadata.name or "") <= longest:
        return None
    return (
        f"metadata.name: RestoreSession {rs.metadata.namespace}/{rs.metadata.name} is longer than {longest} "
        f"characters, so stash-init's ServiceAccount {agent_identity.RESTORE_ACCOUNT_PREFIX}<name> cannot "
        "be made"
    )


def _remover(rs: RestoreSession) -> Callable[[Workload], Workload | None]:
    invoker = restore_invoker(rs)
    return lambda workload: init_container.remove_injection(workload, invoker)
