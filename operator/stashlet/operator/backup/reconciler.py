"""One BackupConfiguration in: validate, then apply RBAC, the CronJob and the sidecar (or, for a Task, its
Jobs' RBAC); report; clean up.

Idempotent: every step compares what is there with what should be and writes only the difference, so a
second run over an unchanged configuration writes nothing (no rollout, no status write, no event).
Transient API errors propagate; the controller retries the whole reconcile with backoff.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupConfigurationStatus
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.kube.errors import Conflict, Invalid, NotFound
from stashlet.operator.backup import cronjob, status
from stashlet.operator.backup.agent_identity import AgentIdentities, account_condition, name_problem
from stashlet.operator.backup.sidecar_injection import Sidecars
from stashlet.operator.backup.status import compute_phase
from stashlet.operator.backup.validation import Model, Verdict, validate, with_problems, with_task_check
from stashlet.operator.core.apiclient import ApiClient, call_json
from stashlet.operator.core.conditions import ConditionUpdate, EventSpec, reported
from stashlet.operator.core.labelled import LabelIndex
from stashlet.operator.core.observe import Dependency, ReconcileResult, lookup, observe_repository
from stashlet.operator.core.reconcile import FinalizingReconciler
from stashlet.operator.core.validation import Lookup, Observed, repository_key, target_kind
from stashlet.operator.injection import job_rbac, rbac
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs.backup_job import claim_name, runs_as_job
from stashlet.operator.taskjobs.session_jobs import TaskJobs
from stashlet.operator.volumesnapshot import validation as snapshot_rules

log = logging.getLogger(__name__)


class Reconciler(FinalizingReconciler[BackupConfiguration]):
    """Reconciles BackupConfigurations; one instance serves every object (it holds no per-object state)."""

    model = BackupConfiguration
    tracks_generation = True
    sole_status_writer = True

    def __init__(self, api: ApiClient, settings: OperatorSettings, labels: LabelIndex | None = None) -> None:
        """Use ``api`` (the operator's own identity) and ``settings``; ``labels``: which workloads carry a
        configuration's label, as the controller's watches see them (None: asked of the API server)."""
        super().__init__(api, settings)
        self.sidecars = Sidecars(self.resources, settings, self.events, labels)
        self.identities = AgentIdentities(self.resources)
        self.jobs = TaskJobs(api, self.resources, settings)

    async def apply(self, bc: BackupConfiguration) -> ReconcileResult:
        """Validate, then the CronJob, a Task's Jobs' RBAC or the sidecar; write the status."""
        namespace = bc.metadata.namespace or ""
        result = ReconcileResult()
        observed = await self._observe(bc, result.dependencies)
        verdict = with_task_check(bc, validate(bc, observed))
        verdict = with_problems(verdict, await self._account_problems(bc, result.dependencies))
        updates = list(verdict.updates)
        if verdict.applicable:
            updates += await self._apply(bc, verdict, observed, result.seen)
        sidecar = verdict.model == Model.SIDECAR
        repository = verdict.model != Model.VOLUME_SNAPSHOTTER
        await self.write_status(
            bc, updates, lambda after, _: compute_phase(after, sidecar=sidecar, repository=repository)
        )
        if observed.workload.value is not None and claim_name(bc) is None:
            workload = observed.workload.value
            key = (str(workload.get("kind")), f"{namespace}/{workload['metadata']['name']}")
            result.seen.setdefault(key, workload["metadata"])
        if observed.repository.value is not None:
            repo = observed.repository.value
            key = (names.KIND_REPOSITORY, f"{repo.metadata.namespace}/{repo.metadata.name}")
            result.seen[key] = repo.to_dict()["metadata"]
        return result

    def new_status(self) -> BackupConfigurationStatus:
        """An empty BackupConfiguration status."""
        return BackupConfigurationStatus()

    def transition_events(self, before: list[Condition], after: list[Condition]) -> list[EventSpec]:
        """Stash's events for the BackupConfiguration's condition transitions."""
        return status.transition_events(before, after)

    # ------------------------------------------------------------ observe

    async def _observe(self, bc: BackupConfiguration, deps: set[Dependency]) -> Observed:
        namespace = bc.metadata.namespace or ""
        repo = await observe_repository(self.stash, self.resources, namespace, repository_key(bc), deps)
        workload: Lookup[dict[str, Any]] = Lookup()
        kind = target_kind(bc)
        if kind is not None and bc.spec.target and bc.spec.target.ref and bc.spec.target.ref.name:
            deps.add((kind.kind, namespace, bc.spec.target.ref.name))
            workload = await lookup(self.resources.get_workload(kind, namespace, bc.spec.target.ref.name))
        claim = claim_name(bc) or snapshot_rules.claim_target(bc)
        if claim is not None:  # a pvc-backup or VolumeSnapshotter target: the claim, read like a workload
            deps.add((names.KIND_PERSISTENT_VOLUME_CLAIM, namespace, claim))
            read = self.resources.core.read_namespaced_persistent_volume_claim
            workload = await lookup(call_json(read, claim, namespace))
        return Observed(repo.repository, repo.secret_keys, workload, repo.namespace_labels)

    async def _account_problems(self, bc: BackupConfiguration, deps: set[Dependency]) -> list[str]:
        """A problem naming ``runtimeSettings.pod.serviceAccountName`` when a Task's Jobs are to run as an
        account that does not exist (their pods could never be made); its creation brings ``bc`` back."""
        account = job_rbac.user_account(bc) if runs_as_job(bc) else None
        if account is None:
            return []
        namespace = bc.metadata.namespace or ""
        deps.add(("ServiceAccount", namespace, account))
        try:
            await self.resources.get("ServiceAccount", namespace, account)
        except NotFound:
            return [
                f"spec.runtimeSettings.pod.serviceAccountName: ServiceAccount {namespace}/{account} does not "
                "exist (the Task's Jobs run as it)"
            ]
        return []

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
        if cron.status == ConditionStatus.TRUE and runs_as_job(bc) and repository is not None:
            await self.jobs.ensure_rbac(bc, repository)
        elif not runs_as_job(bc) and names.ANNOTATION_KUBEDUMP_BINDING in (bc.metadata.annotations or {}):
            await self._drop_job_rbac(bc)  # no longer a Task configuration
        if verdict.model != Model.SIDECAR:
            return [cron, ConditionUpdate.remove(ConditionType.DEDICATED_SERVICE_ACCOUNT)]
        if cron.status != ConditionStatus.TRUE:
            return [cron]
        kind, workload = target_kind(bc), observed.workload.value
        assert kind is not None  # validate() checked all three
        assert workload is not None
        assert repository is not None
        account = account_condition(bc, kind.kind, workload)
        likely_new = not reported(bc.status, ConditionType.STASH_SIDECAR_INJECTED)
        problem = name_problem(bc) or await self.identities.ensure(bc, likely_new=likely_new)
        if problem is not None:  # no sidecar without its own identity
            what = f"{kind.kind} {bc.metadata.namespace}/{workload['metadata']['name']}"
            message = f"Failed to inject stash sidecar into {what}. Reason: {problem}"
            failed = ConditionReason.SIDECAR_INJECTION_FAILED
            return [
                cron,
                ConditionUpdate.false(ConditionType.STASH_SIDECAR_INJECTED, failed, message),
                account,
            ]
        injected, written = await self.sidecars.ensure(bc, kind, workload, repository, likely_new=likely_new)
        if written is not None:
            seen[(kind.kind, f"{bc.metadata.namespace}/{written['name']}")] = written
        return [cron, injected, account]

    async def _ensure_cronjob(self, bc: BackupConfiguration) -> ConditionUpdate:
        """The CronJob, then the trigger's RBAC: the API server judges the CronJob before anything is made
        (an invalid schedule makes nothing)."""
        namespace, name = bc.metadata.namespace or "", names.cronjob_name(bc.metadata.name or "")
        if not bc.spec.schedule:
            await self.resources.delete("CronJob", namespace, name)
            return ConditionUpdate.true(
                ConditionType.CRON_JOB_CREATED,
                ConditionReason.CRON_JOB_CREATION_SUCCEEDED,
                "spec.schedule is empty: no CronJob; BackupSessions are only created on demand.",
            )
        likely_new = not reported(bc.status, ConditionType.CRON_JOB_CREATED)
        try:
            await self._write_cronjob(bc, cronjob.build_cronjob(bc, self.settings), likely_new=likely_new)
        except Invalid as exc:
            return ConditionUpdate.false(
                ConditionType.CRON_JOB_CREATED,
                ConditionReason.CRON_JOB_CREATION_FAILED,
                f"Failed to create backup triggering CronJob {namespace}/{name}. Reason: {exc.message}",
            )
        for obj in rbac.trigger_rbac(bc, self.settings):
            shared = obj["kind"] == "ServiceAccount"  # one trigger account for the namespace
            await self.resources.ensure(obj, rbac.up_to_date, likely_new=likely_new and not shared)
        return ConditionUpdate.true(
            ConditionType.CRON_JOB_CREATED,
            ConditionReason.CRON_JOB_CREATION_SUCCEEDED,
            f"Successfully created backup triggering CronJob {namespace}/{name}.",
        )

    async def _write_cronjob(
        self, bc: BackupConfiguration, desired: dict[str, Any], *, likely_new: bool
    ) -> None:
        """Create the CronJob, or patch the existing one when it differs (``likely_new``: create first)."""
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        where = {"object": f"{namespace}/{bc.metadata.name}", "cronjob": name}
        if likely_new:
            with contextlib.suppress(Conflict):  # it exists after all: compared below
                await self.resources.create(desired)
                log.info("cronjob created", extra=where)
                return
        try:
            existing = await self.resources.get("CronJob", namespace, name)
        except NotFound:
            await self.resources.create(desired)
            log.info("cronjob created", extra=where)
            return
        patch = cronjob.cronjob_patch(existing, desired, bc)
        if patch is not None:
            await self.resources.patch_cronjob(namespace, name, patch)
            log.info("cronjob updated", extra=where)

    async def _drop_job_rbac(self, bc: BackupConfiguration) -> None:
        """Remove the Jobs' RBAC of a configuration that no longer runs them, and its record."""
        repo_key = repository_key(bc)
        await self.jobs.cleanup(bc, repo_key[0] if repo_key else None)
        await self.stash.patch(
            BackupConfiguration,
            bc.metadata.namespace,
            bc.metadata.name or "",
            {"metadata": {"annotations": {names.ANNOTATION_KUBEDUMP_BINDING: None}}},
        )

    # ------------------------------------------------------------ deletion

    async def release(self, bc: BackupConfiguration) -> None:
        """Remove the sidecar and the RBAC made for ``bc`` (the CronJob goes by garbage collection)."""
        await self.sidecars.strip(bc)
        repo_key = repository_key(bc)
        for obj in rbac.created_for(bc, repo_key[0] if repo_key else None):
            await self.resources.delete(obj.kind, obj.namespace, obj.name)
        await self.jobs.cleanup(bc, repo_key[0] if repo_key else None)  # whatever Task it named before
