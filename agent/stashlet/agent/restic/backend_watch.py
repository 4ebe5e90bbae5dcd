"""A backend that does not answer is visible, and bounded: restic's retries followed while it works.

restic retries a failing backend operation for up to 15 minutes and says so only on stderr (``Save(...)
returned error, retrying after ...``, later ``... operation successful after N retries``). The runner hands
those lines to a :class:`BackendWatch` (``Restic.on_backend``); :meth:`BackendWatch.guard` runs a restic
operation and, about once a second:

- reports each change (unreachable since the first failed try; reachable again once an operation went
  through) to its ``report`` callback: the session's ``BackendReachable`` condition, an event and a log
  line are written there;
- gives up when the backend has been unreachable without a break for ``give_up_after`` seconds, or when
  the session's deadline is :data:`DEADLINE_MARGIN` seconds away while it is unreachable: restic is
  interrupted (it removes its lock) and :class:`BackendUnavailable` names the backend, since when it
  failed and restic's last error. The session's own ``timeOut`` thus fails with the backend's reason;
- gives up at the first retry whose error no retry can cure (:func:`~stashlet.agent.restic.errors.refusal`:
  an untrusted certificate, refused credentials, a missing bucket or container), with that error,
  reporting nothing: restic would retry them for 15 minutes.

restic is silent about a GCS endpoint that refuses connections (Google's client retries inside one call
until its context ends), so a watch may also be given a ``probe``
(:func:`stashlet.agent.restic.endpoint.probe_for`): while an operation runs it connects to the endpoint
every :data:`PROBE_EVERY` seconds, never twice at once, and a connection that is refused, finds no host
or times out counts as a failed try, into the same unreachable-since / give-up / report logic. An
endpoint that accepts ends an outage only the probe had seen (restic's own retries end with restic's
word), so a long silent operation against a live endpoint is never flagged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.endpoint import PROBE_PREFIX, Probe
from stashlet.agent.restic.errors import BackendUnavailable, ResticError, bare_location, refusal
from stashlet.api.durations import format_duration
from stashlet.api.timestamps import now_utc

log = logging.getLogger(__name__)

T = TypeVar("T")

POLL = 1.0
"""Seconds between looks at the watch while an operation runs."""
GIVE_UP_GRACE = 3.0
"""Seconds an interrupted restic gets once the backend is given up (it could not remove its lock there)."""
PROBE_EVERY = 5.0
"""Seconds between the starts of two probes of the endpoint while an operation runs."""
DEADLINE_MARGIN = 15.0
"""Seconds before the session's deadline at which an unreachable backend ends the work, so the session
fails with the backend's reason and has time to record it."""


@dataclass(frozen=True)
class BackendState:
    """Whether the backend answers; when not, since when and what restic said last."""

    location: str
    reachable: bool
    since: dt.datetime
    """The first failed try while unreachable, the recovery while reachable (whole seconds, as a
    condition's lastTransitionTime)."""
    error: str = ""

    @property
    def message(self) -> str:
        """A sentence for a condition or an event (the location carries no credentials)."""
        since = self.since.isoformat().replace("+00:00", "Z")
        if self.reachable:
            return f"backend {self.location} answers again since {since}"
        unreachable = f"backend {self.location} unreachable since {since}"
        if self.error.startswith(PROBE_PREFIX):  # restic says nothing: what the endpoint's probe found
            found = self.error.removeprefix(PROBE_PREFIX)
            return f"{unreachable}; restic retries silently, its endpoint: {found}"
        return f"{unreachable}; restic retries: {self.error}"


class BackendWatch:
    """Follows restic's backend retries for one repository (see the module docstring)."""

    def __init__(
        self,
        location: str,
        give_up_after: float,
        report: Callable[[BackendState], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        probe: Probe | None = None,
        probe_every: float = PROBE_EVERY,
    ) -> None:
        """Watch the repository at ``location`` (its URL: the user part is dropped); ``probe`` looks at
        its endpoint while an operation runs (None: restic's retry lines only)."""
        self.location = bare_location(location)
        self.give_up_after = give_up_after
        self._report = report
        self._clock = clock
        self._probe = probe
        self._probe_every = probe_every
        self._failing_since: float | None = None
        self._probe_only = False
        """Whether the current outage was seen by the probe alone (restic printed no retry in it)."""
        self._state: BackendState | None = None
        self._reported: BackendState | None = None
        self._refusal: ResticError | None = None

    @property
    def state(self) -> BackendState | None:
        """The backend's state as restic last showed it; None while restic said nothing of it."""
        return self._state

    def notice(self, notice: rj.BackendNotice) -> None:
        """What restic printed of the backend (the runner's ``on_backend``); never blocks."""
        if isinstance(notice, rj.BackendRetry):
            error = bare_location(notice.error)
            self._refusal = self._refusal or refusal(error, self.location)
            self._failed_try(error)
            self._probe_only = False
        elif self._failing_since is not None:
            self._recovered()

    def probed(self, error: str | None) -> None:
        """What a probe of the endpoint found: None when it accepted a connection, else why not."""
        if error is not None:
            if self._failing_since is None:
                self._probe_only = True
            # in an outage restic retries, restic's own error says more: it is kept
            self._failed_try(error if self._probe_only or self._state is None else self._state.error)
        elif self._failing_since is not None and self._probe_only:
            self._recovered()

    def _failed_try(self, error: str) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()
            self._state = BackendState(self.location, False, now_utc().replace(microsecond=0), error)
        elif self._state is not None:
            self._state = BackendState(self.location, False, self._state.since, error)

    def _recovered(self) -> None:
        self._failing_since = None
        self._probe_only = False
        self._state = BackendState(self.location, True, now_utc().replace(microsecond=0))

    def unreachable_for(self) -> float:
        """Seconds the backend has failed without a break (0 while it answers)."""
        return 0.0 if self._failing_since is None else self._clock() - self._failing_since

    async def guard(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        hurry: Callable[[float], None] | None = None,
    ) -> T:
        """Run ``op``, reporting the backend's changes; :class:`BackendUnavailable` once it is given up
        (``deadline`` is a ``time.time()``, the session's end, or None). ``hurry`` (``Restic.hurry``)
        shortens restic's interrupt grace to :data:`GIVE_UP_GRACE` before ``op`` is cancelled."""
        task = asyncio.ensure_future(op())
        probing: asyncio.Future[str | None] | None = None
        probed_at = -self._probe_every
        try:
            while True:
                if (
                    self._probe is not None
                    and probing is None
                    and self._clock() - probed_at >= self._probe_every
                ):
                    probing, probed_at = asyncio.ensure_future(self._probe()), self._clock()
                running: set[asyncio.Future[Any]] = {task} if probing is None else {task, probing}
                wait = POLL
                if self._probe is not None and probing is None:  # wake up when the next probe is due
                    wait = min(POLL, max(0.0, probed_at + self._probe_every - self._clock()))
                await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if probing is not None and probing.done():
                    self.probed(probing.result())
                    probing = None
                if self._probe_only and task.done() and not task.cancelled() and task.exception() is None:
                    self._recovered()  # the operation went through: the endpoint answered after all
                await self.publish()
                if task.done():
                    return task.result()
                if self._should_give_up(deadline):
                    if hurry is not None:
                        hurry(GIVE_UP_GRACE)
                    break
        finally:
            for pending in (task, probing):
                if pending is not None and not pending.done():
                    pending.cancel()
                    await asyncio.wait({pending})
        if (refused := self._refusal) is not None:
            # The next operation starts afresh (a missing bucket: restic init comes next).
            self._refusal, self._failing_since, self._state, self._probe_only = None, None, None, False
            raise refused
        await self.publish()
        raise self._given_up(deadline)

    async def publish(self) -> None:
        """Report the state if it changed since the last report (a failing report is logged only)."""
        state = self._state
        if state is None or self._refusal is not None or _same_episode(state, self._reported):
            return
        self._reported = state
        try:
            await self._report(state)
        except Exception:  # status writes are best effort here: the outcome is recorded anyway
            log.exception("could not report the backend's state", extra={"backend": self.location})

    def _should_give_up(self, deadline: float | None) -> bool:
        if self._refusal is not None:
            return True
        if self._failing_since is None:
            return False
        if self.unreachable_for() >= self.give_up_after:
            return True
        return deadline is not None and time.time() >= deadline - DEADLINE_MARGIN

    def _given_up(self, deadline: float | None) -> BackendUnavailable:
        state = self._state
        since = state.message if state is not None else f"backend {self.location} unreachable"
        waited = format_duration(self.unreachable_for())
        if self.unreachable_for() >= self.give_up_after:
            why = f"gave up after {waited} of retries (the bound is {format_duration(self.give_up_after)})"
        else:
            why = f"gave up after {waited} of retries, before the session's timeOut"
        return BackendUnavailable(f"{since}; {why}")


def _same_episode(state: BackendState, reported: BackendState | None) -> bool:
    """Whether ``state`` adds nothing to what was reported: same reachability since the same time."""
    return reported is not None and (state.reachable, state.since) == (reported.reachable, reported.since)
