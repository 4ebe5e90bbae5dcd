"""Locks after a lost holder, with real restic: every lock judged, all removed only when every holder
is gone, a live holder waited for and named, and a check that could not take its lock is no verdict.

A lock of another "pod" is made as restic makes it in a pod: restic writes the OS host name into the
lock, so the holder runs in its own UTS namespace (``unshare --uts``) under that host name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.polling import eventually

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import ResticRepository
from stashlet.agent.restic.errors import RepositoryLocked
from stashlet.agent.restic.retention import Retention, forget_args
from stashlet.agent.restic.runner import Restic
from stashlet.agent.stale_locks import (
    REMEMBERED_PODS,
    STALE_AFTER,
    Holder,
    Judge,
    agent_pods,
    clear_if_all_gone,
    own_dead_process,
    remember_agent_pods,
    run_unlocked,
    stale,
)
from stashlet.api.backupsession import BackupSession

HOST = "host-0"


class LockHolder:
    """A restic holding a shared lock (a backup waiting on stdin) under host name ``hostname``."""

    def __init__(self, proc: asyncio.subprocess.Process, hostname: str) -> None:
        self.proc = proc
        self.hostname = hostname

    async def release(self) -> None:
        """Let restic finish (it removes its lock)."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        await self.proc.wait()

    async def lose(self) -> None:
        """SIGKILL it, as a node loss or a forced pod deletion does: its lock stays behind."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


@pytest.fixture
async def holders(
    restic_binary: str, repository: ResticRepository, initialized: Restic
) -> AsyncIterator[Callable[[str], Awaitable[LockHolder]]]:
    """Start lock holders under a host name; each has taken its lock when returned; all end after."""
    started: list[LockHolder] = []
    unshare = shutil.which("unshare")
    assert unshare, "the lock tests need unshare (util-linux) to give a holder its own host name"

    async def start(hostname: str) -> LockHolder:
        before = set(await initialized.list_locks())
        script = f'hostname "$1" && exec "$2" --no-cache backup --stdin --stdin-filename=held --host={HOST}'
        proc = await asyncio.create_subprocess_exec(
            unshare,
            "--uts",
            "sh",
            "-c",
            script,
            "holder",
            hostname,
            restic_binary,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(repository.env) | {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        holder = LockHolder(proc, hostname)
        started.append(holder)

        async def new_lock() -> bool:
            return bool(set(await initialized.list_locks()) - before)

        await eventually(new_lock, timeout=20, interval=0.1, what=f"a lock of {hostname}")
        return holder

    yield start
    for holder in started:
        await holder.lose()


def judge_of(gone_hosts: set[str]) -> Callable[[], Awaitable[Judge]]:
    """A judge that counts the holders on ``gone_hosts`` as gone (as the agent's does for pods that no
    longer exist), and every other holder as live."""

    async def judge(lock: rj.Lock) -> str | None:
        return f"{lock.hostname} no longer exists" if lock.hostname in gone_hosts else None

    async def make() -> Judge:
        return judge

    return make


def policy() -> list[str]:
    return forget_args(Retention(keep_last=1), hosts=[HOST])


@pytest.mark.restic
async def test_locks_of_a_gone_holder_are_removed_and_the_work_goes_on(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]], tmp_path: Path
) -> None:
    """A pod lost mid-backup leaves its lock; plain unlock keeps it (another host, not 30 minutes old).
    Once the judge finds its holder gone, the lock is removed and forget and check succeed."""
    lost = await holders("app-6d9f-lost")
    await lost.lose()
    locks = await initialized.list_locks()
    assert len(locks) == 1
    lock = await initialized.read_lock(locks[0])
    assert lock.hostname == "app-6d9f-lost"  # the OS host name, not restic's --host
    await initialized.unlock()
    assert await initialized.list_locks() == locks  # what restic's own rule leaves: removed 0
    with pytest.raises(RepositoryLocked):
        await initialized.forget(policy())

    forgotten = await run_unlocked(
        initialized, judge_of({"app-6d9f-lost"}), lambda: initialized.forget(policy()), deadline=time.time()
    )
    assert forgotten.removed_count == 0
    assert await initialized.list_locks() == []
    assert await run_unlocked(initialized, judge_of(set()), initialized.check, deadline=time.time())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x")
    summary = await initialized.backup([str(tmp_path / "data")], host=HOST)
    assert summary.snapshot_id


@pytest.mark.restic
async def test_a_live_holder_is_kept_and_named(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]]
) -> None:
    """One live holder among gone ones: nothing is removed, the wait ends at the deadline, and the error
    names the live holder, its PID and its lock's age."""
    lost = await holders("app-lost")
    await lost.lose()
    live = await holders("app-live")
    assert len(await initialized.list_locks()) == 2
    started = time.monotonic()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    with pytest.raises(RepositoryLocked) as caught:
        await run_unlocked(
            initialized,
            judge_of({"app-lost"}),
            initialized.check,
            deadline=time.time() + 5,
            sleep=sleep,
        )
    assert 4 < time.monotonic() - started < 30
    assert slept and slept[0] == pytest.approx(2.0)  # back-off from POLL_FIRST, cut at the deadline
    message = caught.value.message
    assert f"PID {live.proc.pid} on app-live" in message
    assert "shared lock" in message and "s old" in message
    assert "app-lost" not in message
    assert len(await initialized.list_locks()) == 2  # neither lock touched
    await live.release()


@pytest.mark.restic
async def test_the_wait_ends_when_the_live_holder_lets_go(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]]
) -> None:
    """A live holder that finishes while the session waits: the operation then runs (no lock removed)."""
    live = await holders("app-busy")
    loop = asyncio.get_running_loop()
    loop.call_later(3, lambda: asyncio.ensure_future(live.release()))
    started = time.monotonic()
    result = await run_unlocked(
        initialized, judge_of(set()), lambda: initialized.forget(policy()), deadline=time.time() + 60
    )
    assert result.removed_count == 0
    assert 2.5 < time.monotonic() - started < 30


@pytest.mark.restic
async def test_a_lock_taken_while_judging_is_never_removed(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]]
) -> None:
    """The race: between judging the locks and removing them a live holder takes a lock. The locks are
    read again before removing, found changed, judged anew, and nothing is removed."""
    lost = await holders("app-gone")
    await lost.lose()
    newcomer: list[LockHolder] = []

    async def judge(lock: rj.Lock) -> str | None:
        if not newcomer:  # the first verdict: meanwhile a live restic locks the repository
            newcomer.append(await holders("app-newcomer"))
        return "gone" if lock.hostname == "app-gone" else None

    live = await clear_if_all_gone(initialized, judge)
    assert [h.lock.hostname for h in live] == ["app-newcomer"]
    assert len(await initialized.list_locks()) == 2
    await newcomer[0].release()


@pytest.mark.restic
async def test_own_dead_process_and_staleness(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]]
) -> None:
    """This host's lock is gone once its process is; any lock is gone past restic's 30 minutes."""
    me = socket.gethostname()
    holder = await holders(me)
    lock = await initialized.read_lock((await initialized.list_locks())[0])
    assert own_dead_process(lock, me) is None
    assert own_dead_process(lock, "another-pod") is None
    await holder.lose()
    assert own_dead_process(lock, me) == f"its process {lock.pid} on this pod ({me}) no longer runs"
    assert lock.time is not None
    assert stale(lock, lock.time + dt.timedelta(minutes=5)) is None
    assert stale(lock, lock.time + STALE_AFTER + dt.timedelta(seconds=1)) == "not refreshed for 30m01s"
    assert (
        Holder(lock, None)
        .describe(lock.time + dt.timedelta(seconds=75))
        .endswith(f"({'shared'} lock {lock.id[:8]}, 1m15s old)")
    )


@pytest.mark.restic
async def test_a_check_that_cannot_lock_is_no_verdict(
    initialized: Restic, holders: Callable[[str], Awaitable[LockHolder]]
) -> None:
    """restic prints a summary with num_errors 1 when check cannot take its exclusive lock (exit 11): it
    raises RepositoryLocked, never reports the repository damaged."""
    live = await holders("app-live")
    result = await initialized.run(["check"], collect=True)
    assert result.exit_code == 11
    summary = rj.parse_check_summary(result.stdout.splitlines()[-1])
    assert summary is not None and summary.num_errors == 1  # restic's misleading summary
    with pytest.raises(RepositoryLocked, match="already locked"):
        await initialized.check_report()
    await live.release()
    assert (await initialized.check_report()).ok


def test_agent_pods_are_the_pods_named_in_host_entries() -> None:
    """The pods that ran an agent, by the host name restic writes (a pod's name cut to 63 characters)."""
    long_name = "app-" + "x" * 70
    sessions = [
        BackupSession.from_dict(
            {
                "metadata": {"name": "s1"},
                "spec": {
                    "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "b"}
                },
                "status": {
                    "targets": [
                        {
                            "ref": {"kind": "Deployment", "name": "app"},
                            "stats": [
                                {"hostname": "host-0", "phase": "Failed", "pod": "app-old"},
                                {"hostname": "host-1", "phase": "Running", "pod": long_name},
                                {"hostname": "host-2", "phase": "Running"},
                            ],
                        }
                    ]
                },
            }
        )
    ]
    assert agent_pods(sessions) == {"app-old": "app-old", long_name[:63]: long_name}


def test_an_agent_remembers_the_pods_its_sessions_named_the_newest_kept() -> None:
    """The pods in the host entries of the sessions an agent has seen stay known after those sessions are
    pruned (the judge adds them to the ones listed now); the newest REMEMBERED_PODS are kept."""
    known: dict[str, str] = {}
    long_name = "app-" + "y" * 70

    def session(*pods: str | None) -> dict[str, Any]:
        stats = [{"hostname": f"host-{i}", "pod": pod} for i, pod in enumerate(pods)]
        return {"metadata": {"name": "s"}, "status": {"targets": [{"stats": stats}]}}

    remember_agent_pods(known, session("app-lost", None, long_name))
    remember_agent_pods(known, {"metadata": {"name": "new"}})  # not started yet: no status
    assert known == {"app-lost": "app-lost", long_name[:63]: long_name}
    for i in range(REMEMBERED_PODS):
        remember_agent_pods(known, session(f"app-{i}"))
    assert len(known) == REMEMBERED_PODS
    assert "app-lost" not in known and f"app-{REMEMBERED_PODS - 1}" in known
    remember_agent_pods(known, session("app-0"))  # seen again: the newest now
    assert list(known)[-1] == "app-0"
