"""``stashlet-operator trigger``: what the CronJob runs on each schedule.

It reads its BackupConfiguration. Paused: a Normal event "Backup Skipped" from "Backup Triggering CronJob"
("Skipping creating BackupSession. Reason: Backup Configuration <ns>/<name> is paused."), and nothing else.
Otherwise a BackupSession ``<bc>-<unix seconds>`` with the invoker, the invoker labels and an owner
reference to the configuration. The seconds are the Job's scheduled time when the pod knows its Job's name
(the CronJob controller names Jobs ``<cronjob>-<scheduled minutes since the epoch>``), so a retried pod
finds its session already there instead of making a second one.

It runs as ServiceAccount ``stashlet-trigger``, which may only read the configuration, create sessions and
record events.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.names import COMPONENT_TRIGGER
from stashlet.api.sessions import build_session
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict
from stashlet.kube.events import EventRecorder
from stashlet.operator.backup.status import REASON_BACKUP_SKIPPED
from stashlet.operator.core.apiclient import ApiClient

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What one trigger run did."""

    CREATED = "created"
    EXISTED = "existed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TriggerResult:
    """The outcome and the session concerned (none when skipped)."""

    outcome: Outcome
    session: str | None = None


def skip_message(namespace: str, name: str) -> str:
    """The "Backup Skipped" event's message for a paused configuration, worded as Stash words it."""
    return f"Skipping creating BackupSession. Reason: Backup Configuration {namespace}/{name} is paused."


def scheduled_unix(job_name: str | None, cronjob: str, now: float) -> int:
    """Unix seconds of the scheduled run when ``job_name`` is ``<cronjob>-<minutes>``, else ``now``."""
    if job_name and job_name.startswith(f"{cronjob}-"):
        suffix = job_name[len(cronjob) + 1 :]
        if suffix.isdigit():
            return int(suffix) * 60
    return int(now)


async def run_trigger(
    api: ApiClient, namespace: str, name: str, *, job_name: str | None = None, now: float | None = None
) -> TriggerResult:
    """Do one schedule's work for BackupConfiguration ``namespace/name`` (see the module docstring)."""
    stash = StashClient(api)
    bc = await stash.get(BackupConfiguration, namespace, name)
    what = f"{namespace}/{name}"
    if bc.spec.paused:
        await EventRecorder(api, COMPONENT_TRIGGER).record(
            bc.to_dict(), "Normal", REASON_BACKUP_SKIPPED, skip_message(namespace, name)
        )
        log.info("backup configuration is paused; no session", extra={"object": what})
        return TriggerResult(Outcome.SKIPPED)
    unix = scheduled_unix(job_name, names.cronjob_name(name), time.time() if now is None else now)
    session = build_session(bc, unix)
    session_name_ = session.metadata.name
    try:
        await stash.create(session)
    except Conflict:
        log.info("backup session already exists", extra={"object": what, "session": session_name_})
        return TriggerResult(Outcome.EXISTED, session_name_)
    log.info("backup session created", extra={"object": what, "session": session_name_})
    return TriggerResult(Outcome.CREATED, session_name_)
