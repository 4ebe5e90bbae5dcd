"""Retrying a failed BackupSession (``spec.retryConfig``, :mod:`~stashlet.operator.backup.retry_policy`):
the API calls the controller makes: async."""

from __future__ import annotations

import logging
import time

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, NotFound
from stashlet.operator.backup.retry_policy import is_retry_of, plan_retry, retry_session
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.errors import RetryLater

log = logging.getLogger(__name__)

REASON_RETRIED = "BackupSessionRetried"


async def make_retry(stash: StashClient, events: Events, namespace: str, name: str, failed_at: float) -> None:
    """Retry the failed BackupSession ``namespace/name`` if it is to be retried and its retry is not made
    yet; RetryLater until its delay has passed."""
    try:
        failed = await stash.get(BackupSession, namespace, name)
        config = await stash.get(BackupConfiguration, namespace, failed.spec.invoker.name)
    except NotFound:
        return  # the session or its configuration is gone: nothing to retry
    retry = plan_retry(failed, config, failed_at)
    if retry is None:
        return
    wait = retry.due - time.time()
    if wait > 0:
        raise RetryLater(f"the retry of BackupSession {namespace}/{name} is due in {wait:.0f}s", delay=wait)
    selector = f"{names.LABEL_BACKUP_CONFIGURATION}={config.metadata.name}"
    if any(is_retry_of(s, name) for s in await stash.list(BackupSession, namespace, label_selector=selector)):
        return
    unix = int(time.time())
    for attempt in range(3):  # a session of the same second (the schedule's) takes the name: the next one
        session = retry_session(config, retry, unix + attempt)
        try:
            await stash.create(session)
            break
        except Conflict:
            continue
    else:
        raise RetryLater(f"no free name for the retry of BackupSession {namespace}/{name}", delay=1)
    message = (
        f"BackupSession {session.metadata.name} retries this failed session "
        f"({retry.retry_left} retries left after it)"
    )
    await events.emit(failed, EventSpec("Normal", REASON_RETRIED, message, names.COMPONENT_BACKUP_SESSION))
    log.info(
        "backup session retried",
        extra={
            "object": f"{namespace}/{name}",
            "retry": session.metadata.name,
            "retry_left": retry.retry_left,
        },
    )
