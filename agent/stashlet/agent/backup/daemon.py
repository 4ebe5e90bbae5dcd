"""``stashlet-agent sidecar``: lives in the workload's pod and backs it up when a BackupSession asks.

- On start it ends sessions this host left ``Running`` (a dead agent's) as ``Failed``.
- It lists, then watches, the BackupSessions of its invoker (the API server selects them by
  ``spec.invoker``, the CRD's ``selectableFields``, so hand-made sessions without labels are seen too;
  where the server cannot, it watches the namespace's and selects here: see :mod:`stashlet.kube.watch`)
  and handles them one at a time, in the order they appeared, each once per host.
- Paused configuration: the session ends ``Skipped`` with a Warning event ``BackupSessionSkipped``
  ("Backup Configuration is paused"), unless the session carries the opt-in annotation
  ``stash.appscode.com/backup-while-paused: "true"``.
- Deployment/ReplicaSet: each session is backed up by the replica that takes the workload's backup
  Lease first (the others find the host done); StatefulSet: every pod, one at a time, each holding the
  Lease for its turn; DaemonSet: every node. The Lease is held only while a session is worked on, so an
  idle agent sends the API server nothing but its watch. A replica waiting for its turn tries the Lease
  every :data:`TURN_RENEW_EVERY` seconds and learns from its session watch that the session ended
  (``GET /status`` ``waitingForTurn`` says it waits). The host name follows the configuration's
  ``spec.target.alias`` as it is when a session is handled (see :mod:`stashlet.agent.hosts`).
- ``spec.timeOut`` is enforced: past the deadline restic is interrupted and the host is Failed.
- Once the watch has listed, the retention scope this host forgets in is listed in the background
  (the ``warm_up`` given: :meth:`~stashlet.agent.backup.retention_step.RetentionStep.warm_up`), so the
  first session need not
  run ``restic forget`` to learn it; readiness never waits for it, and a session about to run cancels
  it (the session then runs ``forget`` as it would have): no session waits for the warm-up, and the
  warm-up never overlaps a session's restic.
- The session's independent reads (the session, the configuration, the workload) go out at once; after a
  session has reported, the Repository's upkeep (``restic check`` when due, its size and count: see
  :mod:`stashlet.agent.backup.upkeep`) runs outside the session's timeOut and before the next session.
- SIGTERM: a running restic is interrupted (so it removes its lock), the host recorded ``Failed``
  with reason ``Interrupted``, and the process exits.
- Liveness (``/healthz``): the BackupSession watch stamps a heartbeat each time it goes round (event,
  bookmark, relist, reconnect); so does a task on the event loop every second. The agent is wedged when
  the watch has ended, or either heartbeat is older than its bound (see ``stashlet.agent.liveness``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from stashlet.agent.backup import status as ss
from stashlet.agent.backup.plan import plan_from_config
from stashlet.agent.backup.run import BackupRunner, session_deadline
from stashlet.agent.context import AgentContext, PreparationError, target_lease
from stashlet.agent.http_api.server import BackupRefused
from stashlet.agent.liveness import Clock, Heartbeat, tick, wedged
from stashlet.agent.stale_locks import pod_exists, remember_agent_pods
from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession, BackupSessionPhase
from stashlet.api.common import TargetRef
from stashlet.api.sessions import build_session
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, KubeError, NotFound
from stashlet.kube.leases import LeaseLock
from stashlet.kube.watch import DELETED, SYNCED, Collection, WatchSettings, list_objects, watch

log = logging.getLogger(__name__)

T = TypeVar("T")

TURN_LEASE_SECONDS = 15
"""The backup Lease's duration: a holder that stops renewing (a lost pod) is replaced after it."""
TURN_RENEW_EVERY = 3.0
"""Seconds between renewals by the holder, and between tries by a host waiting for its turn."""
SESSION_RECHECK = 30.0
"""Seconds between reads of the session by a host waiting for its turn, beside the watch that tells it the
session ended (a safeguard: the watch reports every end and deletion, across re-lists too)."""
PAUSED_MESSAGE = "Backup Configuration is paused"
REASON_SKIPPED = "BackupSessionSkipped"
REASON_INTERRUPTED = "Interrupted"
REASON_DEADLINE = "DeadlineExceeded"
REASON_AGENT_RESTARTED = "AgentRestarted"

LOOP_BOUND = 30.0
"""Seconds the event loop's heartbeat (stamped every second) may lag before the agent is wedged."""
WATCH_GRACE = 60.0
"""Seconds allowed beyond the longest quiet a healthy watch has (see :func:`watch_bound`)."""


def watch_bound(settings: WatchSettings) -> float:
    """Seconds the BackupSession watch may go without going round before the agent counts as wedged.

    A healthy watch goes round at least once per inactivity timeout (a silent connection is dropped
    and resumed), or once per back-off while the API server is unreachable; the grace covers a list or
    a connection opening. Longer than that, the watch is stuck (e.g. on a connection that never
    answers) and only a restart helps.
    """
    return settings.inactivity_timeout + settings.backoff_max + WATCH_GRACE


def wants_backup_while_paused(session: BackupSession) -> bool:
    """True when the session opts in to run although its configuration is paused."""
    annotations = session.metadata.annotations or {}
    return annotations.get(names.ANNOTATION_BACKUP_WHILE_PAUSED, "").lower() == "true"


def is_mine(obj: dict[str, Any], invoker_kind: str, invoker_name: str) -> bool:
    """True when the session's invoker is this agent's."""
    invoker = obj.get("spec", {}).get("invoker", {})
    return bool(invoker.get("kind") == invoker_kind and invoker.get("name") == invoker_name)


def own_sessions(stash: StashClient, namespace: str, invoker_kind: str, invoker_name: str) -> Collection:
    """The BackupSessions of one invoker, selected by the API server (the namespace's where it cannot)."""
    sessions = stash.list_fn(BackupSession, namespace)
    return sessions.selecting(**{"spec.invoker.kind": invoker_kind, "spec.invoker.name": invoker_name})


class Sidecar:
    """The sidecar's main loop and the source of its HTTP status."""

    def __init__(
        self,
        ctx: AgentContext,
        runner: BackupRunner,
        watch_settings: WatchSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        warm_up: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Serve ``ctx``'s invoker with ``runner``; ``clock`` (monotonic seconds) times the heartbeats;
        ``warm_up`` runs once the watch has listed, unless a session began (module docstring)."""
        self.ctx = ctx
        self.runner = runner
        self.watch_settings = watch_settings or WatchSettings()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.arrived: dict[str, float] = {}
        """When each queued session's event arrived (``time.monotonic()``): its session time starts then."""
        self.ended: dict[str, asyncio.Event] = {}
        """Per queued session, set when the watch sees it final or deleted (a host waiting for its turn
        stops waiting)."""
        self._warm_up = warm_up
        self.warm_up: asyncio.Task[None] | None = None
        """The warm-up's task, started once the watch has listed; None before and once stopped."""
        self.sessions_began = False
        """A session got as far as its restic work: a warm-up is no use any more."""
        self.watch_heartbeat = Heartbeat("backupSessionWatch", watch_bound(self.watch_settings), clock)
        self.loop_heartbeat = Heartbeat("eventLoop", LOOP_BOUND, clock)

    # --- the HTTP API's view -------------------------------------------------------------------
    def wedged(self) -> dict[str, str]:
        """The loops that stopped making progress (the BackupSession watch, the event loop), with why."""
        return wedged((self.watch_heartbeat, self.loop_heartbeat))

    def ready(self) -> tuple[bool, str]:
        """Ready once settings are loaded and the watch has listed its sessions."""
        if not self.ctx.live.settings_loaded:
            return False, "settings not loaded"
        if not self.ctx.live.watching:
            return False, "BackupSession watch not established"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """The JSON of GET /status."""
        if self.ctx.host.needs_lease:
            self.ctx.live.leader = self.ctx.lease is not None and self.ctx.lease.held
        return self.ctx.live.snapshot()

    async def request_backup(self, requested_by: str, while_paused: bool = False) -> str:
        """Create an instant BackupSession (recorded like any other); refused while paused without opt-in."""
        config = await self.ctx.stash.get(
            BackupConfiguration, self.ctx.namespace, self.ctx.settings.invoker_name
        )
        if config.spec.paused and not while_paused:
            raise BackupRefused(
                f"BackupConfiguration {self.ctx.object_ref()} is paused; ask with "
                "whilePaused=true to back up anyway"
            )
        annotations = {names.ANNOTATION_REQUESTED_BY: requested_by}
        if while_paused:
            annotations[names.ANNOTATION_BACKUP_WHILE_PAUSED] = "true"
        for _ in range(5):
            session = build_session(config, int(time.time()), annotations)
            try:
                created = await self.ctx.stash.create(session)
            except Conflict:
                await asyncio.sleep(1)  # one per second: the name carries the unix time
                continue
            log.info(
                "instant backup requested",
                extra={"session": f"{self.ctx.namespace}/{created.metadata.name}", "by": requested_by},
            )
            return created.metadata.name or ""
        raise BackupRefused("could not create a BackupSession name not yet taken; try again")

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Sweep, then watch and work, until cancelled; the watch's heartbeat records how it ended."""
        ticker = asyncio.create_task(tick(self.loop_heartbeat), name="loop-heartbeat")
        ended = "ended"
        try:
            await self.sweep_left_running()
            worker = asyncio.create_task(self._work(), name="sessions")
            try:
                await self._watch()
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        except asyncio.CancelledError:
            ended = "cancelled"
            raise
        except Exception as exc:
            ended = f"failed ({type(exc).__name__}; see the agent's log)"
            raise
        finally:
            await self._stop_warm_up("the agent stops")
            self.watch_heartbeat.stop(ended)
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def sweep_left_running(self) -> None:
        """End the sessions this host left Running before a restart: they will never finish.

        A host entry is this agent's leftover when the pod that ran it is this pod (the container
        restarted) or no longer exists; a replica that merely plays the same host (Deployment) and
        still runs is left alone.
        """
        ref = await self._target_ref()
        for obj in await list_objects(self._sessions()):
            if not is_mine(obj, self.ctx.settings.invoker_kind, self.ctx.settings.invoker_name):
                continue
            remember_agent_pods(self.ctx.agent_pods, obj)
            session = BackupSession.from_dict(obj)
            entry = ss.host_entry(session, ref, self.ctx.host.name)
            if entry is None or entry.phase not in (None, "Running") or ss.is_final(session):
                continue
            if entry.pod and entry.pod != self.ctx.settings.pod_name:
                if await pod_exists(self.ctx, entry.pod) is not False:
                    continue
                message = f"the agent on {entry.pod} is gone while this session ran"
            else:
                message = f"the agent on {self.ctx.settings.pod_name} restarted while this session ran"
            log.warning(
                "ending a session left running by an earlier agent",
                extra={"session": f"{self.ctx.namespace}/{session.metadata.name}", "pod": entry.pod},
            )
            await self._fail(session, ref, REASON_AGENT_RESTARTED, message)

    async def _target_ref(self) -> TargetRef:
        return TargetRef(kind=self.ctx.settings.target_kind, name=self.ctx.settings.target_name)

    def _sessions(self) -> Collection:
        settings = self.ctx.settings
        return own_sessions(self.ctx.stash, self.ctx.namespace, settings.invoker_kind, settings.invoker_name)

    async def _watch(self) -> None:
        beat = self.watch_heartbeat.beat
        async for event in watch(self._sessions(), settings=self.watch_settings, on_progress=beat):
            if event.type == SYNCED:
                self.ctx.live.watching = True
                if self._warm_up is not None and self.warm_up is None and not self.sessions_began:
                    self.warm_up = asyncio.create_task(self._warm_up(), name="warm-up")
                continue
            log.debug("backup session event", extra={"session": event.key, "type": event.type})
            remember_agent_pods(self.ctx.agent_pods, event.object)  # a DELETED session's last state too
            name = event.object["metadata"]["name"]
            phase = event.object.get("status", {}).get("phase")
            final = event.type == DELETED or phase in ss.FINAL_SESSION_PHASES
            if final and (ended := self.ended.get(name)) is not None:
                ended.set()
            if final or name in self.queued:
                continue
            if not is_mine(event.object, self.ctx.settings.invoker_kind, self.ctx.settings.invoker_name):
                continue
            self.queued.add(name)
            self.arrived[name] = time.monotonic()
            self.ended[name] = asyncio.Event()
            await self.queue.put(name)

    async def _work(self) -> None:
        while True:
            name = await self.queue.get()
            try:
                await self.handle(name)
            except asyncio.CancelledError:
                raise
            except (KubeError, PreparationError) as exc:
                log.error(
                    "session handling failed",
                    extra={"session": f"{self.ctx.namespace}/{name}", "error": str(exc)},
                )
            except Exception:
                log.exception("session handling crashed", extra={"session": f"{self.ctx.namespace}/{name}"})
            finally:
                self.queued.discard(name)
                self.arrived.pop(name, None)
                self.ended.pop(name, None)

    async def handle(self, name: str) -> None:
        """Handle one session on this host (see the module docstring)."""
        ctx = self.ctx
        picked_up = self.arrived.pop(name, time.monotonic())
        # The session, the configuration and the workload are independent reads: read at once.
        got_session, got_config, workload = await asyncio.gather(
            ctx.stash.get(BackupSession, ctx.namespace, name),
            ctx.stash.get(BackupConfiguration, ctx.namespace, ctx.settings.invoker_name),
            ctx.read_workload(),
            return_exceptions=True,
        )
        if isinstance(got_session, NotFound):
            return
        session, config = _taken(got_session), _taken(got_config)
        ref = await self._target_ref()
        if ss.is_final(session) or ss.host_is_done(session, ref, ctx.host.name):
            return
        ctx.follow_alias(config.spec)
        if ss.host_is_done(session, ref, ctx.host.name):  # done under the alias it names now
            return
        ctx.live.paused = bool(config.spec.paused)
        if config.spec.paused and not wants_backup_while_paused(session):
            await self._skip(session)
            return
        working = False
        try:
            async with self._turn(name) as mine:
                if not mine:
                    return
                if ctx.host.needs_lease:  # a replica that had the Lease before may have backed this host up
                    still = await self._still_to_do(name, ref)
                    if still is None:
                        return
                    session = still
                working = True
                try:
                    plan = plan_from_config(config, _taken(workload))
                except PreparationError as exc:
                    await self._fail(session, ref, exc.reason, exc.message)
                    return
                deadline = session_deadline(session, config)
                await self._stop_warm_up(f"session {name} begins")
                work = self.runner.run(session, config, plan, picked_up=picked_up, upkeep=False)
                try:
                    if deadline is None:
                        await work
                    else:
                        await asyncio.wait_for(work, max(0.0, deadline - time.time()))
                except TimeoutError:
                    await self._fail(
                        session,
                        ref,
                        REASON_DEADLINE,
                        f"the session did not finish within its timeOut ({config.spec.time_out})",
                        end_session=True,
                    )
                    return
                # The Repository's work after the session: outside its deadline, before the next session.
                await self.runner.upkeep()
        except asyncio.CancelledError:
            if not working:  # stopped while waiting for its turn: another host's work, not this one's
                raise
            await asyncio.shield(
                self._fail(
                    session,
                    ref,
                    REASON_INTERRUPTED,
                    f"the agent on {ctx.settings.pod_name} was stopped (SIGTERM) mid-backup",
                )
            )
            raise

    async def _stop_warm_up(self, why: str) -> None:
        """No warm-up from now on (``why``: for the log); one still running is cancelled, and over when
        this returns (its restic interrupted: a ``--no-lock`` read leaves nothing behind)."""
        self.sessions_began = True
        task, self.warm_up = self.warm_up, None
        if task is None:
            return
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # not `await task`: our own cancellation must propagate
            log.info("warm-up cancelled", extra={"invoker": self.ctx.object_ref(), "why": why})
        if not task.cancelled() and task.exception() is not None:
            log.error("retention scope warm-up crashed", exc_info=task.exception())

    @contextlib.asynccontextmanager
    async def _turn(self, name: str) -> AsyncIterator[bool]:
        """Hold the workload's backup Lease while working on session ``name``, where hosts share it.

        A Deployment's replicas play one host: each session is backed up by the replica that takes the
        Lease first; the others wait, and find the host done when their turn comes (or the session ended
        meanwhile: False, without the Lease). StatefulSet pods each back up, one at a time. No replica
        holds or polls the Lease between sessions. Other hosts need no Lease (True at once).
        """
        host = self.ctx.host
        if not (host.needs_lease or host.takes_turns):
            yield True
            return
        settings = self.ctx.settings
        lease = target_lease(
            self.ctx.api, settings, "backup", duration=TURN_LEASE_SECONDS, renew_every=TURN_RENEW_EVERY
        )
        renewer = asyncio.create_task(lease.run(), name="turn-lease")
        try:
            if not await self._held_or_ended(lease, name):
                yield False
                return
            log.info("took the backup turn", extra={"host": host.name, "lease": lease.name, "session": name})
            self.ctx.lease = lease
            yield True
        finally:
            self.ctx.lease = None
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await lease.release()

    async def _still_to_do(self, name: str, ref: TargetRef) -> BackupSession | None:
        """Session ``name`` as it is now, unless it is gone, final, or this host's part of it is done."""
        try:
            session = await self.ctx.stash.get(BackupSession, self.ctx.namespace, name)
        except NotFound:
            return None
        if ss.is_final(session) or ss.host_is_done(session, ref, self.ctx.host.name):
            return None
        return session

    async def _held_or_ended(self, lease: LeaseLock, name: str) -> bool:
        """Wait until ``lease`` is held (True) or session ``name`` is gone or final (False): the watch says
        when it ends; the session is read only every :data:`SESSION_RECHECK` seconds besides."""
        ended = self.ended.get(name)
        unqueued = ended is None  # handled directly, not queued by the watch: heard of while this waits
        if ended is None:
            ended = self.ended[name] = asyncio.Event()
        if not lease.held:
            self.ctx.live.waiting(name, lease.name)
        try:
            return await self._wait_for_turn(lease, name, ended)
        finally:
            self.ctx.live.waiting(None)
            if unqueued:
                self.ended.pop(name, None)

    async def _wait_for_turn(self, lease: LeaseLock, name: str, ended: asyncio.Event) -> bool:
        while not lease.held:
            if ended.is_set():
                self._stopped_waiting(name, "watch")
                return False
            waits = (asyncio.ensure_future(lease.wait_held()), asyncio.ensure_future(ended.wait()))
            try:
                done, _ = await asyncio.wait(
                    waits, timeout=SESSION_RECHECK, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiting in waits:
                    waiting.cancel()
            if done:
                continue
            try:
                session = await self.ctx.stash.get(BackupSession, self.ctx.namespace, name)
            except NotFound:
                self._stopped_waiting(name, "read")
                return False
            if ss.is_final(session):
                self._stopped_waiting(name, "read")
                return False
        return True

    def _stopped_waiting(self, name: str, seen_by: str) -> None:
        log.info(
            "stopped waiting for the backup turn: the session ended",
            extra={"session": f"{self.ctx.namespace}/{name}", "host": self.ctx.host.name, "seen_by": seen_by},
        )

    async def _skip(self, session: BackupSession) -> None:
        name = session.metadata.name or ""

        def mutate(s: BackupSession) -> bool:
            if ss.is_final(s):
                return False
            ss.finish(s, BackupSessionPhase.SKIPPED, now_utc())
            return True

        updated = await self.ctx.stash.update_status(BackupSession, self.ctx.namespace, name, mutate)
        await self.ctx.events.record(updated.to_dict(), "Warning", REASON_SKIPPED, PAUSED_MESSAGE)
        log.info(
            "backup session skipped: configuration paused", extra={"session": f"{self.ctx.namespace}/{name}"}
        )
        self.ctx.live.finish(name, "Skipped", PAUSED_MESSAGE)

    async def _fail(
        self, session: BackupSession, ref: TargetRef, reason: str, message: str, *, end_session: bool = False
    ) -> None:
        name = session.metadata.name or ""
        total = 1
        for target in (session.status.targets if session.status else None) or []:
            total = target.total_hosts or 1

        def mutate(s: BackupSession) -> None:
            ss.fail_unfinished(s, ref, total, self.ctx.host.name, reason, message, now_utc())
            if end_session and not ss.is_final(s):
                ss.finish(s, BackupSessionPhase.FAILED, now_utc())

        try:
            updated = await self.ctx.stash.update_status(BackupSession, self.ctx.namespace, name, mutate)
            await self.ctx.events.record(
                updated.to_dict(),
                "Warning",
                "Host Backup Failed",
                f"Failed to back up host {self.ctx.host.name}: {message}",
            )
        except KubeError as exc:
            log.error("could not record the failure", extra={"session": name, "error": exc.message})
        log.error(
            "host backup failed",
            extra={"session": f"{self.ctx.namespace}/{name}", "reason": reason, "error": message},
        )
        self.ctx.live.finish(name, "Failed", message)


def _taken(result: T | BaseException) -> T:
    """The result of one of :func:`asyncio.gather`'s awaitables (``return_exceptions``), or its error."""
    if isinstance(result, BaseException):
        raise result
    return result
