"""A storage Secret mounted as a volume: its keys read from the files, and its changes followed.

The kubelet writes a Secret volume atomically: each key is a file (a link into a hidden ``..<timestamp>``
folder reached through ``..data``), and an update swaps ``..data`` in one rename. Names starting with
``..`` are the kubelet's own (no Secret key may start so), so every other entry is a key. Reading the
files for each session means a rotated value reaches the next session without a restart;
:func:`follow_changes` notices the swap (where ``..data`` points) and logs which Secret changed and its key
names, never a value. It polls that one link rather than watching with inotify (``watchfiles``): the agent
image carries no such dependency, and a link read every few seconds is exact for the kubelet's swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

KUBELET_PREFIX = ".."
"""Entries of a Secret volume that are the kubelet's bookkeeping, not keys."""
DATA_LINK = "..data"
"""The link the kubelet swaps to publish a new version of the volume."""


def read_mounted_secret(directory: Path) -> dict[str, bytes] | None:
    """The keys and values of the Secret mounted at ``directory``; None when nothing is mounted there.

    A Secret volume marked ``optional`` whose Secret does not exist is an empty directory: an empty
    mapping comes back, and the caller says the Secret is missing."""
    if not directory.is_dir():
        return None
    data: dict[str, bytes] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(KUBELET_PREFIX) or not entry.is_file():
            continue
        data[entry.name] = entry.read_bytes()
    return data


def key_names(directory: Path) -> list[str]:
    """The keys of the Secret mounted at ``directory`` (none when nothing is mounted)."""
    return sorted((read_mounted_secret(directory) or {}).keys())


def payloads(root: Path) -> dict[str, str]:
    """For each Secret folder under ``root``, where its ``..data`` points (the kubelet's current write)."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for folder in root.iterdir():
        try:
            found[folder.name] = os.readlink(folder / DATA_LINK)
        except OSError:  # not a kubelet-written folder (or not yet): nothing to follow
            continue
    return found


async def follow_changes(root: Path, *, stop: asyncio.Event | None = None, every: float = 5.0) -> None:
    """Log each change of a Secret mounted under ``root`` (one folder per Secret): its name and its keys
    after the change. Returns when ``stop`` is set."""
    stop = stop or asyncio.Event()
    seen = await asyncio.to_thread(payloads, root)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        now = await asyncio.to_thread(payloads, root)
        for name in sorted(n for n, target in now.items() if seen.get(n) not in (None, target)):
            keys = await asyncio.to_thread(key_names, root / name)
            log.info(
                "mounted storage Secret changed: the next session uses it",
                extra={"secret": name, "keys": keys, "directory": str(root / name)},
            )
        seen = now
