"""Task configurations on the server: their Jobs' RBAC, and one Job per BackupSession: async.

The pure halves are :mod:`stashlet.operator.injection.job_rbac`, :mod:`backup_job` and
:mod:`claim_access`.

:meth:`TaskJobs.ensure_job` handles one BackupSession: nothing for a session that ended, of another
kind of configuration, or whose Job exists; a configuration not (yet) Ready for its current generation
asks to be tried again shortly; an Invalid one, a missing read-only ClusterRole (resource dump), a claim
that is gone or that the Job could not mount (``pvc-backup``: :mod:`claim_access`), or a Job the API
server refuses ends the session ``Failed`` with ``BackupExecutorEnsured=False`` (reason
``FailedToEnsureBackupExecutor``, a Warning event with the cause); otherwise the Job is created (pinned to
the claim's node when it must be) and the session gets ``BackupExecutorEnsured=True``. The agent in the Job
writes everything else.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupInvokerPhase
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, BackupSessionStatus
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.names import COMPONENT_BACKUP_SESSION
from stashlet.api.repository import Repository
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, Forbidden, Invalid, NotFound
from stashlet.kube.events import EventRecorder
from stashlet.operator.core.apiclient import ApiClient, call, call_json
from stashlet.operator.core.objects import labels_cover
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.tasks import TaskKind, task_kind
from stashlet.operator.errors import RetryLater
from stashlet.operator.injection import job_rbac
from stashlet.operator.injection.rbac import RepositoryAccess, up_to_date
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job
from stashlet.operator.taskjobs.claim_access import ClaimAccess, claim_access

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""How soon a session's Job is tried again while what it needs is not there yet: its configuration
Ready, its Repository, or the end of an earlier session's Job of the same name."""
FINAL = frozenset({BackupSessionPhase.SUCCEEDED, BackupSessionPhase.FAILED, BackupSessionPhase.SKIPPED})


class TaskJobs:
    """Ensures and removes what Task configurations' Jobs need; creates their Jobs."""

    def __init__(self, api: ApiClient, resources: Resources, settings: OperatorSettings) -> None:
        """Write through ``resources`` and ``api``, as ``settings`` say."""
        self.resources = resources
        self.settings = settings
        self.stash = StashClient(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.events = EventRecorder(api, COMPONENT_BACKUP_SESSION)

    # ------------------------------------------------------------ RBAC of a configuration

    async def ensure_rbac(self, bc: BackupConfiguration, repository: Repository) -> None:
        """The Jobs' ServiceAccount, Roles and bindings; a read binding the target left behind goes."""
        namespace = bc.metadata.namespace or ""
        access = RepositoryAccess.of(repository, namespace)
        for obj in job_rbac.job_rbac(bc, repository=access):
            await self.resources.ensure(obj, up_to_date)
        current: str | None = None
        if job_rbac.needs_read_binding(bc):  # not a claim's Job; not the user's account (theirs to grant)
            binding = job_rbac.read_binding(bc, self.settings)
            if binding["kind"] == "ClusterRoleBinding":
                await self._ensure_cluster_binding(binding)
            else:
                await self.resources.ensure(binding, up_to_date)
            current = job_rbac.binding_ref(binding)
        previous = (bc.metadata.annotations or {}).get(names.ANNOTATION_KUBEDUMP_BINDING)
        if previous == current:
            return
        if previous:
            await self._delete_binding(previous)
        await self.stash.patch(
            BackupConfiguration,
            namespace,
            bc.metadata.name or "",
            {"metadata": {"annotations": {names.ANNOTATION_KUBEDUMP_BINDING: current}}},
        )
        log.info(
            "kubedump read access changed",
            extra={"object": f"{namespace}/{bc.metadata.name}", "binding": current, "previous": previous},
        )

    async def cleanup(self, bc: BackupConfiguration, repository_namespace: str | None) -> None:
        """Delete every Role and binding made for ``bc``'s Jobs (the ServiceAccount goes by GC)."""
        for ref in job_rbac.created_for(bc, repository_namespace):
            await self.resources.delete(ref.kind, ref.namespace, ref.name)
        refs = {job_rbac.binding_ref(job_rbac.read_binding(bc, self.settings))}
        previous = (bc.metadata.annotations or {}).get(names.ANNOTATION_KUBEDUMP_BINDING)
        if previous:
            refs.add(previous)
        for value in sorted(refs):
            await self._delete_binding(value)

    async def _ensure_cluster_binding(self, desired: dict[str, Any]) -> None:
        name = desired["metadata"]["name"]
        try:
            existing = await call_json(self.rbac.read_cluster_role_binding, name)
        except NotFound:
            try:
                await call(self.rbac.create_cluster_role_binding, desired)
            except Conflict:  # made meanwhile: compared next time round
                return
            return
        if (
            existing.get("subjects") == desired["subjects"]
            and existing.get("roleRef") == desired["roleRef"]
            and labels_cover(existing, desired["metadata"]["labels"])
        ):
            return
        if existing.get("roleRef") != desired["roleRef"]:  # roleRef cannot change: make it anew
            await call(self.rbac.delete_cluster_role_binding, name)
            await call(self.rbac.create_cluster_role_binding, desired)
            return
        merged = {**existing, "subjects": desired["subjects"]}
        merged["metadata"] = {**existing["metadata"], "labels": desired["metadata"]["labels"]}
        await call(self.rbac.replace_cluster_role_binding, name, merged)

    async def _delete_binding(self, value: str) -> None:
        ref = job_rbac.parse_binding_ref(value)
        if ref is None:
            return
        if ref.kind == "RoleBinding":
            await self.resources.delete("RoleBinding", ref.namespace, ref.name)
            return
        try:
            await call(self.rbac.delete_cluster_role_binding, ref.name)
        except NotFound:
            return

    # ------------------------------------------------------------ one session's Job

    async def ensure_job(self, namespace: str, name: str) -> None:
        """Create the Job of BackupSession ``namespace/name`` if it needs one (module docstring);
        :class:`~stashlet.operator.errors.RetryLater` while what it needs is not ready."""
        try:
            session = await self.stash.get(BackupSession, namespace, name)
        except NotFound:
            return
        invoker = session.spec.invoker
        if (
            session.status and session.status.phase in FINAL
        ) or invoker.kind != names.KIND_BACKUP_CONFIGURATION:
            return
        try:
            bc = await self.stash.get(BackupConfiguration, namespace, invoker.name)
        except NotFound:
            return
        if not backup_job.runs_as_job(bc) or bc.metadata.deletion_timestamp is not None:
            return
        status = bc.status
        current = status is not None and status.observed_generation == bc.metadata.generation
        if current and status is not None and status.phase == BackupInvokerPhase.INVALID:
            problem = next(
                (c.message for c in status.conditions or [] if c.type == ConditionType.VALIDATION_PASSED),
                None,
            )
            await self._fail(
                session, f"BackupConfiguration {namespace}/{bc.metadata.name} is Invalid: {problem}"
            )
            return
        if not current or status is None or status.phase != BackupInvokerPhase.READY:
            raise RetryLater(
                f"BackupConfiguration {namespace}/{bc.metadata.name} is not Ready yet", delay=RETRY_SECONDS
            )
        repo_ref = bc.spec.repository
        try:
            repository = await self.stash.get(
                Repository,
                (repo_ref.namespace if repo_ref else None) or namespace,
                repo_ref.name if repo_ref else "",
            )
        except NotFound:
            raise RetryLater(
                f"the Repository of {namespace}/{bc.metadata.name} is not there yet", delay=RETRY_SECONDS
            ) from None
        missing = await self._missing_cluster_role() if task_kind(bc) == TaskKind.KUBEDUMP else None
        if missing:
            await self._fail(session, missing)
            return
        node: str | None = None
        claim = backup_job.claim_name(bc)
        if claim is not None:
            access = await self._claim_access(namespace, claim)
            if access.problem is not None:
                why = f"Failed to create backup job for session {namespace}/{name}: {access.problem}"
                await self._fail(session, why)
                return
            node = access.node
        job = backup_job.build_job(bc, session, repository, self.settings, node=node)
        job_name = job["metadata"]["name"]
        try:
            await call(self.batch.create_namespaced_job, namespace, job)
            log.info(
                "backup job created", extra={"object": f"{namespace}/{bc.metadata.name}", "job": job_name}
            )
        except Conflict:
            existing = await call_json(self.batch.read_namespaced_job, job_name, namespace)
            owners = existing.get("metadata", {}).get("ownerReferences") or []
            if not any(o.get("uid") == session.metadata.uid for o in owners):
                why = f"Job {namespace}/{job_name} of an earlier session is on its way out"
                raise RetryLater(why, delay=RETRY_SECONDS) from None
        except Invalid as exc:
            await self._fail(
                session, f"Failed to create backup job {namespace}/{job_name}. Reason: {exc.message}"
            )
            return
        await self._set_ensured(session, f"Successfully created backup job {namespace}/{job_name}.")
        return

    async def _claim_access(self, namespace: str, claim: str) -> ClaimAccess:
        """Where the Job may mount ``claim``: read the claim and the pods of its namespace."""
        try:
            found = await call_json(self.core.read_namespaced_persistent_volume_claim, claim, namespace)
        except NotFound:
            return ClaimAccess(
                problem=f"PersistentVolumeClaim {namespace}/{claim} (spec.target.ref) does not exist"
            )
        pods = await call_json(self.core.list_namespaced_pod, namespace)
        return claim_access(found, pods.get("items") or [])

    async def _missing_cluster_role(self) -> str | None:
        """Why the read-only ClusterRole cannot be used, or None (also when the operator may not look)."""
        role = self.settings.kubedump_cluster_role
        try:
            await call(self.rbac.read_cluster_role, role)
        except NotFound:
            return (
                f"ClusterRole {role} (--kubedump-cluster-role) does not exist: the backup job could not read "
                "what it dumps. Install the Helm chart with kubedump.enabled=true, or create a ClusterRole "
                "with get and list on every resource under that name."
            )
        except Forbidden:
            return None
        return None

    async def _set_ensured(self, session: BackupSession, message: str) -> None:
        def mutate(current: BackupSession) -> bool:
            status = current.status or BackupSessionStatus()
            if any(
                c.type == ConditionType.BACKUP_EXECUTOR_ENSURED and c.status == ConditionStatus.TRUE
                for c in status.conditions or []
            ):
                return False
            _put_condition(status, True, ConditionReason.SUCCESSFULLY_ENSURED_BACKUP_EXECUTOR, message)
            current.status = status
            return True

        await self.stash.update_status(
            BackupSession, session.metadata.namespace, session.metadata.name or "", mutate
        )

    async def _fail(self, session: BackupSession, message: str) -> None:
        """End ``session`` Failed because no Job could be made for it, and say why."""
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""

        def mutate(current: BackupSession) -> bool:
            status = current.status or BackupSessionStatus()
            if status.phase in FINAL:
                return False
            _put_condition(status, False, ConditionReason.FAILED_TO_ENSURE_BACKUP_EXECUTOR, message)
            status.phase = BackupSessionPhase.FAILED
            current.status = status
            return True

        updated = await self.stash.update_status(BackupSession, namespace, name, mutate)
        log.warning("backup job not created", extra={"object": f"{namespace}/{name}", "error": message})
        reason = ConditionReason.FAILED_TO_ENSURE_BACKUP_EXECUTOR.value
        await self.events.record(updated.to_dict(), "Warning", reason, message)


def _put_condition(status: BackupSessionStatus, ok: bool, reason: ConditionReason, message: str) -> None:
    now = now_utc()
    kept = [c for c in status.conditions or [] if c.type != ConditionType.BACKUP_EXECUTOR_ENSURED]
    kept.append(
        Condition(
            type=ConditionType.BACKUP_EXECUTOR_ENSURED.value,
            status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
            reason=reason.value,
            message=message,
            last_transition_time=now,
        )
    )
    status.conditions = kept
