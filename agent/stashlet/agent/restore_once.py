"""Restore this host once, then exit (modes ``restore``, the ``stash-init`` init-container, and
``restore-job``, one restore Job of a RestoreSession): 0 only when its host Succeeded."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

from stashlet.agent.context import (
    AgentContext,
    PreparationError,
    agent_host,
    identity_fields,
    read_invoker,
    restic_for,
    restic_settings,
    target_alias,
)
from stashlet.agent.hosts import HostIdentity, identify, job_identity
from stashlet.agent.restic.errors import PriorityRefused, ResticUnavailable
from stashlet.agent.restic.runner import restic_version
from stashlet.agent.restore.run import EXIT_FAILED, EXIT_INTERRUPTED, RestoreRunner
from stashlet.agent.restore.scope import JobScope, RestoreScope
from stashlet.agent.settings import AgentSettings
from stashlet.api import agent_contract as contract
from stashlet.api import restore_jobs
from stashlet.api.names import COMPONENT_RESTORE_SESSION
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError

log = logging.getLogger("stashlet.agent")


RESTORE_RETRY_LOCK = 60.0
"""Seconds restic waits for an exclusive lock (a prune) to go before a restore fails as locked."""


def restore_job_host(alias: str | None, ordinal: str | None) -> HostIdentity:
    """The host a restore Job plays: ``host-<ordinal>`` (``<alias>-<ordinal>``) when the operator gave it
    an ordinal (``POD_ORDINAL``), else ``host-0`` (the alias); never a Lease."""
    if ordinal is None or not ordinal.isdigit():
        return job_identity(alias)
    return HostIdentity(restore_jobs.job_host(alias, int(ordinal)), needs_lease=False)


async def run_restore(settings: AgentSettings, ordinal: str | None = None) -> int:
    """The init-container (or, in mode ``restore-job``, a restore Job for ``ordinal``): restore this host
    once, then exit (0 only when its host Succeeded)."""
    job = settings.mode == contract.MODE_RESTORE_JOB
    host = (
        restore_job_host(None, ordinal)
        if job
        else identify(settings.target_kind, settings.pod_name, settings.node_name)
    )
    restic = dataclasses.replace(restic_settings(settings), retry_lock=RESTORE_RETRY_LOCK)
    startup_error = None
    try:
        await restic_version(restic)
    except ResticUnavailable as exc:  # recorded as this host's failure, so the session says why
        startup_error = PreparationError(exc.message, reason=exc.reason)
    api = await new_api_client()
    try:
        spec = await read_invoker(api, settings, RestoreSession)
    except KubeError as exc:
        log.error("restore cannot read its RestoreSession", extra={"error": exc.message})
        await api.close()
        return EXIT_FAILED
    if spec is not None:  # the alias names the host (and so the default sourceHost)
        alias = target_alias(spec)
        host = restore_job_host(alias, ordinal) if job else agent_host(settings, alias)
        try:
            restic = restic_for(restic, spec)
        except PriorityRefused as exc:
            startup_error = startup_error or PreparationError(exc.message, reason=exc.reason)
    ctx = AgentContext.of_process(
        settings, api, component=COMPONENT_RESTORE_SESSION, host=host, restic=restic
    )
    ctx.live.settings_loaded = True
    log.info("restore started", extra=identity_fields(settings, host))
    scope: RestoreScope | None = JobScope(settings.target_name) if job else None
    runner = RestoreRunner(ctx, scope=scope, startup_error=startup_error)
    task = asyncio.create_task(runner.run(), name="restore")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        code = await task
    except asyncio.CancelledError:
        log.warning("restore interrupted by a signal", extra={"invoker": ctx.object_ref()})
        code = EXIT_INTERRUPTED
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await api.close()
    log.info("restore finished", extra={"invoker": ctx.object_ref(), "exit_code": code})
    return code
