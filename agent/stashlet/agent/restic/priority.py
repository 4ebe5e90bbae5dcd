"""Niceness and I/O priority of the restic processes, applied in the child between fork and exec.

Stash runs restic under ``nice -n <adjustment>`` and ``ionice -c <class> -n <classData>`` (the
``spec.runtimeSettings.container.nice`` and ``.ionice`` of a BackupConfiguration or RestoreSession).
The agent's image has neither program, so the child process does what they do, then executes restic:

- ``nice(2)`` adds ``adjustment`` to the niceness the agent runs with (the kernel keeps the result
  within -20..19, as nice(1) does);
- the ``ioprio_set`` system call (through ctypes; its number depends on the architecture) sets
  ``class << 13 | classData`` for the process; as ionice(1) does, a missing class means best-effort,
  missing data means 4, and the ``none`` and ``idle`` classes carry data 0.

Both are inherited by every thread and process restic starts. A value the kernel refuses (a negative
adjustment without CAP_SYS_NICE, the realtime class without CAP_SYS_ADMIN or CAP_SYS_NICE, an unknown
class, data outside 0..7) stops the child before restic runs: it writes which setting failed and the
errno into a page shared with the parent, and the parent raises
:class:`~stashlet.agent.restic.errors.PriorityRefused` naming the field. Nothing is dropped silently.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stashlet.agent.restic.errors import PriorityRefused

NICE_FIELD = "spec.runtimeSettings.container.nice"
IONICE_FIELD = "spec.runtimeSettings.container.ionice"

IOPRIO_CLASS_NONE = 0
IOPRIO_CLASS_RT = 1
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1
DEFAULT_CLASS_DATA = 4
"""ionice(1)'s class data when only the class is given."""

SYSCALLS: dict[str, tuple[int, int]] = {"x86_64": (251, 252), "aarch64": (30, 31), "arm64": (30, 31)}
"""``(ioprio_set, ioprio_get)`` system call numbers per ``platform.machine()``."""

_STAGE_NICE = 1
_STAGE_IONICE = 2


@dataclass(frozen=True)
class IoPriority:
    """ionice's ``-c`` (class: 0 none, 1 realtime, 2 best-effort, 3 idle) and ``-n`` (data, 0..7)."""

    io_class: int | None = None
    class_data: int | None = None

    @property
    def value(self) -> int:
        """The ``ioprio`` value ionice(1) would set for these options."""
        io_class = IOPRIO_CLASS_BE if self.io_class is None else self.io_class
        data = DEFAULT_CLASS_DATA if self.class_data is None else self.class_data
        if io_class in (IOPRIO_CLASS_NONE, IOPRIO_CLASS_IDLE):
            data = 0
        return (io_class << IOPRIO_CLASS_SHIFT) | data

    def describe(self) -> str:
        """``class X, classData Y`` as the configuration gave them."""
        return f"class {self.io_class}, classData {self.class_data}"


@dataclass(frozen=True)
class ProcessPriority:
    """How restic processes are started: a niceness adjustment and an I/O priority, each optional."""

    nice: int | None = None
    io: IoPriority | None = None

    @property
    def empty(self) -> bool:
        """True when restic starts with the agent's own priorities."""
        return self.nice is None and self.io is None


def priority_from_container(container: Mapping[str, object] | None) -> ProcessPriority:
    """The priorities in a ``runtimeSettings.container`` (Stash's ``nice.adjustment``, ``ionice.class``
    and ``ionice.classData``); PriorityRefused names a field that is not a whole number."""
    if not container:
        return ProcessPriority()
    nice = _section(container, "nice", NICE_FIELD)
    ionice = _section(container, "ionice", IONICE_FIELD)
    adjustment = _number(nice, "adjustment", NICE_FIELD)
    io_class = _number(ionice, "class", IONICE_FIELD)
    class_data = _number(ionice, "classData", IONICE_FIELD)
    io = IoPriority(io_class, class_data) if io_class is not None or class_data is not None else None
    return ProcessPriority(nice=adjustment, io=io)


def _section(container: Mapping[str, object], key: str, field: str) -> Mapping[str, object]:
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PriorityRefused(f"{field} must be an object, not {value!r}")
    return value


def _number(section: Mapping[str, object], key: str, field: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PriorityRefused(f"{field}.{key} must be a whole number, not {value!r}")
    return value


def _syscall(index: int) -> Callable[..., int]:
    """``syscall(number, ...)`` for ioprio_set (0) or ioprio_get (1) on this machine."""
    machine = platform.machine()
    numbers = SYSCALLS.get(machine)
    if numbers is None:
        raise PriorityRefused(f"{IONICE_FIELD}: setting the I/O priority is not supported on {machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    number = numbers[index]

    def call(*args: int) -> int:
        result = int(libc.syscall(number, *args))
        if result == -1:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return result

    return call


def io_priority_of(tid: int) -> int:
    """The ``ioprio`` value of thread (or process) ``tid`` (the ``ioprio_get`` system call)."""
    return _syscall(1)(IOPRIO_WHO_PROCESS, tid)


class ChildPriority:
    """One spawn's priorities: :meth:`apply` runs in the child before exec; :meth:`refusal` in the parent.

    The shared page is created (and the system call looked up) in the parent: the child only calls
    ``nice(2)``/``ioprio_set(2)`` and writes a stage byte and the errno into the page when one fails.
    """

    def __init__(self, priority: ProcessPriority) -> None:
        """Prepare ``priority`` for a child (PriorityRefused on a machine without ioprio_set)."""
        self.priority = priority
        self._ioprio_set = _syscall(0) if priority.io is not None else None
        self._report = mmap.mmap(-1, mmap.PAGESIZE)

    def apply(self) -> None:
        """In the child: adjust the niceness, then the I/O priority; record and re-raise a refusal."""
        stage = _STAGE_NICE
        try:
            if self.priority.nice is not None:
                os.nice(self.priority.nice)
            stage = _STAGE_IONICE
            if self.priority.io is not None and self._ioprio_set is not None:
                self._ioprio_set(IOPRIO_WHO_PROCESS, 0, self.priority.io.value)
        except OSError as exc:
            self._report[0] = stage
            self._report[1:5] = (exc.errno or 0).to_bytes(4, "little")
            raise

    def refusal(self) -> PriorityRefused | None:
        """In the parent, after the child failed: what the kernel refused, or None if not a priority."""
        stage = self._report[0]
        errno = int.from_bytes(self._report[1:5], "little")
        reason = os.strerror(errno) if errno else "unknown error"
        if stage == _STAGE_NICE:
            return PriorityRefused(
                f"{NICE_FIELD}: the kernel refused adjustment {self.priority.nice} ({reason}; a negative "
                "adjustment raises the priority and needs CAP_SYS_NICE or a RLIMIT_NICE that allows it)"
            )
        if stage == _STAGE_IONICE and self.priority.io is not None:
            return PriorityRefused(
                f"{IONICE_FIELD}: the kernel refused {self.priority.io.describe()} ({reason}; class is "
                "0 none, 1 realtime (needs CAP_SYS_ADMIN or CAP_SYS_NICE), 2 best-effort or 3 idle, "
                "classData 0 to 7)"
            )
        return None

    def close(self) -> None:
        """Release the shared page."""
        self._report.close()
