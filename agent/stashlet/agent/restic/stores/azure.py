"""An ``azure`` backend (Azure Blob Storage): ``azure:<container>:/<prefix>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import MissingSecretKey, Parts, StorageSecret, opt, prefix, required


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``azure:`` location; the account (Secret or ``storageAccount``), its key or SAS go to ``out``."""
    if not secret.copy(out.env, "AZURE_ACCOUNT_NAME"):
        if not opt(spec, "storageAccount"):
            raise MissingSecretKey(
                secret.name, "AZURE_ACCOUNT_NAME", "and the backend sets no storageAccount"
            )
        out.env["AZURE_ACCOUNT_NAME"] = opt(spec, "storageAccount")
    secret.copy(out.env, "AZURE_ACCOUNT_KEY")
    secret.copy(out.env, "AZURE_ACCOUNT_SAS")
    return f"azure:{required(spec, 'azure', 'container')}:/{prefix(spec)}"
