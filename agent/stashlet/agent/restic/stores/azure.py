"""An ``azure`` backend (Azure Blob Storage): ``azure:<container>:/<prefix>``.

restic reaches ``https://<account>.blob.<suffix>/<container>``: the suffix is ``core.windows.net``
unless ``AZURE_ENDPOINT_SUFFIX`` (another Azure cloud, Azure Stack, an emulator; a port may follow it)
is in the agent's environment (``runtimeSettings.container.env``).

``AZURE_ACCESS_TIER`` (a stashlet key, Stash has no such field) sets the tier restic writes blobs in
(``-o azure.access-tier``). Without it restic sends an empty ``x-ms-access-tier`` header, which Azure
reads as the account's default tier and Azurite refuses (``400 InvalidHeaderValue`` on every write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import (
    BackendError,
    MissingSecretKey,
    Parts,
    StorageSecret,
    opt,
    prefix,
    required,
)

ACCESS_TIER_KEY = "AZURE_ACCESS_TIER"
ACCESS_TIERS = ("Hot", "Cool", "Cold", "Archive")
"""The tiers restic 0.18 passes on (any other value it drops silently, so stashlet refuses it)."""


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``azure:`` location; the account (Secret or ``storageAccount``), its key or SAS go to ``out``,
    the Secret's access tier to restic's options."""
    if not secret.copy(out.env, "AZURE_ACCOUNT_NAME"):
        if not opt(spec, "storageAccount"):
            raise MissingSecretKey(
                secret.name, "AZURE_ACCOUNT_NAME", "and the backend sets no storageAccount"
            )
        out.env["AZURE_ACCOUNT_NAME"] = opt(spec, "storageAccount")
    secret.copy(out.env, "AZURE_ACCOUNT_KEY")
    secret.copy(out.env, "AZURE_ACCOUNT_SAS")
    if ACCESS_TIER_KEY in secret.data:
        out.options += ["-o", f"azure.access-tier={access_tier(secret)}"]
    return f"azure:{required(spec, 'azure', 'container')}:/{prefix(spec)}"


def access_tier(secret: StorageSecret) -> str:
    """The Secret's access tier spelt as Azure does; an error naming the key for any other value."""
    given = secret.text(ACCESS_TIER_KEY).strip()
    for tier in ACCESS_TIERS:
        if given.lower() == tier.lower():
            return tier
    raise BackendError(
        f"storage Secret {secret.name} key {ACCESS_TIER_KEY} must be one of {', '.join(ACCESS_TIERS)}"
    )
