"""``stashlet-operator``: ``run`` the controller, or ``trigger`` one scheduled backup (the CronJob's job).

Flags fall back to environment variables (``STASHLET_<FLAG>``), so a Deployment can set either. Kubernetes
access: in-cluster config in a pod, else ``--kubeconfig`` / ``$KUBECONFIG``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from stashlet.api import agent_contract, names
from stashlet.kube import logs
from stashlet.kube.config import own_namespace
from stashlet.kube.errors import KubeError
from stashlet.operator import settings as settings_mod
from stashlet.operator.backup.cronjob import ENV_JOB_NAME, FLAG_NAMESPACE
from stashlet.operator.core.apiclient import api_client
from stashlet.operator.health import serve_health
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger("stashlet.operator")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"STASHLET_{name}", default)


def _resources(text: str) -> dict[str, Any] | None:
    """``--agent-resources``: a JSON object (Kubernetes ResourceRequirements), or ``null``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--agent-resources is not JSON: {exc}") from exc
    if value is not None and not isinstance(value, dict):
        raise argparse.ArgumentTypeError('--agent-resources must be a JSON object such as {"limits": {...}}')
    return value


def parser() -> argparse.ArgumentParser:
    """The command line of ``stashlet-operator``."""
    top = argparse.ArgumentParser(prog=agent_contract.OPERATOR_COMMAND, description=__doc__)
    sub = top.add_subparsers(dest="mode", required=True)

    run = sub.add_parser(agent_contract.MODE_RUN, help="watch BackupConfigurations and reconcile them")
    run.add_argument("--namespaces", default=_env("NAMESPACES", ""), help="comma-separated; empty: all")
    run.add_argument("--agent-image", default=_env("AGENT_IMAGE", settings_mod.DEFAULT_AGENT_IMAGE))
    run.add_argument("--operator-image", default=_env("OPERATOR_IMAGE", settings_mod.DEFAULT_OPERATOR_IMAGE))
    run.add_argument("--image-pull-policy", default=_env("IMAGE_PULL_POLICY", "IfNotPresent"))
    run.add_argument("--pushgateway-url", default=_env("PUSHGATEWAY_URL"))
    run.add_argument("--status-port", type=int, default=int(_env("STATUS_PORT") or names.DEFAULT_STATUS_PORT))
    run.add_argument("--agent-log-level", default=_env("AGENT_LOG_LEVEL", "info"))
    run.add_argument(
        "--trigger-service-account",
        default=_env("TRIGGER_SERVICE_ACCOUNT", settings_mod.DEFAULT_TRIGGER_SERVICE_ACCOUNT),
    )
    run.add_argument("--workers", type=int, default=int(_env("WORKERS") or settings_mod.DEFAULT_WORKERS))
    run.add_argument("--resync-seconds", type=float, default=float(_env("RESYNC_SECONDS") or 600))
    run.add_argument(
        "--kubedump-cluster-role",
        default=_env("KUBEDUMP_CLUSTER_ROLE", settings_mod.DEFAULT_KUBEDUMP_CLUSTER_ROLE),
        help="the read-only ClusterRole kubedump Jobs are bound to (made by the Helm chart)",
    )
    run.add_argument(
        "--agent-resources",
        type=_resources,
        default=_env("AGENT_RESOURCES"),  # argparse passes a string default through ``type`` too
        help="JSON: the default resources of the agent containers (requests/limits), "
        "where a configuration's runtimeSettings set none",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=int(_env("HEALTH_PORT") or 0),
        help="serve /healthz and /readyz on this port (0: none)",
    )
    run.add_argument(
        "--job-ttl-seconds",
        type=int,
        default=int(_env("JOB_TTL_SECONDS") or settings_mod.DEFAULT_JOB_TTL_SECONDS),
        help="seconds a finished backup Job is kept (ttlSecondsAfterFinished)",
    )

    run.add_argument(
        "--pickup-deadline-seconds",
        type=float,
        default=float(_env("PICKUP_DEADLINE_SECONDS") or settings_mod.DEFAULT_PICKUP_DEADLINE_SECONDS),
        help="seconds a BackupSession may wait for an agent to take it up before it is failed saying why "
        "(a configuration's annotation stash.appscode.com/pickup-deadline overrides it)",
    )

    trigger = sub.add_parser(agent_contract.MODE_TRIGGER, help="create one BackupSession (the CronJob's job)")
    trigger.add_argument(agent_contract.FLAG_INVOKER_KIND, default=names.KIND_BACKUP_CONFIGURATION)
    trigger.add_argument(agent_contract.FLAG_INVOKER_NAME, required=True)
    trigger.add_argument(FLAG_NAMESPACE, default=None, help="the configuration's namespace (default: own)")

    for mode in (run, trigger):
        mode.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
        mode.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    return top


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    """The frozen settings a ``run`` command line describes."""
    return OperatorSettings(
        namespaces=tuple(ns.strip() for ns in args.namespaces.split(",") if ns.strip()),
        agent_image=args.agent_image,
        operator_image=args.operator_image,
        image_pull_policy=args.image_pull_policy,
        pushgateway_url=args.pushgateway_url or None,
        status_port=args.status_port,
        agent_log_level=args.agent_log_level,
        trigger_service_account=args.trigger_service_account,
        workers=args.workers,
        kubedump_cluster_role=args.kubedump_cluster_role,
        job_ttl_seconds=args.job_ttl_seconds,
        agent_resources=args.agent_resources,
        pickup_deadline_seconds=args.pickup_deadline_seconds,
    )


async def _run(args: argparse.Namespace) -> int:
    from stashlet.operator.autobackup.controller import AutoBackupController  # noqa: PLC0415 - as below
    from stashlet.operator.controller import Controller  # noqa: PLC0415 - only `run` needs the controller

    settings = settings_from(args)
    log.info(
        "operator starting",
        extra={"namespaces": list(settings.namespaces) or "all", "agent_image": settings.agent_image},
    )
    async with api_client(args.kubeconfig) as api, asyncio.TaskGroup() as group:
        controller = Controller(api, settings, resync_seconds=args.resync_seconds)
        auto_backup = AutoBackupController(api, settings, resync_seconds=args.resync_seconds)
        group.create_task(controller.run())
        group.create_task(auto_backup.run())
        if args.health_port:
            ready = {
                "backup and restore watches": controller.all_synced,
                "auto-backup watches": auto_backup.all_synced,
            }
            group.create_task(serve_health(args.health_port, ready))
    return 0


async def _trigger(args: argparse.Namespace) -> int:
    from stashlet.operator.backup.trigger import run_trigger  # noqa: PLC0415 - keep the trigger's start quick

    if args.invoker_kind != names.KIND_BACKUP_CONFIGURATION:
        log.error("unsupported invoker kind", extra={"invoker_kind": args.invoker_kind})
        return 2
    namespace = args.namespace or own_namespace()
    if not namespace:
        log.error("no namespace: pass --namespace or run in a pod")
        return 2
    async with api_client(args.kubeconfig) as api:
        try:
            result = await run_trigger(
                api, namespace, args.invoker_name, job_name=os.environ.get(ENV_JOB_NAME)
            )
        except KubeError as exc:
            log.error(
                "trigger failed",
                extra={
                    "object": f"{namespace}/{args.invoker_name}",
                    "error": exc.message,
                    "status": exc.status,
                },
            )
            return 1
    log.info(
        "trigger done", extra={"object": f"{namespace}/{args.invoker_name}", "outcome": result.outcome.value}
    )
    return 0


def _until_signalled(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main``; SIGTERM and SIGINT cancel it (exit status 0 then)."""

    async def runner() -> int:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            return await task
        log.info("stopped by signal")
        return 0

    return asyncio.run(runner())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stashlet-operator`` console script."""
    args = parser().parse_args(argv)
    logs.configure(args.log_level)
    if args.mode == agent_contract.MODE_RUN:
        return _until_signalled(_run(args))
    return _until_signalled(_trigger(args))


if __name__ == "__main__":
    sys.exit(main())
