"""The environment a restic Pod of ``kubectl stash`` takes from the BackupConfiguration that uses the
Repository: ``spec.runtimeSettings.container.env`` and ``envFrom``, the fields through which a user points
restic at a non-public endpoint (``STORAGE_EMULATOR_HOST``, ``AZURE_ENDPOINT_SUFFIX``, a proxy). Without
them the Pod would reach a different backend than the sidecar does.

Only the configurations in the Repository's own namespace count (the Pod runs there, and an ``envFrom``
or ``valueFrom`` names objects of its own namespace). When they disagree, the user picks one with
``--backupconfig``; a silent choice could send a command to the wrong endpoint.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.rest import KubeApi
from stashlet.kubectl_stash.errors import PluginError, object_name

CARRIED = ("env", "envFrom")
"""The ``runtimeSettings.container`` keys a restic Pod takes."""


def _runtime(bc: BackupConfiguration) -> dict[str, Any]:
    container = (bc.spec.runtime_settings.container if bc.spec.runtime_settings else None) or {}
    return {key: container[key] for key in CARRIED if container.get(key)}


def uses(bc: BackupConfiguration, repo: Repository) -> bool:
    """Whether ``bc``'s ``spec.repository`` is ``repo``."""
    ref = bc.spec.repository
    if ref is None:
        return False
    return (
        ref.name == repo.metadata.name and (ref.namespace or bc.metadata.namespace) == repo.metadata.namespace
    )


async def runtime_for(api: KubeApi, repo: Repository, backupconfig: str | None = None) -> dict[str, Any]:
    """The ``env``/``envFrom`` for a restic Pod on ``repo``: those of ``backupconfig`` when given (it must
    use ``repo``), else those the configurations using ``repo`` agree on; a PluginError when they differ."""
    namespace = repo.metadata.namespace or ""
    client = StashClient(api)
    if backupconfig:
        what = object_name(names.KIND_BACKUP_CONFIGURATION, namespace, backupconfig)
        try:
            bc = await client.get(BackupConfiguration, namespace, backupconfig)
        except NotFound as exc:
            raise PluginError(f"{what} not found (--backupconfig)") from exc
        except KubeError as exc:
            raise PluginError(f"{what}: {exc}") from exc
        if not uses(bc, repo):
            used = object_name(names.KIND_REPOSITORY, namespace, repo.metadata.name or "")
            raise PluginError(f"{what} does not use {used} (spec.repository)")
        return _runtime(bc)
    try:
        configs = [bc for bc in await client.list(BackupConfiguration, namespace) if uses(bc, repo)]
    except KubeError as exc:
        raise PluginError(f"cannot list the BackupConfigurations of namespace {namespace}: {exc}") from exc
    runtimes = {bc.metadata.name or "": _runtime(bc) for bc in configs}
    distinct = {repr(sorted(r.items())) for r in runtimes.values()}
    if len(distinct) > 1:
        listed = ", ".join(sorted(runtimes))
        raise PluginError(
            f"the BackupConfigurations using Repository {namespace}/{repo.metadata.name} ({listed}) set "
            "different spec.runtimeSettings.container env/envFrom: choose one with --backupconfig"
        )
    return next(iter(runtimes.values()), {})
