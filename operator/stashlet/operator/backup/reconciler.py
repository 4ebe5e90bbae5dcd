"""One BackupConfiguration in: validate, then apply RBAC, the CronJob and the sidecar; report; clean up.

Idempotent: every step compares what is there with what should be and writes only the difference, so a
second run over an unchanged configuration writes nothing (no rollout, no status write, no event).
Transient API errors propagate; the controller retries the whole reconcile with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupConfigurationStatus
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Invalid, NotFound
from stashlet.kube.events import EventRecorder
from stashlet.operator.backup import cronjob
from stashlet.operator.backup.sidecar_injection import Sidecars
from stashlet.operator.backup.status import compute_phase, transition_events
from stashlet.operator.backup.validation import (
    Model,
    Observed,
    Verdict,
    repository_key,
    target_kind,
    validate,
    with_task_check,
)
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, apply_conditions
from stashlet.operator.core.observe import Dependency, ReconcileResult, lookup, observe_repository
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.validation import Lookup
from stashlet.operator.injection import rbac
from stashlet.operator.kubedump.backup_job import is_kubedump
from stashlet.operator.kubedump.session_jobs import KubedumpJobs
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)


class Reconciler:
    """Reconciles BackupConfigurations; one instance serves every object (it holds no per-object state)."""

    def __init__(self, api: client.ApiClient, settings: OperatorSettings) -> None:
        """Use ``api`` (the operator's own identity) and ``settings``."""
        self.api = api
        self.settings = settings
        self.stash = StashClient(api)
        self.resources = Resources(api)
        self.sidecars = Sidecars(self.resources, settings, self._event)
        self.jobs = KubedumpJobs(api, self.resources, settings)
        self._recorders: dict[str, EventRecorder] = {}

    def _recorder(self, source: str) -> EventRecorder:
        if source not in self._recorders:
            self._recorders[source] = EventRecorder(self.api, source)
        return self._recorders[source]

    async def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        """Bring ``namespace/name`` to its desired state; see the module docstring."""
        try:
            bc = await self.stash.get(BackupConfiguration, namespace, name)
        except NotFound:
            return ReconcileResult(gone=True)
        if bc.metadata.deletion_timestamp is not None:
            await self._finalize(bc)
            return ReconcileResult()
        if names.FINALIZER not in (bc.metadata.finalizers or []):
            bc = await self.stash.patch(
                BackupConfiguration,
                namespace,
                name,
                {
                    "metadata": {
                        "finalizers": [*(bc.metadata.finalizers or []), names.FINALIZER],
                        "resourceVersion": bc.metadata.resource_version,
                    }
                },
            )
        result = ReconcileResult()
        observed = await self._observe(bc, result.dependencies)
        verdict = with_task_check(bc, validate(bc, observed))
        updates = list(verdict.updates)
        if verdict.applicable:
            updates += await self._apply(bc, verdict, observed, result.seen)
        await self._write_status(bc, updates, sidecar=verdict.model == Model.SIDECAR)
        result.seen[(names.KIND_BACKUP_CONFIGURATION, f"{namespace}/{name}")] = bc.to_dict()["metadata"]
        if observed.workload.value is not None:
            workload = observed.workload.value
            key = (str(workload.get("kind")), f"{namespace}/{workload['metadata']['name']}")
            result.seen.setdefault(key, workload["metadata"])
        if observed.repository.value is not None:
            repo = observed.repository.value
            key = (names.KIND_REPOSITORY, f"{repo.metadata.namespace}/{repo.metadata.name}")
            result.seen[key] = repo.to_dict()["metadata"]
        return result

    # ------------------------------------------------------------ observe

    async def _observe(self, bc: BackupConfiguration, deps: set[Dependency]) -> Observed:
        namespace = bc.metadata.namespace or ""
        repo = await observe_repository(self.stash, self.resources, namespace, repository_key(bc), deps)
        workload: Lookup[dict[str, Any]] = Lookup()
        kind = target_kind(bc)
        if kind is not None and bc.spec.target and bc.spec.target.ref and bc.spec.target.ref.name:
            deps.add((kind.kind, namespace, bc.spec.target.ref.name))
            workload = await lookup(self.resources.get_workload(kind, namespace, bc.spec.target.ref.name))
        return Observed(repo.repository, repo.secret_keys, workload, repo.namespace_labels)

    # ------------------------------------------------------------ apply

    async def _apply(
        self,
        bc: BackupConfiguration,
        verdict: Verdict,
        observed: Observed,
        seen: dict[tuple[str, str], dict[str, Any]],
    ) -> list[ConditionUpdate]:
        cron = await self._ensure_cronjob(bc)
        repository = observed.repository.value
        if cron.status == ConditionStatus.TRUE and is_kubedump(bc) and repository is not None:
            await self.jobs.ensure_rbac(bc, repository)
        elif not is_kubedump(bc) and names.ANNOTATION_KUBEDUMP_BINDING in (bc.metadata.annotations or {}):
            await self._drop_job_rbac(bc)  # no longer a kubedump configuration
        if cron.status != ConditionStatus.TRUE or verdict.model != Model.SIDECAR:
            return [cron]
        kind, workload = target_kind(bc), observed.workload.value
        assert kind is not None  # validate() checked all three
        assert workload is not None
        assert repository is not None
        injected, written = await self.sidecars.ensure(bc, kind, workload, repository)
        if written is not None:
            seen[(kind.kind, f"{bc.metadata.namespace}/{written['name']}")] = written
        return [cron, injected]

    async def _ensure_cronjob(self, bc: BackupConfiguration) -> ConditionUpdate:
        """The trigger's RBAC and CronJob; the API server judges the CronJob (dry run) before any is made."""
        namespace, name = bc.metadata.namespace or "", names.cronjob_name(bc.metadata.name or "")
        if not bc.spec.schedule:
            await self.resources.delete("CronJob", namespace, name)
            return ConditionUpdate.true(
                ConditionType.CRON_JOB_CREATED,
                ConditionReason.CRON_JOB_CREATION_SUCCEEDED,
                "spec.schedule is empty: no CronJob; BackupSessions are only created on demand.",
            )
        desired = cronjob.build_cronjob(bc, self.settings)
        try:
            try:
                existing: dict[str, Any] | None = await self.resources.get("CronJob", namespace, name)
            except NotFound:
                existing = None
            patch = cronjob.cronjob_patch(existing, desired, bc) if existing is not None else None
            if existing is None:
                await self.resources.create(desired, dry_run=True)
            elif patch is not None:
                await self.resources.patch_cronjob(namespace, name, patch, dry_run=True)
            for obj in rbac.trigger_rbac(bc, self.settings):
                await self.resources.ensure(obj, rbac.up_to_date)
            if existing is None:
                await self.resources.create(desired)
            elif patch is not None:
                await self.resources.patch_cronjob(namespace, name, patch)
            if existing is None or patch is not None:
                what = "cronjob created" if existing is None else "cronjob updated"
                log.info(what, extra={"object": f"{namespace}/{bc.metadata.name}", "cronjob": name})
        except Invalid as exc:
            return ConditionUpdate.false(
                ConditionType.CRON_JOB_CREATED,
                ConditionReason.CRON_JOB_CREATION_FAILED,
                f"Failed to create backup triggering CronJob {namespace}/{name}. Reason: {exc.message}",
            )
        return ConditionUpdate.true(
            ConditionType.CRON_JOB_CREATED,
            ConditionReason.CRON_JOB_CREATION_SUCCEEDED,
            f"Successfully created backup triggering CronJob {namespace}/{name}.",
        )

    async def _drop_job_rbac(self, bc: BackupConfiguration) -> None:
        """Remove the kubedump Jobs' RBAC of a configuration that no longer runs them, and its record."""
        repo_key = repository_key(bc)
        await self.jobs.cleanup(bc, repo_key[0] if repo_key else None)
        await self.stash.patch(
            BackupConfiguration,
            bc.metadata.namespace,
            bc.metadata.name or "",
            {"metadata": {"annotations": {names.ANNOTATION_KUBEDUMP_BINDING: None}}},
        )

    # ------------------------------------------------------------ status and events

    async def _write_status(
        self, bc: BackupConfiguration, updates: list[ConditionUpdate], *, sidecar: bool
    ) -> None:
        namespace, name = bc.metadata.namespace or "", bc.metadata.name or ""
        before: list[Condition] = []
        after: list[Condition] = []

        def mutate(current: BackupConfiguration) -> bool:
            nonlocal before, after
            status = current.status or BackupConfigurationStatus()
            before = list(status.conditions or [])
            after = apply_conditions(
                before,
                updates,
                now=dt.datetime.now(dt.UTC).replace(microsecond=0),
                generation=bc.metadata.generation,
            )
            phase = compute_phase(after, sidecar=sidecar)
            if (
                _comparable(before) == _comparable(after)
                and status.phase == phase
                and status.observed_generation == bc.metadata.generation
            ):
                return False
            status.conditions, status.phase = after, phase
            status.observed_generation = bc.metadata.generation
            current.status = status
            return True

        updated = await self.stash.update_status(BackupConfiguration, namespace, name, mutate)
        if updated.status is not None and updated.status.phase is not None:
            log.debug("status", extra={"object": f"{namespace}/{name}", "phase": updated.status.phase.value})
        for event in transition_events(before, after):
            await self._event(updated, event)

    async def _event(self, bc: BackupConfiguration, event: EventSpec) -> None:
        await self._recorder(event.source).record(
            bc.to_dict(), "Warning" if event.type == "Warning" else "Normal", event.reason, event.message
        )

    # ------------------------------------------------------------ deletion

    async def _finalize(self, bc: BackupConfiguration) -> None:
        """Remove the sidecar and the RBAC made for ``bc``, then let go of it (the CronJob goes by GC)."""
        namespace, name = bc.metadata.namespace or "", bc.metadata.name or ""
        if names.FINALIZER not in (bc.metadata.finalizers or []):
            return
        await self.sidecars.strip(bc)
        repo_key = repository_key(bc)
        for obj in rbac.created_for(bc, repo_key[0] if repo_key else None):
            await self.resources.delete(obj.kind, obj.namespace, obj.name)
        if is_kubedump(bc) or names.ANNOTATION_KUBEDUMP_BINDING in (bc.metadata.annotations or {}):
            await self.jobs.cleanup(bc, repo_key[0] if repo_key else None)
        finalizers = [f for f in bc.metadata.finalizers or [] if f != names.FINALIZER]
        try:
            await self.stash.patch(
                BackupConfiguration,
                namespace,
                name,
                {
                    "metadata": {
                        "finalizers": finalizers or None,
                        "resourceVersion": bc.metadata.resource_version,
                    }
                },
            )
        except NotFound:
            return
        log.info("finalized", extra={"object": f"{namespace}/{name}"})


def _comparable(conditions: list[Condition]) -> list[tuple[Any, ...]]:
    return [(c.type, c.status, c.reason, c.message, c.observed_generation) for c in conditions]
