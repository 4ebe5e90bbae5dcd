"""``stashlet-agent job``: one BackupSession of a Task-based BackupConfiguration, run as a Kubernetes Job.

The operator creates one Job per BackupSession of a configuration whose task is the resource dump
(``kubedump-backup-0.1.0``) or a stand-alone PersistentVolumeClaim (``pvc-backup``) and runs
``stashlet-agent job --invoker-kind=BackupConfiguration --invoker-name=<bc> --backup-session=<session>``
with a service account that may write the session's and the Repository's status (and, for the dump, read
what it dumps). The job:

- ends at once with the session's result when the session has already ended (a Job pod started again
  after the end does nothing twice);
- paused configuration: the session ends ``Skipped`` with the sidecar's Warning event, by the very
  code the sidecar runs (the opt-in annotation ``stash.appscode.com/backup-while-paused`` works here too);
- otherwise marks its host (``host-0``, or ``spec.target.alias`` when set) Running, then
  - resource dump: dumps the resources (:mod:`stashlet.agent.kubedump.dump`) into
    ``<tmp-dir>/kubedump`` (a fixed path, so restic finds the previous snapshot as parent), records the
    dump's report (condition ``ResourcesDumped``, and a Warning event ``ResourcesSkipped`` naming any
    API group or resource left out), and backs the folder up;
  - ``pvc-backup``: backs up the claim the Job mounts, as Stash's function does: ``spec.target.paths``
    (default: the mount path, Stash's TARGET_MOUNT_PATH ``/stash-data`` or
    ``spec.target.volumeMounts[0].mountPath``) without ``spec.target.exclude`` and with
    ``spec.target.args``;

  both with :class:`BackupRunner`: the same restic, host stats, retention, integrity check, Repository
  status and metrics as a volume backup;
- deletes the dump folder (it holds Secrets in clear) however the session ended;
- enforces ``spec.timeOut`` and, on SIGTERM, interrupts restic and records the host ``Failed``.

Exit status: 0 when the session Succeeded or was Skipped, 1 when it Failed (or its end could not be
recorded), 2 when the job could not start (no ``--backup-session``, no restic), 143 when stopped by
SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.daemon import (
    REASON_DEADLINE,
    REASON_INTERRUPTED,
    Sidecar,
    wants_backup_while_paused,
)
from stashlet.agent.backup.plan import BackupPlan
from stashlet.agent.backup.run import BackupRunner, session_deadline
from stashlet.agent.context import AgentContext
from stashlet.agent.errors import RefuseInput
from stashlet.agent.hosts import job_identity
from stashlet.agent.kubedump.dump import (
    DumpError,
    DumpFailed,
    DumpOptions,
    DumpReport,
    DumpScope,
    dump,
    is_kubedump_task,
    options_from_params,
    scope_of,
)
from stashlet.agent.metrics.report import LatestMetrics, MetricsReporter, merge_outcomes
from stashlet.agent.restic.runner import ResticSettings, restic_version
from stashlet.agent.settings import AgentSettings
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase, HostBackupPhase, HostBackupStats
from stashlet.api.common import TargetRef
from stashlet.api.names import (
    COMPONENT_BACKUP_SESSION,
    KIND_PERSISTENT_VOLUME_CLAIM,
    PVC_BACKUP_TASKS,
    target_mount_path,
)
from stashlet.api.timestamps import now_utc
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

JOB_HOST = job_identity()
"""A Job backs up as one host, like a Deployment's replica: ``host-0``, or the configuration's
``spec.target.alias`` once the configuration is read."""

KIND_CLUSTER = "Cluster"

DUMP_FOLDER = "kubedump"

CONDITION_RESOURCES_DUMPED = "ResourcesDumped"
REASON_ALL_DUMPED = "AllResourcesDumped"
REASON_SOME_SKIPPED = "SomeResourcesSkipped"
EVENT_RESOURCES_SKIPPED = "ResourcesSkipped"
REASON_UNSUPPORTED_TASK = "UnsupportedTask"
REASON_INVOKER_NOT_FOUND = "InvokerNotFound"
REASON_DUMP_FAILED = "DumpFailed"
REASON_INVALID_TARGET = "InvalidTarget"

MAX_MESSAGE = 2000
"""Longest condition or event message written (the full report is in the log)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGTERM


def exit_code(phase: BackupSessionPhase | None) -> int:
    """The process's exit status for a session that ended in ``phase``."""
    if phase in (BackupSessionPhase.SUCCEEDED, BackupSessionPhase.SKIPPED):
        return EXIT_OK
    return EXIT_FAILED


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class TaskRefused(RefuseInput):
    """The configuration names a Task or a target the job does not run; the message names the field."""


@dataclass(frozen=True)
class TaskWork:
    """What the job does for one session of its Task: the target it reports, and the backup's plan, made
    once the host is marked Running (the resource dump is taken then)."""

    ref: TargetRef
    prepare: Callable[[str], Awaitable[BackupPlan]]


def is_claim_task(config: BackupConfiguration) -> bool:
    """True when ``config`` names the stand-alone PersistentVolumeClaim task."""
    task = config.spec.task
    return task is not None and (task.name or "") in PVC_BACKUP_TASKS


def claim_plan(config: BackupConfiguration) -> BackupPlan:
    """The plan of a ``pvc-backup`` session: its claim as the target; ``spec.target.paths`` (default: where
    the claim is mounted), ``exclude`` and ``args``; TaskRefused when the target is not a claim."""
    target = config.spec.target
    ref = target.ref if target is not None else None
    where = f"BackupConfiguration {config.metadata.namespace}/{config.metadata.name}"
    if target is None or ref is None or ref.kind != KIND_PERSISTENT_VOLUME_CLAIM or not ref.name:
        raise TaskRefused(
            f"{where}: spec.target.ref must name the PersistentVolumeClaim that task pvc-backup backs up",
            reason=REASON_INVALID_TARGET,
        )
    mounted = target_mount_path([m.mount_path for m in target.volume_mounts or []])
    return BackupPlan(
        ref=TargetRef(api_version=ref.api_version or "v1", kind=ref.kind, name=ref.name),
        total_hosts=1,
        paths=list(target.paths or [mounted]),
        excludes=list(target.exclude or []),
        args=list(target.args or []),
    )


class BackupJob:
    """Runs one BackupSession of a Task configuration (module docstring)."""

    def __init__(self, ctx: AgentContext, runner: BackupRunner) -> None:
        """Work with ``ctx``'s clients; ``runner`` backs the dump up."""
        self.ctx = ctx
        self.runner = runner
        # The session flow the sidecar runs (skip when paused, fail this host, the deadline): reused,
        # not copied. See the report of issue 7 for the refactor that makes these public functions.
        self.flow = Sidecar(ctx, runner)

    @property
    def dump_dir(self) -> Path:
        """Where the resources are dumped: fixed, so restic's parent snapshot is found by path."""
        return Path(self.ctx.settings.tmp_dir) / DUMP_FOLDER

    async def run(self, name: str) -> BackupSessionPhase | None:
        """Handle session ``name``; the phase it ended in (None when it does not exist)."""
        ctx = self.ctx
        try:
            session = await ctx.stash.get(BackupSession, ctx.namespace, name)
        except NotFound:
            log.error("backup session not found", extra={"session": f"{ctx.namespace}/{name}"})
            return None
        if ss.is_final(session):
            phase = session.status.phase if session.status else None
            log.info(
                "backup session already ended", extra={"session": f"{ctx.namespace}/{name}", "phase": phase}
            )
            return phase
        ref = TargetRef(kind=KIND_CLUSTER)  # until the configuration says otherwise
        try:
            config = await ctx.stash.get(BackupConfiguration, ctx.namespace, ctx.settings.invoker_name)
        except NotFound:
            message = f"BackupConfiguration {ctx.object_ref()} not found"
            await self.flow._fail(session, ref, REASON_INVOKER_NOT_FOUND, message, end_session=True)
            return await self._phase(name)
        ctx.follow_alias(config.spec)
        ctx.live.paused = bool(config.spec.paused)
        if config.spec.paused and not wants_backup_while_paused(session):
            await self.flow._skip(session)
            return BackupSessionPhase.SKIPPED
        try:
            task = self.plan(config)
            ref = task.ref
        except (DumpError, TaskRefused) as exc:
            await self._fail(session, config, ref, exc.reason, exc.message)
            return await self._phase(name)
        deadline = session_deadline(session, config)
        try:
            work = self._backup(session, config, task)
            if deadline is None:
                await work
            else:
                await asyncio.wait_for(work, max(0.0, deadline - time.time()))
        except TimeoutError:
            message = f"the session did not finish within its timeOut ({config.spec.time_out})"
            await self._fail(session, config, ref, REASON_DEADLINE, message)
        except (DumpError, DumpFailed) as exc:
            await self._fail(session, config, ref, exc.reason, exc.message)
        except asyncio.CancelledError:
            await asyncio.shield(
                self.flow._fail(
                    session,
                    ref,
                    REASON_INTERRUPTED,
                    f"the backup job {ctx.settings.pod_name} was stopped (SIGTERM) mid-backup",
                )
            )
            raise
        finally:
            shutil.rmtree(self.dump_dir, ignore_errors=True)
        return await self._phase(name)

    def plan(self, config: BackupConfiguration) -> TaskWork:
        """What the configuration's Task does; DumpError or TaskRefused when it asks for something the
        job does not do."""
        if is_claim_task(config):
            plan = claim_plan(config)

            async def backup_claim(_: str) -> BackupPlan:
                return plan

            return TaskWork(plan.ref, backup_claim)
        if not is_kubedump_task(config):
            task = config.spec.task.name if config.spec.task else None
            raise TaskRefused(
                f"BackupConfiguration {self.ctx.object_ref()}: task {task!r} is not run by the job "
                "model (it runs the resource dump task kubedump-backup-0.1.0 and pvc-backup)",
                reason=REASON_UNSUPPORTED_TASK,
            )
        params = config.spec.task.params if config.spec.task else None
        scope, options = scope_of(config), options_from_params(params)

        async def dump_then_back_up(session: str) -> BackupPlan:
            await self._dump(session, scope, options)
            return BackupPlan(ref=scope.ref(), total_hosts=1, paths=[str(self.dump_dir)])

        return TaskWork(scope.ref(), dump_then_back_up)

    async def _backup(self, session: BackupSession, config: BackupConfiguration, task: TaskWork) -> None:
        ctx = self.ctx
        name = session.metadata.name or ""
        running = HostBackupStats(hostname=ctx.host.name, phase=HostBackupPhase.RUNNING)
        await ctx.stash.update_status(
            BackupSession, ctx.namespace, name, lambda s: ss.put_host(s, task.ref, 1, running, now_utc())
        )
        await self.runner.run(session, config, await task.prepare(name))

    async def _dump(self, name: str, scope: DumpScope, options: DumpOptions) -> None:
        """Dump the resources into :attr:`dump_dir` and record the report on session ``name``."""
        try:
            report = await dump(self.ctx.api, scope, options, self.dump_dir)
        except (KubeError, OSError, ValueError) as exc:
            raise DumpFailed(f"dumping the resources failed: {exc}", reason=REASON_DUMP_FAILED) from exc
        await self._record_report(name, report)

    async def _fail(
        self, session: BackupSession, config: BackupConfiguration, ref: TargetRef, reason: str, message: str
    ) -> None:
        """End the session Failed as the sidecar does, then publish the host's and the session's metrics
        (the runner publishes them when it ran; here it did not, and a failure must show in Prometheus)."""
        await self.flow._fail(session, ref, reason, message, end_session=True)
        try:
            ended = await self.ctx.stash.get(BackupSession, self.ctx.namespace, session.metadata.name or "")
        except KubeError as exc:
            log.error("could not read the failed session", extra={"error": exc.message})
            return
        entry = ss.host_entry(ended, ref, self.ctx.host.name)
        metrics = self.runner.metrics
        pushes = [await metrics.host_backup(config, ref, entry)] if entry is not None else []
        pushes.append(await metrics.session(ended, config))
        pushed = merge_outcomes(pushes)
        if pushed is None:
            return
        updated = await self.ctx.stash.update_status(
            BackupSession,
            self.ctx.namespace,
            ended.metadata.name or "",
            lambda s: ss.apply_push_condition(s, pushed),
        )
        if not pushed.ok:
            await self.ctx.events.record(updated.to_dict(), "Warning", "MetricsPushFailed", pushed.message)

    async def _record_report(self, name: str, report: DumpReport) -> None:
        ctx = self.ctx
        ok = report.complete
        message = _shorten(report.summary())
        updated = await ctx.stash.update_status(
            BackupSession,
            ctx.namespace,
            name,
            lambda s: ss.set_condition(
                s,
                CONDITION_RESOURCES_DUMPED,
                ok,
                REASON_ALL_DUMPED if ok else REASON_SOME_SKIPPED,
                message,
                now_utc(),
            ),
        )
        if not ok:
            await ctx.events.record(updated.to_dict(), "Warning", EVENT_RESOURCES_SKIPPED, message)

    async def _phase(self, name: str) -> BackupSessionPhase | None:
        try:
            session = await self.ctx.stash.get(BackupSession, self.ctx.namespace, name)
        except NotFound:
            return None
        return session.status.phase if session.status else None


async def run(settings: AgentSettings, restic: ResticSettings) -> int:
    """The job mode's process: one session, then the exit status (module docstring)."""
    name = settings.backup_session
    if not name:
        log.error("the job mode needs --backup-session", extra={"invoker": settings.invoker_name})
        return EXIT_USAGE
    await restic_version(restic)
    api = await new_api_client()
    try:
        ctx = AgentContext.of_process(
            settings, api, component=COMPONENT_BACKUP_SESSION, host=JOB_HOST, restic=restic
        )
        job = BackupJob(ctx, BackupRunner(ctx, MetricsReporter(ctx, LatestMetrics())))
        log.info(
            "backup job started",
            extra={"invoker": ctx.object_ref(), "session": f"{settings.namespace}/{name}"},
        )
        task = asyncio.create_task(job.run(name), name="backup-job")
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def stop() -> None:
            stopped.set()
            task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        try:
            phase = await task
        except asyncio.CancelledError:
            if not stopped.is_set():
                raise
            log.warning("backup job stopped by a signal", extra={"session": f"{settings.namespace}/{name}"})
            return EXIT_INTERRUPTED
        except (KubeError, OSError) as exc:
            # The API server could not record the session's end: the Job fails, and says why.
            log.error(
                "backup job could not complete its session",
                extra={"session": f"{settings.namespace}/{name}", "error": str(exc)},
            )
            return EXIT_FAILED
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    finally:
        await api.close()
    log.info("backup job finished", extra={"session": f"{settings.namespace}/{name}", "phase": phase})
    return exit_code(phase)
