"""A Job-restored RestoreSession on the server: its claim target, its claims and its Jobs: async.

The pure halves are :mod:`.claims`, :mod:`.restore_job` and :mod:`stashlet.operator.injection.restore_rbac`.

Before validation the reconciler reads the claim a ``pvc-restore`` session names
(:meth:`RestoreJobs.claim`) and has the API server judge every claim the templates would make in a dry
run (:meth:`RestoreJobs.claim_problems`): what it refuses as invalid makes the session ``Invalid``,
naming ``spec.target.volumeClaimTemplates[i]``.

Once the session is valid, :meth:`RestoreJobs.ensure` (nothing once the session has ended, nothing for
a host already done):

1. checks that every StorageClass the templates name exists (a claim naming a missing one would wait
   for ever);
2. the Jobs' ServiceAccount, Roles and RoleBindings;
3. creates each ordinal's claims (one that exists is used as it is);
4. creates one Job per host whose Job is missing.

It says how that went as ``RestoreExecutorEnsured``: True naming the Jobs, or False with reason
``FailedToEnsureRestoreExecutor`` naming the template or Job and the API server's reason, which ends the
session ``Failed`` (:func:`stashlet.operator.restore.validation.restore_phase`) instead of leaving it
waiting. The agent in each Job writes everything else.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names, restore_jobs
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.repository import Repository
from stashlet.api.restoresession import HostRestorePhase, RestorePhase, RestoreSession
from stashlet.kube.errors import Conflict, Forbidden, KubeError, NotFound
from stashlet.operator.core.apiclient import ApiClient, call, call_json
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.resources import Resources
from stashlet.operator.errors import RefuseInput
from stashlet.operator.injection import restore_rbac
from stashlet.operator.injection.rbac import RepositoryAccess, up_to_date
from stashlet.operator.restore import claims, restore_job
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

FINAL = frozenset({RestorePhase.SUCCEEDED, RestorePhase.FAILED, RestorePhase.UNKNOWN})
DONE_HOSTS = frozenset({HostRestorePhase.SUCCEEDED, HostRestorePhase.FAILED, HostRestorePhase.UNKNOWN})


class ExecutorFailed(RefuseInput):
    """A claim or Job could not be made; the message names the field and the API server's reason. It is
    reported on the session (``RestoreExecutorEnsured`` False), which ends Failed."""


class RestoreJobs:
    """Reads and makes what a Job-restored RestoreSession needs."""

    def __init__(self, api: ApiClient, resources: Resources, settings: OperatorSettings) -> None:
        """Write through ``api`` and ``resources``, as ``settings`` say."""
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.resources = resources
        self.settings = settings

    # ------------------------------------------------------------ before validation

    async def claim(self, namespace: str, name: str) -> dict[str, Any]:
        """The claim a session names; NotFound when it does not exist."""
        return await call_json(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    async def claim_problems(self, rs: RestoreSession) -> tuple[str, ...]:
        """What the API server refuses, in a dry run, of the claims the templates make (one problem per
        template)."""
        problems: dict[int, str] = {}
        namespace = rs.metadata.namespace or ""
        for ordinal in restore_jobs.ordinals(rs):
            for index, claim in claims.claims(rs, ordinal):
                if index in problems:
                    continue
                try:
                    await call(
                        self.core.create_namespaced_persistent_volume_claim, namespace, claim, dry_run="All"
                    )
                except Conflict:
                    continue  # it exists: used as it is
                except KubeError as exc:
                    if exc.status not in (400, 422):
                        continue  # not the claim's fault; the real creation says more
                    problems[index] = (
                        f"{claims.TEMPLATES}[{index}]: the API server refuses PersistentVolumeClaim "
                        f"{namespace}/{claim['metadata']['name']}: {exc.message}"
                    )
        return tuple(problems[i] for i in sorted(problems))

    # ------------------------------------------------------------ after validation

    async def ensure(self, rs: RestoreSession, repository: Repository) -> ConditionUpdate | None:
        """Make the claims and Jobs (module docstring); the ``RestoreExecutorEnsured`` update, or None
        once the session has ended."""
        status = rs.status
        if status is not None and status.phase in FINAL:
            return None
        try:
            await self._check_storage_classes(rs)
            access = RepositoryAccess.of(repository, rs.metadata.namespace or "")
            for obj in restore_rbac.job_rbac(rs, access):
                await self.resources.ensure(obj, up_to_date)
            made = await self._make(rs, repository)
        except ExecutorFailed as exc:
            log.warning(
                "restore executor not ensured",
                extra={"object": f"{rs.metadata.namespace}/{rs.metadata.name}", "error": str(exc)},
            )
            return ConditionUpdate.false(
                ConditionType.RESTORE_EXECUTOR_ENSURED,
                ConditionReason.FAILED_TO_ENSURE_RESTORE_EXECUTOR,
                str(exc),
            )
        return ConditionUpdate.true(
            ConditionType.RESTORE_EXECUTOR_ENSURED,
            ConditionReason.SUCCESSFULLY_ENSURED_RESTORE_EXECUTOR,
            f"Successfully created restore job(s) {', '.join(made)}.",
        )

    async def _check_storage_classes(self, rs: RestoreSession) -> None:
        for index, name in claims.storage_classes(rs):
            try:
                await call(self.storage.read_storage_class, name)
            except NotFound:
                raise ExecutorFailed(
                    f"{claims.TEMPLATES}[{index}].spec.storageClassName: StorageClass {name} does not exist; "
                    "its claims would never be provisioned"
                ) from None
            except Forbidden:
                return  # the operator may not look: the claims say it themselves

    async def _make(self, rs: RestoreSession, repository: Repository) -> list[str]:
        """Each pending host's claims, then its Job; the names of all the session's Jobs."""
        namespace = rs.metadata.namespace or ""
        hosts = restore_job.job_hosts(rs)
        done = {
            hosts[s.hostname]
            for s in (rs.status.stats if rs.status is not None else None) or []
            if s.phase in DONE_HOSTS and s.hostname in hosts
        }
        made: list[str] = []
        jobs = restore_job.jobs(rs, repository, self.settings)
        for ordinal, job in zip(restore_jobs.ordinals(rs), jobs, strict=True):
            job_name = job["metadata"]["name"]
            made.append(f"{namespace}/{job_name}")
            if job_name in done:
                continue
            for index, claim in claims.claims(rs, ordinal):
                await self._create_claim(index, claim)
            await self._create_job(job)
        return made

    async def _create_claim(self, index: int, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        try:
            await call(self.core.create_namespaced_persistent_volume_claim, meta["namespace"], claim)
            log.info("restore claim created", extra={"claim": f"{meta['namespace']}/{meta['name']}"})
        except Conflict:
            return  # exists: restored into as it is
        except KubeError as exc:
            if exc.status >= 500:
                raise
            raise ExecutorFailed(
                f"{claims.TEMPLATES}[{index}]: Failed to create PersistentVolumeClaim "
                f"{meta['namespace']}/{meta['name']}. Reason: {exc.message}"
            ) from exc

    async def _create_job(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        try:
            await call(self.batch.create_namespaced_job, meta["namespace"], job)
            log.info("restore job created", extra={"job": f"{meta['namespace']}/{meta['name']}"})
        except Conflict:
            return
        except KubeError as exc:
            if exc.status >= 500:
                raise
            raise ExecutorFailed(
                f"Failed to create restore job {meta['namespace']}/{meta['name']}. Reason: {exc.message}"
            ) from exc


def claim_dependency(rs: RestoreSession) -> tuple[str, str, str] | None:
    """The claim a session names, as a dependency (its creation or deletion reconciles the session)."""
    target = rs.spec.target
    if not restore_jobs.names_claim(rs) or target is None or target.ref is None or not target.ref.name:
        return None
    return (names.KIND_PERSISTENT_VOLUME_CLAIM, rs.metadata.namespace or "", target.ref.name)
