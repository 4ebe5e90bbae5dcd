"""``stashlet-agent drill``: a restore drill of one BackupConfiguration, run as a Job.

The operator runs it on the schedule of the configuration's annotation
``stashlet.dev/restore-drill-schedule`` with ``--invoker-name=<bc>`` and a step:

- ``all`` (no user command): read the configuration and its Repository, restore the latest snapshots into
  the scratch volume and compare them with their listing (:mod:`.restore`), record the verdict
  (:mod:`.record`); exit 0 when it passed, 1 when it failed;
- ``verify`` (the init-container, when there is a user command): the same without recording a pass; it
  leaves the verdict in the agent's temporary volume for the report step. A failure is recorded at once
  and exits 1, so the command never runs on incomplete data;
- ``report`` (beside the user's command container): read that verdict, wait for the command
  (:mod:`.command`), record the verdict with the command's outcome; exit like ``all``.

Where the data goes: ``$STASHLET_DRILL_DIR`` (the operator mounts the scratch emptyDir at
``/restore-drill``), one folder per host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from pathlib import Path

from stashlet.agent.context import AgentContext, restic_settings
from stashlet.agent.drill import verdict as v
from stashlet.agent.drill.command import await_command
from stashlet.agent.drill.manifest import DIFFERS, MISSING, NOT_RESTORED, UNEXPECTED, Mismatch
from stashlet.agent.drill.record import record
from stashlet.agent.drill.restore import DrillRestore, by_host
from stashlet.agent.errors import AgentError
from stashlet.agent.hosts import job_identity
from stashlet.agent.metrics.build import InvokerLabels
from stashlet.agent.restic.runner import Restic
from stashlet.agent.settings import AgentSettings
from stashlet.api import agent_contract as contract
from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

ENV_DRILL_DIR = "STASHLET_DRILL_DIR"
VERDICT_FILE = "drill-verdict.json"
DRILL_RETRY_LOCK = 60.0
"""Seconds restic waits for an exclusive lock (a prune, a check) before the drill fails as locked."""
EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 128 + signal.SIGTERM

_REASONS = {
    NOT_RESTORED: v.REASON_FILE_NOT_RESTORED,
    MISSING: v.REASON_FILE_MISSING,
    UNEXPECTED: v.REASON_UNEXPECTED_FILE,
    DIFFERS: v.REASON_FILE_DIFFERS,
}


def scratch_dir() -> Path:
    """Where the drill restores: ``$STASHLET_DRILL_DIR``, else the scratch volume's mount path."""
    return Path(os.environ.get(ENV_DRILL_DIR) or contract.DRILL_SCRATCH_PATH)


def labels_of(settings: AgentSettings, config: BackupConfiguration | None) -> InvokerLabels:
    """The drill's metric labels, those of its configuration's sessions."""
    repo = config.spec.repository if config is not None else None
    driver = config.spec.driver if config is not None else None
    return InvokerLabels(
        invoker_kind=settings.invoker_kind,
        invoker_name=settings.invoker_name,
        namespace=settings.namespace,
        repository=repo.name if repo is not None else "",
        driver=str(driver or "Restic"),
    )


class Drill:
    """One drill of the configuration this agent was started for."""

    def __init__(self, ctx: AgentContext) -> None:
        """Work with ``ctx``'s clients and settings."""
        self.ctx = ctx
        self.config: BackupConfiguration | None = None

    @property
    def who(self) -> str:
        """``namespace/name`` of the configuration."""
        return self.ctx.object_ref()

    async def read_configuration(self) -> BackupConfiguration | None:
        """The configuration (kept for recording); None when it is gone."""
        try:
            self.config = await self.ctx.stash.get(
                BackupConfiguration, self.ctx.namespace, self.ctx.settings.invoker_name
            )
        except NotFound:
            self.config = None
        return self.config

    async def verify(self, scratch: Path) -> v.Verdict:
        """Restore the latest snapshots into ``scratch`` and compare them with their listing."""
        started = time.monotonic()
        config = await self.read_configuration()
        if config is None:
            return v.failed(self.who, v.REASON_INVOKER_NOT_FOUND, f"BackupConfiguration {self.who} not found")
        ref = config.spec.repository
        if ref is None or not ref.name:
            return v.failed(
                self.who,
                "RepositoryNotFound",
                f"BackupConfiguration {self.who}: spec.repository.name is empty",
            )
        repo_key = f"{ref.namespace or self.ctx.namespace}/{ref.name}"
        try:
            _, restic_repo = await self.ctx.repository(ref.name, ref.namespace)
            restic = Restic(self.ctx.restic_for(config.spec), restic_repo)
            return await self._drill(restic, repo_key, scratch, started)
        except AgentError as exc:
            cause = f"Repository {repo_key}: {exc.message}"
            return v.failed(
                self.who, exc.reason, cause, repository=repo_key, seconds=time.monotonic() - started
            )

    async def _drill(self, restic: Restic, repo_key: str, scratch: Path, started: float) -> v.Verdict:
        snapshots = await restic.snapshots(latest=1, no_lock=True)
        if not snapshots:
            return v.failed(
                self.who,
                v.REASON_NO_SNAPSHOT,
                f"Repository {repo_key} holds no snapshot to restore",
                repository=repo_key,
                seconds=time.monotonic() - started,
            )
        log.info(
            "restore drill started",
            extra={
                "invoker": self.who,
                "repository": repo_key,
                "snapshots": [s.short_id for s in snapshots],
                "scratch": str(scratch),
            },
        )
        drill = DrillRestore(restic, repo_key, self.who)
        drilled, mismatches, count, files, size = [], [], 0, 0, 0
        for host, taken in by_host(snapshots).items():
            result = await drill.host(host, taken, scratch)
            drilled += result.snapshots
            mismatches += result.mismatches
            count += result.mismatch_count
            files, size = files + result.files, size + result.size
        seconds = time.monotonic() - started
        if not mismatches:
            return v.passed(self.who, repo_key, drilled, files, size, seconds)
        first = mismatches[0]
        return v.failed(
            self.who,
            _REASONS.get(first.kind, v.REASON_FILE_DIFFERS),
            _naming(first, drilled),
            repository=repo_key,
            snapshots=drilled,
            problems=[m.describe() for m in mismatches],
            problem_count=count,
            files=files,
            size=size,
            seconds=seconds,
        )

    async def record(self, verdict: v.Verdict) -> None:
        """Record ``verdict`` (Repository, event, metrics)."""
        config = self.config.to_dict() if self.config is not None else None
        await record(
            self.ctx.stash,
            self.ctx.events,
            config,
            verdict,
            labels_of(self.ctx.settings, self.config),
            self.ctx.settings.pushgateway_url,
        )


def _naming(first: Mismatch, drilled: list[v.DrilledSnapshot]) -> str:
    """The failure's cause: the snapshots restored and the first problem."""
    shown = ", ".join(s.describe() for s in drilled)
    return f"snapshot {shown}: {first.describe()}"


def verdict_path(settings: AgentSettings) -> Path:
    """Where the verify step leaves its verdict for the report step (the agent's temporary volume)."""
    return Path(settings.tmp_dir) / VERDICT_FILE


async def run_drill(settings: AgentSettings) -> int:
    """The drill's process (module docstring): 0 when the drill passed, 1 when it failed."""
    restic = dataclasses.replace(restic_settings(settings), retry_lock=DRILL_RETRY_LOCK)
    api = await new_api_client()
    ctx = AgentContext.of_process(
        settings, api, component=names.COMPONENT_RESTORE_DRILL, host=job_identity(), restic=restic
    )
    drill = Drill(ctx)
    task = asyncio.create_task(_steps(drill, settings), name="drill")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log.warning("restore drill interrupted by a signal", extra={"invoker": drill.who})
        return EXIT_INTERRUPTED
    except KubeError as exc:
        log.error(
            "restore drill cannot reach the API server", extra={"invoker": drill.who, "error": exc.message}
        )
        return EXIT_FAILED
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await api.close()


async def _steps(drill: Drill, settings: AgentSettings) -> int:
    if settings.drill_step == contract.DRILL_STEP_REPORT:
        verdict = await _after_command(drill, settings)
    else:
        verdict = await drill.verify(scratch_dir())
        if verdict.passed and settings.drill_step == contract.DRILL_STEP_VERIFY:
            verdict_path(settings).write_text(verdict.to_json())
            log.info("restore drill verified; the command runs next", extra={"invoker": drill.who})
            return EXIT_PASSED
    await drill.record(verdict)
    return EXIT_PASSED if verdict.passed else EXIT_FAILED


async def _after_command(drill: Drill, settings: AgentSettings) -> v.Verdict:
    """The report step: the verify step's verdict with the command's outcome."""
    started = time.monotonic()
    await drill.read_configuration()
    try:
        verdict = v.Verdict.from_json(verdict_path(settings).read_text())
    except (OSError, ValueError, KeyError) as exc:
        return v.failed(drill.who, v.REASON_NO_VERDICT, f"the drill's verify step left no verdict: {exc}")
    outcome = await await_command(drill.ctx.api, settings.namespace, settings.pod_name)
    if outcome.ok:
        log.info("restore drill command passed", extra={"invoker": drill.who})
        return dataclasses.replace(verdict, seconds=verdict.seconds + time.monotonic() - started)
    return verdict.failed_after(outcome.reason, outcome.message, verdict.seconds + time.monotonic() - started)
