"""Niceness, I/O priority and the cache of the restic processes, as a configuration's spec sets them.

The pure parts (Stash's fields -> priorities, ionice's defaults) first; then the real restic, observed
while it runs (its threads' niceness in /proc/<pid>/task/<tid>/stat, their I/O priority through the
``ioprio_get`` system call, its command line in /proc/<pid>/cmdline); then the kernel's refusal, in a
process without the privileges a negative niceness or the realtime I/O class needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.polling import eventually

from stashlet.agent.context import restic_for
from stashlet.agent.errors import RefuseInput
from stashlet.agent.restic.errors import PriorityRefused
from stashlet.agent.restic.priority import (
    IoPriority,
    ProcessPriority,
    io_priority_of,
    priority_from_container,
)
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.restoresession import RestoreSession

NOBODY = 65534


def config_spec(container: dict[str, Any] | None = None, temp_dir: dict[str, Any] | None = None) -> Any:
    """The spec of a BackupConfiguration with these runtimeSettings.container and tempDir."""
    spec: dict[str, Any] = {"retentionPolicy": {"name": "keep", "keepLast": 1, "prune": True}}
    if container is not None:
        spec["runtimeSettings"] = {"container": container}
    if temp_dir is not None:
        spec["tempDir"] = temp_dir
    obj = {"metadata": {"name": "bc", "namespace": "ns"}, "spec": spec}
    return BackupConfiguration.from_dict(obj).spec


# --- pure ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("io", "value"),
    [
        (IoPriority(io_class=2, class_data=7), (2 << 13) | 7),
        (IoPriority(io_class=1), (1 << 13) | 4),  # ionice -c 1: data 4
        (IoPriority(class_data=3), (2 << 13) | 3),  # ionice -n 3: best-effort
        (IoPriority(io_class=3, class_data=5), 3 << 13),  # idle carries no data
        (IoPriority(io_class=0, class_data=5), 0),  # none carries no data
    ],
)
def test_io_priority_value_is_what_ionice_sets(io: IoPriority, value: int) -> None:
    """``-c``/``-n`` become the ioprio value ionice(1) sets, with its defaults for a missing option."""
    assert io.value == value


def test_priorities_from_stash_fields() -> None:
    """``nice.adjustment``, ``ionice.class`` and ``ionice.classData`` are read; absent means unchanged."""
    container = {"nice": {"adjustment": 5}, "ionice": {"class": 2, "classData": 6}, "resources": {}}
    assert priority_from_container(container) == ProcessPriority(nice=5, io=IoPriority(2, 6))
    assert priority_from_container({"ionice": {"class": 3}}) == ProcessPriority(io=IoPriority(3, None))
    assert priority_from_container({"nice": {}}).empty
    assert priority_from_container(None).empty


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"nice": {"adjustment": "5"}}, "spec.runtimeSettings.container.nice.adjustment"),
        ({"nice": {"adjustment": True}}, "spec.runtimeSettings.container.nice.adjustment"),
        ({"nice": 5}, "spec.runtimeSettings.container.nice must be an object"),
        ({"ionice": {"class": 1.5}}, "spec.runtimeSettings.container.ionice.class"),
        ({"ionice": {"classData": "high"}}, "spec.runtimeSettings.container.ionice.classData"),
    ],
)
def test_malformed_priorities_are_refused_naming_the_field(container: dict[str, Any], field: str) -> None:
    """A value that is not a whole number is refused with the field's path, never ignored."""
    with pytest.raises(PriorityRefused, match=field) as caught:
        priority_from_container(container)
    assert isinstance(caught.value, RefuseInput)


def test_restic_settings_follow_the_invokers_spec(settings: ResticSettings) -> None:
    """A BackupConfiguration's or RestoreSession's runtimeSettings.container gives the priorities and
    tempDir.disableCaching drops the cache; without them the agent's own settings stay."""
    base = dataclasses.replace(settings, cache_dir="/stash-tmp/restic-cache")
    spec = config_spec({"nice": {"adjustment": 3}}, {"disableCaching": True})
    derived = restic_for(base, spec)
    assert (derived.cache_dir, derived.priority) == (None, ProcessPriority(nice=3))
    assert restic_for(base, config_spec()) == base
    assert restic_for(base, config_spec(temp_dir={"disableCaching": False})).cache_dir == base.cache_dir
    restore = RestoreSession.from_dict(
        {
            "metadata": {"name": "rs", "namespace": "ns"},
            "spec": {"runtimeSettings": {"container": {"ionice": {"class": 3}}}},
        }
    ).spec
    assert restic_for(base, restore).priority == ProcessPriority(io=IoPriority(3, None))


# --- the real restic -------------------------------------------------------------------------------


def children_named(name: str) -> list[int]:
    """PIDs of this process's children whose command is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == name and ppid == os.getpid():
            found.append(int(entry.name))
    return found


def nice_of(pid: int, tid: int) -> int:
    """Field 19 of /proc/<pid>/task/<tid>/stat: the thread's niceness."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19 - 3])


def observe(pid: int) -> tuple[list[bytes], set[tuple[int, int]]]:
    """Process ``pid`` as it runs: its command line, and the (niceness, ioprio) of each of its threads."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    return argv, {(nice_of(pid, tid), io_priority_of(tid)) for tid in tids}


@pytest.mark.restic
async def test_restic_runs_with_the_configured_priorities_and_without_cache(
    settings: ResticSettings, initialized: Restic, tmp_path: Path
) -> None:
    """Every thread of the running restic has the niceness (the agent's plus the adjustment) and the
    I/O priority the configuration asks for, and its command line says --no-cache under disableCaching;
    the backup then completes normally."""
    spec = config_spec(
        {"nice": {"adjustment": 7}, "ionice": {"class": 2, "classData": 6}}, {"disableCaching": True}
    )
    base = dataclasses.replace(settings, cache_dir=str(tmp_path / "cache"))
    assert initialized.repository is not None
    restic = Restic(restic_for(base, spec), initialized.repository)
    gate = tmp_path / "gate"
    command = ["/bin/sh", "-c", f'while [ ! -e "{gate}" ]; do /bin/sleep 0.05; done; echo data']
    backup = asyncio.create_task(
        restic.backup(
            command,
            host="host-0",
            extra_args=["--stdin-from-command", "--stdin-filename=data.txt"],
        )
    )
    try:
        pids = await eventually(lambda: children_named("restic"), what="the running restic", timeout=30)
        argv, threads = observe(pids[0])
        assert b"--no-cache" in argv
        assert not [a for a in argv if a.startswith(b"--cache-dir")]
        expected_nice = min(19, os.nice(0) + 7)
        assert threads == {(expected_nice, (2 << 13) | 6)}
    finally:
        gate.touch()
        summary = await backup
    assert summary.snapshot_id
    assert os.nice(0) == expected_nice - 7  # the agent itself keeps its own niceness


REFUSAL_SCRIPT = """
import asyncio, json, os, sys
from stashlet.agent.restic.errors import ResticError
from stashlet.agent.restic.priority import IoPriority, ProcessPriority
from stashlet.agent.restic.runner import Restic, ResticSettings

if os.geteuid() == 0:  # give up root, and with it CAP_SYS_NICE and CAP_SYS_ADMIN
    os.setgroups([])
    os.setresgid({nobody}, {nobody}, {nobody})
    os.setresuid({nobody}, {nobody}, {nobody})

async def attempt(priority):
    try:
        await Restic(ResticSettings(binary=sys.argv[1], priority=priority), None).run(["version"])
    except ResticError as exc:
        return [type(exc).__name__, exc.reason, exc.message]
    return None

cases = [ProcessPriority(nice=-5), ProcessPriority(io=IoPriority(1, 0)), ProcessPriority(io=IoPriority(7))]
print(json.dumps([asyncio.run(attempt(case)) for case in cases]))
"""


@pytest.mark.restic
def test_a_priority_the_kernel_refuses_fails_naming_the_field(restic_binary: str) -> None:
    """Without privileges a negative nice and the realtime I/O class are refused by the kernel, and an
    unknown class by anyone: restic does not start, and the error names the field and the kernel's
    answer (nothing is dropped silently)."""
    script = REFUSAL_SCRIPT.format(nobody=NOBODY)
    out = subprocess.run(
        [sys.executable, "-c", script, restic_binary],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    nice, realtime, unknown = json.loads(out.stdout)
    assert nice[:2] == ["PriorityRefused", "PriorityRefused"]
    assert "spec.runtimeSettings.container.nice: the kernel refused adjustment -5" in nice[2]
    assert "Operation not permitted" in nice[2]
    assert realtime[:2] == ["PriorityRefused", "PriorityRefused"]
    assert "spec.runtimeSettings.container.ionice: the kernel refused class 1, classData 0" in realtime[2]
    assert "Operation not permitted" in realtime[2]
    assert unknown[:2] == ["PriorityRefused", "PriorityRefused"]
    assert "spec.runtimeSettings.container.ionice: the kernel refused class 7" in unknown[2]
    assert "Invalid argument" in unknown[2]
