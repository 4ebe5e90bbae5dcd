"""``stashlet-agent``: the process the operator puts into pods (sidecar, init-container, Job).

A process runs one mode for its whole life, so the chosen mode's module is imported when :func:`main`
dispatches (:func:`entry_point`, the one place), not at start: a sidecar, one in every backed-up pod,
carries none of the restore, Job, wipe-out or kubedump code it never runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from stashlet.agent.hosts import HostError
from stashlet.agent.restic.errors import ResticUnavailable
from stashlet.agent.settings import MODE_REPO, AgentSettings, SettingsError, load
from stashlet.api import agent_contract as contract
from stashlet.kube import logs

log = logging.getLogger("stashlet.agent")

ModeMain = Callable[[AgentSettings], Coroutine[Any, Any, int]]


def entry_point(mode: str) -> ModeMain | None:
    """The coroutine function that runs ``mode``, its module imported now; None for an unknown mode."""
    if mode == contract.MODE_SIDECAR:
        from stashlet.agent.sidecar import run_sidecar

        return run_sidecar
    if mode == contract.MODE_RESTORE:
        from stashlet.agent.restore_once import run_restore

        return run_restore
    if mode == contract.MODE_RESTORE_JOB:
        from stashlet.agent.restore_once import run_restore

        return lambda settings: run_restore(settings, os.environ.get(contract.ENV_POD_ORDINAL))
    if mode == contract.MODE_JOB:
        from stashlet.agent.context import restic_settings
        from stashlet.agent.job import run as run_job

        return lambda settings: run_job(settings, restic_settings(settings))
    if mode == contract.MODE_WIPE:
        from stashlet.agent.context import restic_settings
        from stashlet.agent.wipe import run as run_wipe

        return lambda settings: run_wipe(settings, restic_settings(settings))
    if mode == contract.MODE_DRILL:
        from stashlet.agent.drill.run import run_drill

        return run_drill
    if mode == MODE_REPO:
        from stashlet.agent.context import restic_settings
        from stashlet.agent.repo_command import run as run_repo_command

        return lambda settings: run_repo_command(settings, restic_settings(settings))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stashlet-agent``."""
    try:
        settings = load(sys.argv[1:] if argv is None else argv, os.environ)
    except SettingsError as exc:
        print(f"stashlet-agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    run = entry_point(settings.mode)
    if run is None:
        log.error("mode not available in this build", extra={"mode": settings.mode})
        return 2
    try:
        return asyncio.run(run(settings))
    except (HostError, ResticUnavailable) as exc:
        log.error("agent cannot start", extra={"error": str(exc)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
