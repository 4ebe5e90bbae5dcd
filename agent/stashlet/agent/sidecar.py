"""The sidecar process (mode ``sidecar``): the BackupSession watch, the HTTP API and, for a target whose
replicas share one host, the Lease, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from prometheus_client import CollectorRegistry

from stashlet.agent.backup.daemon import Sidecar
from stashlet.agent.backup.run import BackupRunner
from stashlet.agent.context import (
    AgentContext,
    agent_host,
    identity_fields,
    read_invoker,
    restic_settings,
    target_alias,
)
from stashlet.agent.hosts import identify
from stashlet.agent.http_api.server import make_app, run_server
from stashlet.agent.metrics.report import LatestMetrics, MetricsReporter
from stashlet.agent.restic.runner import restic_version
from stashlet.agent.settings import AgentSettings
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.names import COMPONENT_BACKUP_SESSION
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError

log = logging.getLogger("stashlet.agent")


async def run_sidecar(settings: AgentSettings) -> int:
    """The sidecar until SIGTERM."""
    host = identify(settings.target_kind, settings.pod_name, settings.node_name)
    restic = restic_settings(settings)
    await restic_version(restic)
    api = await new_api_client()
    try:
        spec = await read_invoker(api, settings, BackupConfiguration)
    except KubeError as exc:
        log.error("agent cannot read its invoker", extra={"error": exc.message})
        await api.close()
        return 1
    if spec is not None:  # the alias names the host; each session follows it anew
        host = agent_host(settings, target_alias(spec))
    ctx = AgentContext.of_process(settings, api, component=COMPONENT_BACKUP_SESSION, host=host, restic=restic)
    latest = LatestMetrics()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(latest)
    backups = BackupRunner(ctx, MetricsReporter(ctx, latest))
    sidecar = Sidecar(ctx, backups, warm_up=backups.retention.warm_up)
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
    log.info("agent started", extra={**identity_fields(settings, host), "status_port": settings.status_port})
    tasks = [asyncio.create_task(sidecar.run(), name="sidecar")]
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
    await runner.cleanup()
    await api.close()
    return code
