"""A ``b2`` backend (Backblaze B2): ``b2:<bucket>:<prefix>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import Parts, StorageSecret, prefix, required


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``b2:`` location; both B2 keys are required."""
    out.env["B2_ACCOUNT_ID"] = secret.require("B2_ACCOUNT_ID")
    out.env["B2_ACCOUNT_KEY"] = secret.require("B2_ACCOUNT_KEY")
    return f"b2:{required(spec, 'b2', 'bucket')}:{prefix(spec)}"
