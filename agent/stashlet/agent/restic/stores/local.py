"""A ``local`` backend: the volume mounted at ``mountPath``, joined with ``subPath``."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import BackendError, Parts, StorageSecret, opt, required


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The repository directory."""
    mount = required(spec, "local", "mountPath")
    sub = opt(spec, "subPath")
    if not posixpath.isabs(mount):
        raise BackendError(f"local.mountPath must be absolute, not {mount!r}")
    if ".." in sub.split("/"):
        raise BackendError("local.subPath must not contain '..'")
    return posixpath.normpath(posixpath.join(mount, sub.lstrip("/")))
