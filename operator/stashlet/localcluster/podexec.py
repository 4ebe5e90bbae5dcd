"""The in-namespace step of the process kubelet: mount the pod's volumes, then become the container.

The kubelet starts ``nsenter --net=<pod netns> -- unshare --mount --uts --propagation private --
python -I -S podexec.py SPEC.json``; ``nsenter`` and ``unshare`` exec, and so does this, so the pid the
kubelet holds ends up being the container's own process. This file uses only the standard library and
runs by path, without the package on ``sys.path``.

The spec (JSON, deleted once read; it holds resolved secrets): ``hostname``, ``mounts`` (``source``,
``target``, ``readOnly``; parents before children), ``keep`` (host folders to keep visible),
``argv``, ``env``, ``workingDir``. A mount target
that does not exist is created: inside an earlier mount when it lies under one, else on the host (the
kubelet creates those beforehand and records them). Read-only mounts are bind mounts remounted
read-only. Exit code 127: the executable was not found; 126: it could not be executed; 1: setup failed.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from typing import Any

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000


def _mount(source: str | None, target: str, flags: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or '(remount)'} on {target}: {os.strerror(errno)}")


def ensure_mountpoint(target: str, *, directory: bool) -> None:
    """Create ``target`` as an empty directory or file when it does not exist."""
    if os.path.lexists(target):
        return
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        with open(target, "a"):
            pass


def _below(path: str, target: str) -> bool:
    """True when ``path`` lies strictly inside ``target``."""
    return path.startswith(target.rstrip("/") + "/")


def mount_all(mounts: list[dict[str, Any]], keep: list[str] | None = None) -> None:
    """Bind every source on its target, then remount the read-only ones read-only.

    A ``keep`` folder of the host that a mount would hide (an emptyDir on ``/tmp`` over a checkout
    under ``/tmp``) is bound back at its own path inside that mount: it is the kubelet's own software
    (the venv, the package's source roots, what ``PATH`` names), which a real node has in the image.
    """
    hidden = {
        path: os.open(path, os.O_PATH | os.O_DIRECTORY)
        for path in dict.fromkeys(keep or [])
        if os.path.isdir(path) and any(_below(path, m["target"]) for m in mounts)
    }
    for mount in mounts:
        source = os.path.realpath(mount["source"])
        ensure_mountpoint(mount["target"], directory=os.path.isdir(source))
        _mount(source, mount["target"], MS_BIND | MS_REC)
    for mount in mounts:
        if mount.get("readOnly"):
            _mount(None, mount["target"], MS_REMOUNT | MS_BIND | MS_RDONLY)
    for path, fd in hidden.items():
        ensure_mountpoint(path, directory=True)
        _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
        os.close(fd)


def main(argv: list[str]) -> int:
    """Set up the container's view of the world and exec its command (returns only on failure)."""
    path = argv[1]
    with open(path) as handle:
        spec = json.load(handle)
    os.unlink(path)
    try:
        if spec.get("hostname"):
            socket.sethostname(spec["hostname"])
        mount_all(spec["mounts"], spec.get("keep"))
        working_dir = spec.get("workingDir") or "/"
        os.makedirs(working_dir, exist_ok=True)
        os.chdir(working_dir)
    except OSError as exc:
        print(f"process kubelet: container setup failed: {exc}", file=sys.stderr, flush=True)
        return 1
    command = spec["argv"]
    try:
        os.execvpe(command[0], command, spec["env"])  # noqa: S606
    except FileNotFoundError:
        print(
            f'process kubelet: exec: "{command[0]}": executable file not found in $PATH',
            file=sys.stderr,
            flush=True,
        )
        return 127
    except OSError as exc:
        print(f'process kubelet: exec: "{command[0]}": {exc.strerror}', file=sys.stderr, flush=True)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
