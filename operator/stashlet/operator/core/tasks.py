"""The Tasks stashlet runs as a Job per BackupSession, and which one a configuration names: pure.

A BackupConfiguration with ``spec.task.name`` is carried out by a Job per session, never by a sidecar.
stashlet runs two of Stash's Tasks:

- the resource dump (``kubedump-backup-0.1.0``, :data:`~stashlet.api.names.KUBEDUMP_TASKS`): the Job
  reads the API and backs the YAMLs up;
- the stand-alone PersistentVolumeClaim (``pvc-backup``, :data:`~stashlet.api.names.PVC_BACKUP_TASKS`):
  the Job mounts the claim and backs its files up.

Any other Task name is refused by the validation that reads :func:`task_kind`.
"""

from __future__ import annotations

from enum import StrEnum

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration


class TaskKind(StrEnum):
    """A Task stashlet runs, by what its Job does."""

    KUBEDUMP = "kubedump"
    """Dump resource YAMLs from the API server and back them up."""
    PVC_BACKUP = "pvc-backup"
    """Mount a stand-alone PersistentVolumeClaim and back its files up."""


def kind_of_task(name: str | None) -> TaskKind | None:
    """The Task kind a ``spec.task.name`` means, or None (no task, or one stashlet does not run)."""
    if name in names.KUBEDUMP_TASKS:
        return TaskKind.KUBEDUMP
    if name in names.PVC_BACKUP_TASKS:
        return TaskKind.PVC_BACKUP
    return None


def task_kind(bc: BackupConfiguration) -> TaskKind | None:
    """The Task kind ``bc`` names, or None."""
    return kind_of_task(bc.spec.task.name if bc.spec.task else None)


def names_a_task(bc: BackupConfiguration) -> bool:
    """True when ``bc`` names any Task (a Job per session, supported or not)."""
    return bc.spec.task is not None and bool(bc.spec.task.name)
