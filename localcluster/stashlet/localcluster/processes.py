"""Child processes of the local control plane: started with a log file, stopped for sure."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class PortTakenError(RuntimeError):
    """A port asked for explicitly is already in use."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str) -> None:
    """Raise PortTakenError naming ``what`` when ``port`` on 127.0.0.1 is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortTakenError(
                f"port {port} for {what} on 127.0.0.1 is already in use ({exc.strerror})"
            ) from exc


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, so no process outlives a test run."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """One started child: its name, pid, and log file."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        tie_to_parent: bool = True,
    ) -> ManagedProcess:
        """Start ``argv`` in its own session, its output in ``log``.

        With ``tie_to_parent`` the child is killed when this process dies (tests); without it, the
        child outlives the command that started it (``stashlet-cluster up``).
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if tie_to_parent else None,  # noqa: PLW1509
            )
        return cls(name=name, pid=popen.pid, log=log, popen=popen)

    def alive(self) -> bool:
        """True while the process runs (a zombie counts as gone)."""
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        stat = Path(f"/proc/{self.pid}/stat")
        with contextlib.suppress(OSError):
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        return True

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout`` seconds."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, process: ManagedProcess) -> None:
    """Poll ``check`` until true; fail with the process's log when it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not process.alive():
            raise RuntimeError(
                f"{process.name} exited while waiting for {what}; its log:\n{process.log_tail()}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s; {process.name}'s log:\n{process.log_tail()}")
