"""``stashlet-agent``: the process the operator puts into pods (sidecar, init-container, Job)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from stashlet.agent.backup.daemon import Sidecar
from stashlet.agent.backup.run import BackupRunner
from stashlet.agent.context import (
    AgentContext,
    InvokerSpec,
    PreparationError,
    agent_host,
    restic_for,
    target_alias,
    target_lease,
)
from stashlet.agent.hosts import HostError, HostIdentity, identify, job_identity
from stashlet.agent.http_api.server import make_app, run_server
from stashlet.agent.job import run as run_job_mode
from stashlet.agent.metrics.report import LatestMetrics, MetricsReporter
from stashlet.agent.restic.errors import PriorityRefused, ResticUnavailable
from stashlet.agent.restic.runner import ResticSettings, inherited_env, restic_version
from stashlet.agent.restore.run import EXIT_FAILED, EXIT_INTERRUPTED, RestoreRunner
from stashlet.agent.restore.scope import JobScope, RestoreScope
from stashlet.agent.settings import AgentSettings, SettingsError, load
from stashlet.agent.wipe import run as run_wipe_mode
from stashlet.api import agent_contract as contract
from stashlet.api import names, restore_jobs
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.durations import parse_duration
from stashlet.api.names import COMPONENT_BACKUP_SESSION, COMPONENT_RESTORE_SESSION
from stashlet.api.restoresession import RestoreSession
from stashlet.kube import logs
from stashlet.kube.client import new_api_client
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.rest import KubeApi

log = logging.getLogger("stashlet.agent")


def restic_settings(settings: AgentSettings) -> ResticSettings:
    """How this agent runs restic: its binary, cache and temporary folders in the agent's tmp volume, and
    how long it waits for a live lock holder (``STASHLET_LOCK_WAIT``) and for a backend restic keeps
    retrying (``STASHLET_BACKEND_GIVE_UP_AFTER``) when a session has no ``timeOut``: Go durations."""
    return ResticSettings(
        binary=settings.restic_binary,
        cache_dir=settings.cache_dir,
        tmp_dir=settings.tmp_dir,
        base_env={**inherited_env(os.environ), "HOME": settings.tmp_dir},
        lock_wait=parse_duration(os.environ.get("STASHLET_LOCK_WAIT", "10m")),
        backend_give_up=parse_duration(os.environ.get("STASHLET_BACKEND_GIVE_UP_AFTER", "5m")),
    )


def _identity(settings: AgentSettings, host: HostIdentity) -> dict[str, str]:
    """Who this agent is, for its start-up log line: invoker, host and target."""
    return {
        "invoker": f"{settings.namespace}/{settings.invoker_name}",
        "host": host.name,
        "target": f"{settings.target_kind}/{settings.target_name}",
    }


async def read_invoker(api: KubeApi, settings: AgentSettings) -> InvokerSpec | None:
    """The spec of this agent's invoker (BackupConfiguration or RestoreSession); None if it does not exist."""
    stash = StashClient(api)
    try:
        if settings.invoker_kind == names.KIND_RESTORE_SESSION:
            return (await stash.get(RestoreSession, settings.namespace, settings.invoker_name)).spec
        return (await stash.get(BackupConfiguration, settings.namespace, settings.invoker_name)).spec
    except NotFound:
        log.warning(
            "invoker not found at start", extra={"invoker": f"{settings.namespace}/{settings.invoker_name}"}
        )
        return None


async def run_sidecar(settings: AgentSettings) -> int:
    """The sidecar until SIGTERM."""
    host = identify(settings.target_kind, settings.pod_name, settings.node_name)
    restic = restic_settings(settings)
    await restic_version(restic)
    api = await new_api_client()
    try:
        spec = await read_invoker(api, settings)
    except KubeError as exc:
        log.error("agent cannot read its invoker", extra={"error": exc.message})
        await api.close()
        return 1
    if spec is not None:  # the alias names the host; each session follows it anew
        host = agent_host(settings, target_alias(spec))
    lease = target_lease(api, settings, "backup") if host.needs_lease else None
    ctx = AgentContext.of_process(
        settings, api, component=COMPONENT_BACKUP_SESSION, host=host, restic=restic, lease=lease
    )
    latest = LatestMetrics()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(latest)
    sidecar = Sidecar(ctx, BackupRunner(ctx, MetricsReporter(ctx, latest)))
    runner = await run_server(
        make_app(
            sidecar,
            metrics_registry=registry,
            api_token_file=Path(settings.api_token_file) if settings.api_token_file else None,
        ),
        settings.listen_host,
        settings.status_port,
    )
    ctx.live.settings_loaded = True
    log.info("agent started", extra={**_identity(settings, host), "status_port": settings.status_port})
    tasks = [asyncio.create_task(sidecar.run(), name="sidecar")]
    if lease is not None:
        tasks.append(asyncio.create_task(lease.run(), name="lease"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is not stopper and task.exception() is not None:
            log.error("agent task failed", exc_info=task.exception())
            code = 1
    log.info("agent stopping", extra={"signal": stop.is_set()})
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if lease is not None:
        await lease.release()
    await runner.cleanup()
    await api.close()
    return code


async def run_job(settings: AgentSettings) -> int:
    """One BackupSession as a Job (``stashlet.agent.job``); the exit status says how it ended."""
    return await run_job_mode(settings, restic_settings(settings))


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
        spec = await read_invoker(api, settings)
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
    log.info("restore started", extra=_identity(settings, host))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stashlet-agent``."""
    try:
        settings = load(sys.argv[1:] if argv is None else argv, os.environ)
    except SettingsError as exc:
        print(f"stashlet-agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        if settings.mode == contract.MODE_SIDECAR:
            return asyncio.run(run_sidecar(settings))
        if settings.mode == contract.MODE_RESTORE:
            return asyncio.run(run_restore(settings))
        if settings.mode == contract.MODE_RESTORE_JOB:
            return asyncio.run(run_restore(settings, os.environ.get(contract.ENV_POD_ORDINAL)))
        if settings.mode == contract.MODE_JOB:
            return asyncio.run(run_job(settings))
        if settings.mode == contract.MODE_WIPE:
            return asyncio.run(run_wipe_mode(settings, restic_settings(settings)))
    except (HostError, ResticUnavailable) as exc:
        log.error("agent cannot start", extra={"error": str(exc)})
        return 2
    log.error("mode not available in this build", extra={"mode": settings.mode})
    return 2


if __name__ == "__main__":
    sys.exit(main())
