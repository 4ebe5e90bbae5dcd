"""The current time as Kubernetes stores it in status fields and conditions: UTC, whole seconds."""

from __future__ import annotations

import datetime as dt


def now_utc() -> dt.datetime:
    """The current time, UTC, whole seconds (as Kubernetes stores it)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
