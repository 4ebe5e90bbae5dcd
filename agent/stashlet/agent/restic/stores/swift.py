"""A ``swift`` backend (OpenStack Swift): ``swift:<container>:/<prefix>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import Parts, StorageSecret, prefix, required

SWIFT_KEYS = (
    "ST_AUTH", "ST_USER", "ST_KEY",
    "OS_AUTH_URL", "OS_REGION_NAME", "OS_USERNAME", "OS_PASSWORD", "OS_TENANT_ID", "OS_TENANT_NAME",
    "OS_USER_DOMAIN_NAME", "OS_USER_ID", "OS_PROJECT_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID",
    "OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME", "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_STORAGE_URL", "OS_AUTH_TOKEN",
)  # fmt: skip


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``swift:`` location; every ``ST_*``/``OS_*`` key present goes to ``out``."""
    for key in SWIFT_KEYS:
        secret.copy(out.env, key)
    return f"swift:{required(spec, 'swift', 'container')}:/{prefix(spec)}"
