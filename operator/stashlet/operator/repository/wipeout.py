"""``spec.wipeOut`` on the server: the finalizer, the wait for the Repository's users, the wipe Job: async.

The decisions and objects are :mod:`stashlet.operator.repository.wipe_job`'s. Events go on the Repository
from the "Repository Controller": ``WipeOutWaiting`` (Warning) while something still uses it,
``WipeOutStarted`` when the Job is made, ``WipeOutJobFailed`` (Warning) when it failed (the Repository
stays: fix the cause and delete the Job to try again, or remove the finalizer to keep the data; the agent's
own ``WipeOutFailed`` says what went wrong), and ``WipedOut`` before the finalizer goes.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, NotFound
from stashlet.kube.events import EventRecorder
from stashlet.operator.core.apiclient import ApiClient, call, call_json
from stashlet.operator.core.resources import Resources
from stashlet.operator.errors import RetryLater
from stashlet.operator.injection.rbac import up_to_date
from stashlet.operator.repository import wipe_job
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

POLL_SECONDS = 3.0
"""How soon a running wipe Job is looked at again."""
WAIT_SECONDS = 10.0
"""How soon a Repository still in use is looked at again (a user's deletion also brings it back)."""
FAILED_SECONDS = 60.0
"""How soon a failed wipe is looked at again (to see whether its Job was deleted for a new try)."""


class WipeOut:
    """Carries out ``spec.wipeOut`` for the Repositories in ``namespaces`` (None: every namespace)."""

    def __init__(
        self,
        api: ApiClient,
        resources: Resources,
        settings: OperatorSettings,
        namespaces: list[str | None],
    ) -> None:
        """Work through ``api`` as ``settings`` say; look for users in ``namespaces``."""
        self.stash = StashClient(api)
        self.batch = client.BatchV1Api(api)
        self.resources = resources
        self.settings = settings
        self.namespaces = namespaces
        self.events = EventRecorder(api, names.COMPONENT_REPOSITORY)

    async def reconcile(self, namespace: str, name: str) -> None:
        """Keep the finalizer as ``wipeOut`` says; on deletion, wipe once nothing uses the Repository."""
        try:
            repo = await self.stash.get(Repository, namespace, name)
        except NotFound:
            return
        held = names.FINALIZER_WIPE_OUT in (repo.metadata.finalizers or [])
        if repo.metadata.deletion_timestamp is None:
            if wipe_job.wants_wipe(repo) != held:
                await self._set_finalizer(repo, wipe_job.wants_wipe(repo))
            return
        if not held:
            return
        if not wipe_job.wants_wipe(repo):
            await self._set_finalizer(repo, False)
            return
        await self._wipe(repo)

    async def _wipe(self, repo: Repository) -> None:
        where = f"{repo.metadata.namespace}/{repo.metadata.name}"
        in_use = await self._users(repo)
        if in_use:
            await self._event(
                repo,
                "Warning",
                "WipeOutWaiting",
                f"Not wiping the backend data of Repository {where} (spec.wipeOut) while it is used by "
                f"{', '.join(in_use)}; it is wiped once they are deleted",
            )
            raise RetryLater(f"Repository {where} is still used by {', '.join(in_use)}", delay=WAIT_SECONDS)
        job = await self._job(repo)
        if job is None:
            for obj in wipe_job.wipe_rbac(repo):
                await self.resources.ensure(obj, up_to_date)
            await call(
                self.batch.create_namespaced_job,
                repo.metadata.namespace,
                wipe_job.wipe_job(repo, self.settings),
            )
            await self._event(
                repo,
                "Normal",
                "WipeOutStarted",
                f"Job {wipe_job.wipe_name(repo)} wipes the backend data of Repository {where}",
            )
            raise RetryLater(f"the wipe of Repository {where} has started", delay=POLL_SECONDS)
        outcome = wipe_job.job_outcome(job)
        if outcome is None:
            raise RetryLater(f"the wipe of Repository {where} is running", delay=POLL_SECONDS)
        if outcome == "Failed":
            await self._event(
                repo,
                "Warning",
                "WipeOutJobFailed",
                f"Job {wipe_job.wipe_name(repo)} failed to wipe the backend data of Repository {where} "
                "(its pod's log says why); the Repository stays: fix the cause and delete the Job to try "
                f"again, or remove the finalizer {names.FINALIZER_WIPE_OUT} to keep the data",
            )
            raise RetryLater(f"the wipe of Repository {where} failed", delay=FAILED_SECONDS)
        await self._event(repo, "Normal", "WipedOut", f"The backend data of Repository {where} was wiped")
        await self._set_finalizer(repo, False)
        log.info("repository wiped", extra={"object": where})

    async def _users(self, repo: Repository) -> list[str]:
        configs: list[BackupConfiguration] = []
        restores: list[RestoreSession] = []
        for namespace in self.namespaces:
            configs += await self.stash.list(BackupConfiguration, namespace)
            restores += await self.stash.list(RestoreSession, namespace)
        live = [c for c in configs if c.metadata.deletion_timestamp is None]
        return wipe_job.users(repo, live, [r for r in restores if r.metadata.deletion_timestamp is None])

    async def _job(self, repo: Repository) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = await call_json(
                self.batch.read_namespaced_job, wipe_job.wipe_name(repo), repo.metadata.namespace
            )
        except NotFound:
            return None
        return job

    async def _set_finalizer(self, repo: Repository, present: bool) -> None:
        others = [f for f in repo.metadata.finalizers or [] if f != names.FINALIZER_WIPE_OUT]
        finalizers = [*others, names.FINALIZER_WIPE_OUT] if present else others
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": repo.metadata.resource_version}}
        try:
            await self.stash.patch(Repository, repo.metadata.namespace, repo.metadata.name or "", patch)
        except Conflict as exc:
            raise RetryLater(
                f"Repository {repo.metadata.namespace}/{repo.metadata.name} changed", delay=0.5
            ) from exc
        except NotFound:
            return

    async def _event(self, repo: Repository, kind: str, reason: str, message: str) -> None:
        await self.events.record(
            repo.to_dict(), "Warning" if kind == "Warning" else "Normal", reason, message
        )
