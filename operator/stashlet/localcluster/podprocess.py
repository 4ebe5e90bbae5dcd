"""A container of a pod running as a local process: how it is started and the handle that controls it.

The process is started as ``nsenter --net=<pod netns> -- unshare --mount --uts --propagation private
-- python -I -S podexec.py SPEC.json``; every step execs the next, so :attr:`RunningContainer.pid` is
the container's own command once it runs (signals reach it directly). Its stdout and stderr go to
:attr:`RunningContainer.log_path`. It gets SIGTERM when the process that started it dies, runs in a
session (process group) of its own, and on :meth:`RunningContainer.kill` that whole group is killed,
as a container runtime kills everything in a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import stashlet
from stashlet.localcluster import podexec
from stashlet.localcluster.podstatus import ContainerRun
from stashlet.localcluster.podvolumes import Mount
from stashlet.localcluster.processes import _die_with_parent

PODEXEC = Path(podexec.__file__).resolve()


def now() -> str:
    """The time as the API writes it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunningContainer:
    """One run of one container of a pod: its process, exit code and log."""

    def __init__(
        self,
        *,
        namespace: str,
        pod_name: str,
        pod_uid: str,
        name: str,
        init: bool,
        popen: subprocess.Popen[bytes],
        log_path: Path,
        grace: float,
        restarts: int,
    ) -> None:
        """Wrap a started process (see :func:`start`)."""
        self.namespace = namespace
        self.pod_name = pod_name
        self.pod_uid = pod_uid
        self.name = name
        self.init = init
        self.log_path = log_path
        self.grace = grace
        """The pod's terminationGracePeriodSeconds: how long :meth:`terminate` waits by default."""
        self.restarts = restarts
        self.started_at = now()
        self.finished_at: str | None = None
        self._popen = popen

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<RunningContainer {self.namespace}/{self.pod_name}:{self.name} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        """The container's process id (its command, once podexec has exec'd it)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while it runs (a signal N gives -N, as with subprocess)."""
        code = self._popen.poll()
        if code is not None and self.finished_at is None:
            self.finished_at = now()
        return code

    def snapshot(self) -> ContainerRun:
        """This run as the pod status reports it (a signal N is exit code 128+N, as in Kubernetes)."""
        code = self.returncode
        exit_code = None if code is None else (128 - code if code < 0 else code)
        return ContainerRun(self.pid, self.started_at, exit_code, self.finished_at, self.restarts)

    async def wait(self, timeout: float | None = None) -> int:  # noqa: ASYNC109 - error has the log
        """Wait for the process to end and return its exit code; TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.returncode) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} still runs after {timeout}s; log tail:\n{self.logs(20)}")
            await asyncio.sleep(0.05)
        return code

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the container's process (nothing when it has ended)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def terminate(self, grace: float | None = None) -> int:
        """SIGTERM, wait up to ``grace`` (default: the pod's grace period), then :meth:`kill`."""
        self.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await self.wait(self.grace if grace is None else grace)
        return await self.kill()

    async def stop(self) -> int:
        """Stop it the way the kubelet stops a container: :meth:`terminate` with the pod's grace."""
        return await self.terminate()

    async def kill(self) -> int:
        """SIGKILL the process and whatever else runs in its process group; return the exit code."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        code = await self.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return code

    def logs(self, tail: int | None = None) -> str:
        """What the container wrote to stdout and stderr (this and earlier runs), or its last lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else "\n".join(text.splitlines()[-tail:])


def start(
    *,
    spec_dir: Path,
    log_path: Path,
    netns: Path | None,
    hostname: str,
    mounts: Sequence[Mount],
    argv: Sequence[str],
    env: Mapping[str, str],
    working_dir: str,
) -> subprocess.Popen[bytes]:
    """Start a container's process in its pod's network namespace and a mount namespace of its own.

    Must be called from the thread that stays alive as long as the container should (the event
    loop's): the process gets SIGTERM when that thread ends.
    """
    spec = {
        "hostname": hostname,
        "mounts": [m.as_spec() for m in mounts],
        "keep": kept_folders(env),
        "argv": list(argv),
        "env": dict(env),
        "workingDir": working_dir,
    }
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec_path = spec_dir / f".exec-{time.monotonic_ns()}.json"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(spec, handle)
    prefix = [_which("nsenter"), f"--net={netns}", "--"] if netns is not None else []
    command = [
        *prefix,
        _which("unshare"),
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-I",
        "-S",
        str(PODEXEC),
        str(spec_path),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={},
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )


def kept_folders(env: Mapping[str, str]) -> list[str]:
    """The host folders a container run here needs whatever its volumes hide: this Python's prefix (the
    venv), the source roots of the ``stashlet`` package (an editable install runs from the checkout),
    and every folder on the container's ``PATH``."""
    roots = [str(Path(p).parent) for p in stashlet.__path__]
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([sys.prefix, *roots, *path]))


def _which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"the process kubelet needs {name!r} (util-linux) on PATH")
    return found
