"""``trigger``, ``pause backup`` and ``resume backup``: the API only, no restic.

``trigger`` makes a BackupSession exactly as the trigger CronJob makes one (:func:`stashlet.api.sessions.
build_session`: ``<bc>-<unix seconds>``, the invoker labels, an owner reference); ``pause`` and ``resume``
set the configuration's ``spec.paused``, which the CronJob's next run and the agent both honour.
"""

from __future__ import annotations

import time

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.sessions import build_session
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, KubeError, NotFound
from stashlet.kubectl_stash.errors import PluginError, object_name

SESSION_RESOURCE = f"{names.BACKUP_SESSIONS}.{names.GROUP}"
CONFIGURATION_RESOURCE = f"{names.BACKUP_CONFIGURATIONS}.{names.GROUP}"
NAME_ATTEMPTS = 5


async def read_configuration(stash: StashClient, namespace: str, name: str) -> BackupConfiguration:
    """The BackupConfiguration, or a PluginError naming it (not found, not allowed)."""
    what = object_name(names.KIND_BACKUP_CONFIGURATION, namespace, name)
    try:
        return await stash.get(BackupConfiguration, namespace, name)
    except NotFound as exc:
        raise PluginError(f"{what} not found") from exc
    except KubeError as exc:
        raise PluginError(f"{what}: {exc}") from exc


async def trigger(stash: StashClient, namespace: str, name: str, *, now: float | None = None) -> str:
    """Create a BackupSession for the configuration now; its name. A paused configuration is refused."""
    bc = await read_configuration(stash, namespace, name)
    what = object_name(names.KIND_BACKUP_CONFIGURATION, namespace, name)
    if bc.spec.paused:
        raise PluginError(
            f"{what} is paused (spec.paused: true): no session is taken; "
            f"run 'kubectl stash resume backup --backupconfig={name} -n {namespace}' first"
        )
    unix = int(time.time() if now is None else now)
    for attempt in range(NAME_ATTEMPTS):  # two triggers in one second: the next second's name
        session = build_session(bc, unix + attempt)
        try:
            created = await stash.create(session)
        except Conflict:
            continue
        except KubeError as exc:
            raise PluginError(f"cannot create a BackupSession for {what}: {exc}") from exc
        return created.metadata.name or ""
    raise PluginError(f"cannot create a BackupSession for {what}: {NAME_ATTEMPTS} names taken")


async def set_paused(stash: StashClient, namespace: str, name: str, paused: bool) -> bool:
    """Set ``spec.paused``; whether it changed."""
    bc = await read_configuration(stash, namespace, name)
    if bool(bc.spec.paused) == paused:
        return False
    what = object_name(names.KIND_BACKUP_CONFIGURATION, namespace, name)
    try:
        await stash.patch(BackupConfiguration, namespace, name, {"spec": {"paused": paused}})
    except KubeError as exc:
        raise PluginError(f"cannot set spec.paused of {what}: {exc}") from exc
    return True
