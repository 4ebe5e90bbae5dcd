"""Which RestoreSessions restore through Jobs, into which claims, as which hosts: pure, shared by the
operator (which makes the claims and the Jobs) and the agent (which restores in them).

A RestoreSession restores through Jobs, one per host, instead of the ``stash-init`` init-container when

- it names a stand-alone claim: ``spec.task.name: pvc-restore`` and ``spec.target.ref`` a
  PersistentVolumeClaim. One Job, host ``host-0`` (or the alias); the claim is mounted at Stash's
  ``TARGET_MOUNT_PATH`` (:func:`stashlet.api.names.target_mount_path`: ``/stash-data`` unless
  ``volumeMounts[0]`` says otherwise), where the ``pvc-backup`` Job backed it up; or
- it asks for new claims: ``spec.target.volumeClaimTemplates``. One Job per ordinal ``0 ..
  replicas-1`` (``spec.target.replicas``; one Job, ordinal 0, without it), each with its own claims,
  named by the templates with ``${POD_ORDINAL}`` replaced by the ordinal, mounted where
  ``spec.target.volumeMounts`` say: a mount names a template by its name without the ordinal
  (``restore-data-${POD_ORDINAL}`` is mounted as ``restore-data``). The host is Stash's: with replicas
  ``host-<ordinal>`` (``<alias>-<ordinal>``), without ``host-0`` (the alias).
"""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.common import Snapshotter
from stashlet.api.restoresession import RestoreSession

DEFAULT_HOST = "host-0"


def names_claim(session: RestoreSession) -> bool:
    """True when ``spec.target.ref`` is a PersistentVolumeClaim."""
    target = session.spec.target
    ref = target.ref if target is not None else None
    return ref is not None and ref.kind == names.KIND_PERSISTENT_VOLUME_CLAIM


def claim_templates(session: RestoreSession) -> list[dict[str, Any]]:
    """``spec.target.volumeClaimTemplates`` (empty when unset)."""
    target = session.spec.target
    return [dict(t) for t in (target.volume_claim_templates or [])] if target is not None else []


def restores_by_job(session: RestoreSession) -> bool:
    """True when the session is restored by Jobs (module docstring), not by an init-container (nor, with
    ``driver: VolumeSnapshotter``, by the operator making claims from VolumeSnapshots)."""
    if session.spec.driver == Snapshotter.VOLUME_SNAPSHOTTER:
        return False
    task = session.spec.task
    named_task = task is not None and (task.name or "") in names.PVC_RESTORE_TASKS
    return named_task or names_claim(session) or bool(claim_templates(session))


def mount_paths(session: RestoreSession) -> list[str]:
    """Where a restore Job finds the volumes it restores into."""
    target = session.spec.target
    paths = [m.mount_path for m in (target.volume_mounts or [])] if target is not None else []
    if names_claim(session):
        return [names.target_mount_path(paths)]
    return paths


def ordinals(session: RestoreSession) -> list[int | None]:
    """One entry per Job: the ordinals ``0 .. replicas-1`` with ``spec.target.replicas``, else ``[None]``
    (one Job, whose templates take ordinal 0)."""
    target = session.spec.target
    replicas = target.replicas if target is not None and claim_templates(session) else None
    return [None] if replicas is None else list(range(replicas))


def total_hosts(session: RestoreSession) -> int:
    """How many hosts (Jobs) the session has."""
    return max(1, len(ordinals(session)))


def job_host(alias: str | None, ordinal: int | None) -> str:
    """The host a restore Job plays (module docstring)."""
    if ordinal is None:
        return alias or DEFAULT_HOST
    return f"{alias or 'host'}-{ordinal}"


def volume_name(template_name: str) -> str:
    """The name a ``volumeMounts`` entry gives a claim template: its name without the ordinal."""
    for variable in (f"-{names.POD_ORDINAL_VARIABLE}", names.POD_ORDINAL_VARIABLE):
        template_name = template_name.replace(variable, "")
    return template_name


def claim_name(template_name: str, ordinal: int | None) -> str:
    """A template's claim for one ordinal (ordinal 0 when the session has no replicas)."""
    return template_name.replace(names.POD_ORDINAL_VARIABLE, str(ordinal or 0))
