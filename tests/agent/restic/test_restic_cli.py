"""The async restic runner, against the real pinned restic on local repositories under tmp_path.

The runner's pure helpers (throttle, line pump, environment) are tested first, without restic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest
from tests.polling import eventually

from stashlet.agent.errors import RetryLater
from stashlet.agent.restic.backend import ResticRepository
from stashlet.agent.restic.errors import (
    PartialBackup,
    RepositoryLocked,
    RepositoryNotFound,
    ResticFailed,
    ResticUnavailable,
    SnapshotNotFound,
    WrongPassword,
)
from stashlet.agent.restic.output import BackupStatus, RestoreStatus
from stashlet.agent.restic.retention import EmptyRetentionPolicy, Retention, UnscopedRetention, forget_args
from stashlet.agent.restic.runner import (
    Restic,
    ResticSettings,
    _pump,
    _Throttle,
    inherited_env,
    restic_version,
)
from stashlet.api import versions

from ..conftest import PASSWORD, local_repository

HOST = "host-0"


def make_tree(root: Path) -> dict[str, bytes]:
    """Write a small tree of files (text, binary, empty, nested) and return relative path -> content."""
    files = {
        "a.txt": b"hello\n",
        "sub/b.bin": os.urandom(100_000),
        "sub/deeper/empty": b"",
        "sub/deeper/c.txt": b"c" * 4321,
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` as relative path -> content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_sparse(path: Path, size: int) -> None:
    """A sparse file: large to read, free on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


async def start_lock_holder(binary: str, repository: ResticRepository) -> asyncio.subprocess.Process:
    """A live restic holding a (non-exclusive) lock: a backup waiting on stdin that never comes."""
    return await asyncio.create_subprocess_exec(
        binary,
        "--no-cache",
        "backup",
        "--stdin",
        "--stdin-filename=held",
        "--host=holder",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(repository.env),
    )


async def wait_for_locks(restic: Restic) -> list[str]:
    """The repository's locks, once there is at least one (within 20 s)."""
    locks: list[str] = await eventually(restic.list_locks, timeout=20, interval=0.1, what="a lock")
    return locks


# --- pure helpers --------------------------------------------------------------------------------


def test_throttle_passes_the_first_then_the_latest_on_flush() -> None:
    """Within one interval only the first report goes out at once; flush delivers the latest."""
    seen: list[int] = []
    throttle: _Throttle[int] = _Throttle(seen.append, interval=60)
    for report in (1, 2, 3):
        throttle.offer(report)
    assert seen == [1]
    throttle.flush()
    assert seen == [1, 3]
    throttle.flush()
    assert seen == [1, 3]


def test_throttle_without_interval_passes_everything() -> None:
    """With a zero interval every report is delivered."""
    seen: list[int] = []
    throttle: _Throttle[int] = _Throttle(seen.append, interval=0)
    for report in (1, 2, 3):
        throttle.offer(report)
    assert seen == [1, 2, 3]


def test_a_failing_progress_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A broken progress consumer must not break the backup: the error is logged and swallowed."""

    def broken(report: int) -> None:
        raise RuntimeError(f"boom {report}")

    throttle: _Throttle[int] = _Throttle(broken, interval=0)
    with caplog.at_level(logging.ERROR):
        throttle.offer(1)
    assert "progress callback failed" in caplog.text


async def test_pump_splits_lines_across_chunks() -> None:
    """Lines are rebuilt across chunk boundaries, CRLF is trimmed, a last unterminated line is kept."""
    reader = asyncio.StreamReader()
    long_line = "x" * 200_000
    for piece in (
        b'{"a":',
        b"1}\r\n",
        long_line.encode()[:70_000],
        long_line.encode()[70_000:] + b"\n",
        b"tail",
    ):
        reader.feed_data(piece)
    reader.feed_eof()
    lines: list[str] = []
    await _pump(reader, lines.append)
    assert lines == ['{"a":1}', long_line, "tail"]


def test_inherited_env_takes_only_the_named_variables() -> None:
    """Only the listed variables (proxies, workload identity) are passed on, never the rest."""
    environ = {"PATH": "/bin", "HTTPS_PROXY": "http://proxy", "KUBE_TOKEN": "secret", "AWS_ROLE_ARN": "arn"}
    assert inherited_env(environ) == {"PATH": "/bin", "HTTPS_PROXY": "http://proxy", "AWS_ROLE_ARN": "arn"}


async def test_a_missing_binary_is_unavailable(tmp_path: Path, repository: ResticRepository) -> None:
    """A binary that is not there raises ResticUnavailable, not a bare OSError."""
    restic = Restic(ResticSettings(binary=str(tmp_path / "no-restic")), repository)
    with pytest.raises(ResticUnavailable, match="cannot run"):
        await restic.snapshots()


# --- against restic ------------------------------------------------------------------------------


@pytest.mark.restic
async def test_version_is_the_pinned_one(settings: ResticSettings) -> None:
    """The version check reads the pinned version and accepts it; a higher minimum refuses it."""
    version = await restic_version(settings)
    assert version.version == versions.RESTIC
    assert version.number >= versions.RESTIC_MIN
    with pytest.raises(ResticUnavailable, match="too old"):
        await restic_version(dataclasses.replace(settings, min_version=(99, 0, 0)))


@pytest.mark.restic
async def test_missing_repository_is_exit_10(restic: Restic) -> None:
    """Before init there is no repository: exists() is False and commands raise RepositoryNotFound."""
    assert await restic.exists() is False
    with pytest.raises(RepositoryNotFound, match="repository does not exist") as caught:
        await restic.snapshots()
    assert caught.value.exit_code == 10


@pytest.mark.restic
async def test_init_creates_the_repository_once(restic: Restic) -> None:
    """The repository ID comes back from init, the config shows it, and a second init fails."""
    ident = await restic.init()
    assert re.fullmatch(r"[0-9a-f]{64}", ident)
    assert await restic.exists() is True
    assert (await restic.cat_config())["id"] == ident
    with pytest.raises(ResticFailed, match="already"):
        await restic.init()


@pytest.mark.restic
async def test_backup_summary_counts_the_files_made(initialized: Restic, tmp_path: Path) -> None:
    """A first backup reports every file new, the exact bytes, and the snapshot it wrote."""
    data = tmp_path / "data"
    files = make_tree(data)
    summary = await initialized.backup([str(data)], host=HOST, tags=["daily", "app"])
    assert summary.files_new == len(files)
    assert (summary.files_changed, summary.files_unmodified) == (0, 0)
    assert summary.total_files_processed == len(files)
    assert summary.total_bytes_processed == sum(len(c) for c in files.values())
    assert summary.dirs_new >= 3  # data, sub, sub/deeper (and data's parents)
    assert summary.data_added >= 100_000
    assert summary.backup_start is not None
    assert summary.backup_end is not None
    assert summary.backup_start <= summary.backup_end
    [snapshot] = await initialized.snapshots()
    assert snapshot.id == summary.snapshot_id
    assert (snapshot.hostname, snapshot.paths, set(snapshot.tags)) == (HOST, (str(data),), {"daily", "app"})


@pytest.mark.restic
async def test_second_backup_sees_unmodified_then_changed_files(initialized: Restic, tmp_path: Path) -> None:
    """Unchanged files are reported unmodified next time; a rewritten file is reported changed."""
    data = tmp_path / "data"
    files = make_tree(data)
    first = await initialized.backup([str(data)], host=HOST)
    second = await initialized.backup([str(data)], host=HOST)
    assert (second.files_new, second.files_changed, second.files_unmodified) == (0, 0, len(files))
    assert second.data_added < 10_000  # no file content again, only tree metadata
    (data / "a.txt").write_bytes(b"hello, again\n")
    third = await initialized.backup([str(data)], host=HOST)
    assert (third.files_new, third.files_changed, third.files_unmodified) == (0, 1, len(files) - 1)
    snapshots = await initialized.snapshots()
    assert [s.id for s in snapshots] == [first.snapshot_id, second.snapshot_id, third.snapshot_id]
    assert snapshots[1].parent == first.snapshot_id


@pytest.mark.restic
async def test_snapshots_filter_by_host_path_and_tag(initialized: Restic, tmp_path: Path) -> None:
    """Host, path, tag and latest filters select the expected snapshots."""
    data, other = tmp_path / "data", tmp_path / "other"
    make_tree(data)
    make_tree(other)
    await initialized.backup([str(data)], host="host-0", tags=["a"])
    await initialized.backup([str(data)], host="host-1", tags=["b"])
    await initialized.backup([str(other)], host="host-0", tags=["a"])
    await initialized.backup([str(data)], host="host-0", tags=["a"])
    assert len(await initialized.snapshots(host="host-0")) == 3
    assert len(await initialized.snapshots(tags=["b"])) == 1
    assert len(await initialized.snapshots(paths=[str(data)])) == 3
    [latest] = await initialized.snapshots(host="host-0", paths=[str(data)], latest=1)
    assert latest.paths == (str(data),)
    assert latest.hostname == "host-0"


@pytest.mark.restic
async def test_forget_keep_last_keeps_exactly_n(initialized: Restic, tmp_path: Path) -> None:
    """keepLast=2 removes all but the two newest snapshots; with prune, data stays consistent."""
    data = tmp_path / "data"
    make_tree(data)
    ids = []
    for round_ in range(4):
        (data / "round").write_text(str(round_) * (round_ + 1))
        ids.append((await initialized.backup([str(data)], host=HOST)).snapshot_id)
    result = await initialized.forget(forget_args(Retention(keep_last=2), hosts=[HOST]))
    assert result.removed_count == 2
    assert {s.id for s in result.removed} == set(ids[:2])
    assert [s.id for s in result.kept] == ids[:1:-1]  # restic lists kept snapshots newest first
    assert [s.id for s in await initialized.snapshots()] == ids[2:]
    pruned = await initialized.forget(forget_args(Retention(keep_last=1, prune=True), hosts=[HOST]))
    assert [s.id for s in pruned.removed] == [ids[2]]
    assert [s.id for s in await initialized.snapshots()] == ids[3:]
    assert await initialized.check() is True


@pytest.mark.restic
async def test_forget_dry_run_removes_nothing(initialized: Restic, tmp_path: Path) -> None:
    """A dry run reports what would be removed but keeps every snapshot."""
    data = tmp_path / "data"
    make_tree(data)
    await initialized.backup([str(data)], host=HOST)
    await initialized.backup([str(data)], host=HOST)
    result = await initialized.forget(forget_args(Retention(keep_last=1, dry_run=True), hosts=[HOST]))
    assert result.removed_count == 1
    assert len(await initialized.snapshots()) == 2


@pytest.mark.restic
async def test_forget_without_keep_option_is_refused(initialized: Restic) -> None:
    """The runner refuses a forget that keeps nothing, before restic ever runs."""
    with pytest.raises(EmptyRetentionPolicy):
        await initialized.forget(["--prune", "--group-by=host"])


@pytest.mark.restic
async def test_forget_without_a_host_is_refused(initialized: Restic, tmp_path: Path) -> None:
    """The runner refuses a forget that names no host (it would reach every configuration's snapshots),
    before restic ever runs: the snapshots stay."""
    data = tmp_path / "data"
    make_tree(data)
    await initialized.backup([str(data)], host="other")
    await initialized.backup([str(data)], host="other")
    with pytest.raises(UnscopedRetention, match="without --host"):
        await initialized.forget(["--keep-last", "1", "--group-by=host,paths", f"--path={data}"])
    assert len(await initialized.snapshots()) == 2


@pytest.mark.restic
async def test_restore_gives_byte_identical_files(initialized: Restic, tmp_path: Path) -> None:
    """Restoring the latest snapshot recreates every file with identical bytes and nothing more."""
    data = tmp_path / "data"
    files = make_tree(data)
    await initialized.backup([str(data)], host=HOST)
    reports: list[RestoreStatus] = []
    summary = await initialized.restore(target=str(tmp_path / "out"), host=HOST, progress_cb=reports.append)
    restored = tmp_path / "out" / data.relative_to("/")
    assert read_tree(restored) == files
    assert summary.bytes_restored == sum(len(c) for c in files.values())
    assert summary.files_restored >= len(files)  # restic counts directories too
    assert all(report.total_bytes == summary.total_bytes for report in reports)


@pytest.mark.restic
async def test_restore_subfolder_with_include_and_exclude(initialized: Restic, tmp_path: Path) -> None:
    """'ID:subfolder' restores into the target directly; include and exclude select files."""
    data = tmp_path / "data"
    files = make_tree(data)
    summary = await initialized.backup([str(data)], host=HOST)
    await initialized.restore(
        f"{summary.snapshot_id}:{data}", target=str(tmp_path / "bins"), include=["/sub"]
    )
    assert set(read_tree(tmp_path / "bins")) == {f for f in files if f.startswith("sub/")}
    await initialized.restore(f"latest:{data}", target=str(tmp_path / "no-bins"), exclude=["*.bin"])
    assert read_tree(tmp_path / "no-bins") == {f: c for f, c in files.items() if not f.endswith(".bin")}


@pytest.mark.restic
async def test_restore_of_a_missing_snapshot(initialized: Restic, tmp_path: Path) -> None:
    """An unknown snapshot ID, or latest for a host without snapshots, is SnapshotNotFound."""
    make_tree(tmp_path / "data")
    await initialized.backup([str(tmp_path / "data")], host=HOST)
    with pytest.raises(SnapshotNotFound, match="deadbeef"):
        await initialized.restore("deadbeef", target=str(tmp_path / "out"))
    with pytest.raises(SnapshotNotFound, match="no snapshot found"):
        await initialized.restore(target=str(tmp_path / "out"), host="host-9")
    with pytest.raises(ValueError, match="not a snapshot"):
        await initialized.restore("--help", target=str(tmp_path / "out"))


@pytest.mark.restic
async def test_wrong_password_is_exit_12(
    initialized: Restic, settings: ResticSettings, tmp_path: Path
) -> None:
    """A password that opens no key raises WrongPassword, and the message does not echo it."""
    wrong = Restic(settings, local_repository(tmp_path / "repo", password="not the password"))
    with pytest.raises(WrongPassword) as caught:
        await wrong.snapshots()
    assert caught.value.exit_code == 12
    assert "not the password" not in str(caught.value)
    with pytest.raises(WrongPassword):
        await wrong.exists()


@pytest.mark.restic
async def test_lock_held_by_a_live_restic_is_exit_11(
    initialized: Restic, repository: ResticRepository, restic_binary: str
) -> None:
    """Another live restic's lock makes an exclusive command fail at once with RepositoryLocked.

    The lock can be read (holder pid and host) and plain unlock leaves it alone: it is not stale.
    """
    holder = await start_lock_holder(restic_binary, repository)
    try:
        locks = await wait_for_locks(initialized)
        lock = await initialized.read_lock(locks[0])
        assert (lock.pid, lock.hostname, lock.exclusive) == (holder.pid, socket.gethostname(), False)
        assert lock.time is not None
        with pytest.raises(RepositoryLocked, match=f"locked by PID {holder.pid}") as caught:
            await initialized.forget(forget_args(Retention(keep_last=1), hosts=[HOST]))
        assert caught.value.exit_code == 11
        assert isinstance(caught.value, RetryLater)
        await initialized.unlock()
        assert await initialized.list_locks() == locks
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        await holder.wait()
    assert await initialized.list_locks() == []


@pytest.mark.restic
async def test_unlock_removes_the_lock_of_a_dead_restic(
    initialized: Restic, repository: ResticRepository, restic_binary: str
) -> None:
    """A lock left by a SIGKILLed restic on this host is stale, and plain unlock removes it."""
    holder = await start_lock_holder(restic_binary, repository)
    try:
        locks = await wait_for_locks(initialized)
    finally:
        holder.kill()
        await holder.wait()
        assert holder.stdin is not None
        holder.stdin.close()
    assert await initialized.list_locks() == locks
    await initialized.unlock()
    assert await initialized.list_locks() == []


@pytest.mark.restic
async def test_unreadable_source_is_a_partial_backup(initialized: Restic, tmp_path: Path) -> None:
    """Exit 3: the snapshot is written, and PartialBackup names the unreadable path.

    Tests run as root, for whom file permissions do not stop reads, so the unreadable source is
    /proc/self/mem: reading it from offset 0 fails with EIO for any process.
    """
    data = tmp_path / "data"
    files = make_tree(data)
    with pytest.raises(PartialBackup) as caught:
        await initialized.backup([str(data), "/proc/self/mem"], host=HOST)
    error = caught.value
    assert error.exit_code == 3
    assert error.unreadable == ("/proc/self/mem",)
    assert "/proc/self/mem" in str(error)
    assert error.summary is not None
    assert error.summary.files_new == len(files)
    assert [s.id for s in await initialized.snapshots()] == [error.snapshot_id]


@pytest.mark.restic
async def test_cancelling_a_backup_interrupts_restic_and_leaves_no_lock(
    initialized: Restic, settings: ResticSettings, tmp_path: Path
) -> None:
    """Cancelling mid-backup SIGINTs restic, which removes its lock; progress came throttled."""
    make_sparse(tmp_path / "big" / "sparse.bin", 16 * 2**30)
    reports: list[tuple[float, BackupStatus]] = []
    running = asyncio.Event()

    def progress(status: BackupStatus) -> None:
        reports.append((time.monotonic(), status))
        if len(reports) >= 3 and status.bytes_done > 0:
            running.set()

    task = asyncio.create_task(initialized.backup([str(tmp_path / "big")], host=HOST, progress_cb=progress))
    await asyncio.wait_for(running.wait(), timeout=60)
    assert await initialized.list_locks() != []
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < settings.interrupt_grace
    assert await initialized.list_locks() == []
    assert await initialized.snapshots() == []
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(reports)]
    assert all(gap >= settings.progress_interval * 0.95 for gap in gaps)
    assert reports[-1][1].total_bytes == 16 * 2**30


@pytest.mark.restic
async def test_restic_slow_to_stop_is_killed_after_the_grace_period(
    initialized: Restic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the grace period after SIGINT restic is SIGKILLed; it had unlocked the repository already.

    restic 0.18 runs its cleanup (removing its lock) as soon as SIGINT arrives, then finishes the
    upload in flight before exiting; a rate-limited upload (--limit-upload) makes that outlast the grace.
    """
    impatient = Restic(dataclasses.replace(initialized.settings, interrupt_grace=1.0), initialized.repository)
    data = tmp_path / "random"
    data.mkdir()
    (data / "blob.bin").write_bytes(os.urandom(24 * 2**20))
    uploading = asyncio.Event()

    def progress(status: BackupStatus) -> None:
        if status.files_done == 1 and status.seconds_elapsed >= 1:  # read, now uploading
            uploading.set()

    backup = impatient.backup([str(data)], host=HOST, extra_args=["--limit-upload=512"], progress_cb=progress)
    task = asyncio.create_task(backup)
    await asyncio.wait_for(uploading.wait(), timeout=60)
    started = time.monotonic()
    task.cancel()
    with (
        caplog.at_level(logging.WARNING, logger="stashlet.agent.restic.runner"),
        pytest.raises(asyncio.CancelledError),
    ):
        await task
    assert time.monotonic() - started < 10
    assert "killing it" in caplog.text
    assert await impatient.list_locks() == []
    assert await impatient.snapshots() == []
    assert (await impatient.check_report()).ok  # what the killed upload left behind is only garbage


@pytest.mark.restic
async def test_check_finds_a_damaged_repository(initialized: Restic, tmp_path: Path) -> None:
    """The check is True for a healthy repository and False, with restic's messages, once an index is lost."""
    make_tree(tmp_path / "data")
    await initialized.backup([str(tmp_path / "data")], host=HOST)
    assert await initialized.check() is True
    for index in (tmp_path / "repo" / "index").iterdir():
        index.unlink()
    report = await initialized.check_report()
    assert report.ok is False
    assert report.num_errors >= 1
    assert any("not found" in message for message in report.errors)
    assert await initialized.check() is False


@pytest.mark.restic
async def test_stats_raw_data_and_restore_size(initialized: Restic, tmp_path: Path) -> None:
    """raw-data gives what the repository stores; restore-size the exact bytes a restore would write."""
    files = make_tree(tmp_path / "data")
    await initialized.backup([str(tmp_path / "data")], host=HOST)
    raw = await initialized.stats()
    assert raw.snapshots_count == 1
    assert raw.total_size > 100_000  # the random file does not compress
    assert raw.total_blob_count > 0
    size = await initialized.stats(mode="restore-size", host=HOST)
    assert size.total_size == sum(len(c) for c in files.values())
    assert size.total_file_count >= len(files)


@pytest.mark.restic
async def test_secrets_stay_out_of_command_lines_and_logs(
    restic: Restic, caplog: pytest.LogCaptureFixture
) -> None:
    """The password travels in restic's environment only: not in the logged command nor in errors."""
    with (
        caplog.at_level(logging.DEBUG, logger="stashlet.agent.restic.runner"),
        pytest.raises(RepositoryNotFound) as caught,
    ):
        await restic.snapshots()
    assert "running" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(restic.repository)
