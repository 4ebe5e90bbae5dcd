"""The async restic runner: one ``restic`` subprocess per call, streamed, interruptible, typed.

restic runs via ``asyncio.create_subprocess_exec`` (never a shell) with ``--json``, an environment
built from the settings and the repository only (the agent's own environment is not inherited, so
no unrelated secret reaches restic, and credentials never appear on the command line), stdin
closed, and the configured niceness and I/O priority applied in the child before restic starts
(:mod:`stashlet.agent.restic.priority`). Its stdout is read in chunks and handed on line by line;
its stderr is kept as a bounded tail plus a bounded list of per-item errors. Progress callbacks are
throttled. Cancelling the calling task sends SIGINT to restic and waits (then SIGKILL after a grace
period), so that restic removes its lock before the cancellation propagates. A failed run raises
from the taxonomy in :mod:`stashlet.agent.restic.errors`, with secret values scrubbed from every
message.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import ResticRepository
from stashlet.agent.restic.errors import ResticFailed, ResticUnavailable, error_for_exit
from stashlet.agent.restic.priority import ChildPriority, ProcessPriority
from stashlet.agent.restic.retention import (
    EmptyRetentionPolicy,
    UnscopedRetention,
    keeps_something,
    names_a_host,
)
from stashlet.api import versions

log = logging.getLogger(__name__)

S = TypeVar("S")
U = TypeVar("U")
MIN_VERSION: tuple[int, int, int] = versions.RESTIC_MIN
INHERITED_ENV = (
    "PATH", "HOME", "TZ", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_REGION",
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "AZURE_ENDPOINT_SUFFIX", "STORAGE_EMULATOR_HOST",
)  # fmt: skip
"""Names worth passing from the agent's environment to restic (proxies, workload identity, and the
endpoint of a store outside the public cloud: another Azure cloud's suffix, a GCS-compatible server)."""

_CHUNK = 64 * 1024
_MAX_LINE_KEPT = 4096
_HEX_ID = re.compile(r"^[0-9a-f]{1,64}$")


def inherited_env(environ: Mapping[str, str], names: Sequence[str] = INHERITED_ENV) -> dict[str, str]:
    """The entries of ``environ`` named in ``names``: a ``base_env`` for :class:`ResticSettings`."""
    return {name: environ[name] for name in names if name in environ}


@dataclass(frozen=True)
class ResticSettings:
    """How to run restic; frozen, passed in.

    ``cache_dir`` ``None`` runs with ``--no-cache``. ``retry_lock`` (seconds) lets restic wait for a
    lock; ``None`` fails at once with :class:`~stashlet.agent.restic.errors.RepositoryLocked`.
    ``progress_fps`` sets how often restic reports (``RESTIC_PROGRESS_FPS``) and
    ``progress_interval`` how often callbacks hear of it. ``interrupt_grace`` is how long restic gets
    to clean up after SIGINT before SIGKILL. ``priority`` is the niceness and I/O priority every restic
    process starts with (:mod:`stashlet.agent.restic.priority`).

    ``lock_wait`` (seconds) bounds how long a session waits for a live holder of the repository's lock
    when it has no ``timeOut`` of its own (:mod:`stashlet.agent.stale_locks`). ``backend_give_up``
    (seconds) bounds how long restic may keep retrying an unreachable backend before the session gives
    up with ``BackendUnavailable`` (:mod:`stashlet.agent.restic.backend_watch`); restic alone would retry for
    15 minutes.
    """

    binary: str = "restic"
    min_version: tuple[int, int, int] = MIN_VERSION
    cache_dir: str | None = None
    tmp_dir: str | None = None
    base_env: Mapping[str, str] = field(default_factory=dict)
    retry_lock: float | None = None
    progress_fps: float = 2.0
    progress_interval: float = 0.5
    interrupt_grace: float = 30.0
    stderr_tail_lines: int = 40
    max_item_errors: int = 100
    priority: ProcessPriority = field(default_factory=ProcessPriority)
    lock_wait: float = 600.0
    backend_give_up: float = 300.0


@dataclass(frozen=True)
class RunResult:
    """A finished restic run: exit code, collected stdout (if asked for) and what stderr said."""

    exit_code: int
    stdout: str
    stderr_tail: str
    item_errors: tuple[rj.ItemError, ...]
    error_count: int
    exit_error: rj.ExitError | None


class _Throttle(Generic[S]):
    """Hands the latest of many reports to a callback at most every ``interval`` seconds."""

    def __init__(self, callback: Callable[[S], None] | None, interval: float) -> None:
        self._callback = callback
        self._interval = interval
        self._last = float("-inf")
        self._pending: S | None = None

    def offer(self, report: S) -> None:
        self._pending = report
        if time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self) -> None:
        report, self._pending = self._pending, None
        if report is None or self._callback is None:
            return
        self._last = time.monotonic()
        try:
            self._callback(report)
        except Exception:  # a broken progress consumer must not break a backup
            log.exception("restic progress callback failed")


_RETRY_DETAIL_LINES = 8
"""Lines after a retry line taken as its error's detail, at most."""


class _Stderr:
    """A bounded view of restic's stderr: the last lines, the first item errors, the exit error."""

    def __init__(
        self,
        tail_lines: int,
        max_errors: int,
        on_backend: Callable[[rj.BackendNotice], None] | None = None,
    ) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.errors: list[rj.ItemError] = []
        self.error_count = 0
        self.exit_error: rj.ExitError | None = None
        self._max_errors = max_errors
        self._on_backend = on_backend
        self._retry: rj.BackendRetry | None = None
        self._retry_lines = 0

    def feed(self, line: str) -> None:
        if self._on_backend is not None and (notice := self._backend_notice(line)) is not None:
            try:
                self._on_backend(notice)
            except Exception:  # a broken watcher must not break a backup
                log.exception("restic backend callback failed")
        message = rj.parse_diagnostic(line)
        if isinstance(message, rj.ExitError):
            self.exit_error = message
            return
        if isinstance(message, rj.ItemError):
            self.error_count += 1
            if len(self.errors) < self._max_errors:
                self.errors.append(message)
            line = f"{message.item}: {message.message}" if message.item else message.message
        if line.strip():
            self.tail.append(line[:_MAX_LINE_KEPT])

    def _backend_notice(self, line: str) -> rj.BackendNotice | None:
        """The notice ``line`` makes: a retry or a recovery line, or a line of detail under the last retry
        line (an SDK writes an HTTP error's status and code on lines of their own: the retry again, its
        error with that line added, so that what no retry cures is told at once)."""
        notice = rj.parse_backend_notice(line)
        text = line.strip()
        if isinstance(notice, rj.BackendRetry):
            self._retry, self._retry_lines = notice, 0
        elif notice is None and self._retry is not None and text and not text.startswith("{"):
            if self._retry_lines >= _RETRY_DETAIL_LINES or not text.strip("-"):
                return None  # the Azure SDK's rules of dashes carry nothing
            self._retry_lines += 1
            self._retry = notice = rj.BackendRetry(self._retry.operation, f"{self._retry.error}; {text}")
        else:
            self._retry = None  # a blank line, a recovery or JSON ends a retry's detail
        return notice


async def _pump(stream: asyncio.StreamReader | None, on_line: Callable[[str], None]) -> None:
    """Read ``stream`` in chunks and call ``on_line`` for each line, never holding more than one line."""
    if stream is None:
        return
    buf = bytearray()
    scanned = 0
    while chunk := await stream.read(_CHUNK):
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", max(start, scanned))) >= 0:
            on_line(buf[start:end].decode("utf-8", "replace").rstrip("\r"))
            start = end + 1
        del buf[:start]
        scanned = len(buf)
    if buf:
        on_line(buf.decode("utf-8", "replace").rstrip("\r"))


async def restic_version(settings: ResticSettings) -> rj.ResticVersion:
    """The version of ``settings.binary``; :class:`ResticUnavailable` if missing or too old."""
    result = await Restic(settings, None).run(["version"], collect=True)
    version = rj.parse_version(result.stdout) if result.exit_code == 0 else None
    if version is None:
        raise ResticUnavailable(f"cannot tell the version of {settings.binary} (exit {result.exit_code})")
    if version.number < settings.min_version:
        wanted = ".".join(map(str, settings.min_version))
        raise ResticUnavailable(f"restic {version.version} is too old: stashlet needs restic >= {wanted}")
    return version


class Restic:
    """restic bound to one repository (``None`` only for repository-less commands like ``version``).

    ``on_backend`` hears of every backend retry restic reports and of every retried operation that went
    through (see :mod:`stashlet.agent.restic.backend_watch`); the caller may set it at any time.
    """

    def __init__(
        self,
        settings: ResticSettings,
        repository: ResticRepository | None,
        on_backend: Callable[[rj.BackendNotice], None] | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.on_backend = on_backend
        self._interrupt_grace = settings.interrupt_grace
        self._files_written = False
        self._cleanups: set[asyncio.Task[None]] = set()
        self.processes = 0
        """How many restic processes this runner started."""
        self.seconds = 0.0
        """The wall time they ran, summed (start to exit, output read)."""

    # --- the runner ---------------------------------------------------------------------------

    def _argv(self, args: Sequence[str]) -> list[str]:
        s = self.settings
        argv = [s.binary, "--json", f"--cache-dir={s.cache_dir}" if s.cache_dir else "--no-cache"]
        if s.retry_lock:
            argv.append(f"--retry-lock={s.retry_lock:g}s")
        if self.repository is not None:
            argv += self.repository.options
        return argv + list(args)

    def _env(self) -> dict[str, str]:
        env = dict(self.settings.base_env)
        env["RESTIC_PROGRESS_FPS"] = f"{self.settings.progress_fps:g}"
        if self.settings.tmp_dir:
            env["TMPDIR"] = self.settings.tmp_dir
        if self.repository is not None:
            env.update(self.repository.env)
        return env

    def hurry(self, grace: float) -> None:
        """From now on give an interrupted restic only ``grace`` seconds before SIGKILL: when the backend
        is given up, restic would spend its whole grace retrying to remove its lock there. The lock it
        leaves is this pod's, of a process that no longer runs (:mod:`stashlet.agent.stale_locks`)."""
        self._interrupt_grace = min(self._interrupt_grace, grace)

    def scrub(self, text: str) -> str:
        """``text`` without the repository's secret values."""
        return self.repository.scrub(text) if self.repository is not None else text

    async def run(
        self, args: Sequence[str], *, on_line: Callable[[str], None] | None = None, collect: bool = False
    ) -> RunResult:
        """Run ``restic <global options> <args>``; stdout lines go to ``on_line`` and/or are collected.

        Returns whatever the exit code; cancellation interrupts restic (SIGINT, then SIGKILL).
        """
        if self.repository is not None and not self._files_written:
            _write_files(self.repository.files)
            self._files_written = True
        argv = self._argv(args)
        log.debug("running %s", self.scrub(" ".join(argv)))
        collected: list[str] = []

        def stdout_line(line: str) -> None:
            if collect:
                collected.append(line)
            if on_line is not None:
                on_line(line)

        def backend_notice(notice: rj.BackendNotice) -> None:
            if self.on_backend is not None:
                self.on_backend(
                    dataclasses.replace(notice, error=self.scrub(notice.error))
                    if isinstance(notice, rj.BackendRetry)
                    else notice
                )

        stderr = _Stderr(self.settings.stderr_tail_lines, self.settings.max_item_errors, backend_notice)
        began = time.monotonic()
        proc = await self._spawn(argv)
        self.processes += 1
        pumps = {
            asyncio.create_task(_pump(proc.stdout, stdout_line)),
            asyncio.create_task(_pump(proc.stderr, stderr.feed)),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raises what failed while reading restic's output
            exit_code = await proc.wait()
        except BaseException:
            cleanup = asyncio.create_task(self._stop(proc, pumps))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            await asyncio.shield(cleanup)
            raise
        finally:
            self.seconds += time.monotonic() - began
        return RunResult(
            exit_code=exit_code,
            stdout="\n".join(collected),
            stderr_tail=self.scrub("\n".join(stderr.tail)),
            item_errors=tuple(stderr.errors),
            error_count=stderr.error_count,
            exit_error=stderr.exit_error,
        )

    async def _spawn(self, argv: Sequence[str]) -> asyncio.subprocess.Process:
        """Start restic with its pipes, environment and priorities; a refused priority raises."""
        priority = self.settings.priority
        child = None if priority.empty else ChildPriority(priority)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
                start_new_session=True,  # signals reach restic only as we forward them
                preexec_fn=child.apply if child is not None else None,
            )
        except OSError as exc:
            raise ResticUnavailable(f"cannot run {self.settings.binary}: {exc.strerror or exc}") from exc
        except subprocess.SubprocessError as exc:
            refusal = child.refusal() if child is not None else None
            if refusal is None:
                raise ResticUnavailable(f"cannot run {self.settings.binary}: {exc}") from exc
            raise refusal from exc
        finally:
            if child is not None:
                child.close()

    async def _stop(self, proc: asyncio.subprocess.Process, pumps: set[asyncio.Task[None]]) -> None:
        """SIGINT restic so it removes its lock; SIGKILL it if it has not exited within the grace."""
        if proc.returncode is None:
            log.info("interrupting restic (pid %s)", proc.pid)
            try:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.wait(), self._interrupt_grace)
            except ProcessLookupError:
                pass
            except TimeoutError:
                log.warning("restic (pid %s) still runs after SIGINT, killing it", proc.pid)
                proc.kill()
                await proc.wait()
        _, pending = await asyncio.wait(pumps, timeout=5)
        for task in pending:
            task.cancel()

    async def _checked(self, args: Sequence[str], **kwargs: Any) -> RunResult:
        """Run and raise the taxonomy error unless restic exited 0."""
        result = await self.run(args, **kwargs)
        self._raise_for(result)
        return result

    def _raise_for(self, result: RunResult, summary: rj.BackupSummary | None = None) -> None:
        json_error = self.scrub(result.exit_error.message) if result.exit_error else None
        unreadable = [e.item for e in result.item_errors if e.item]
        error = error_for_exit(
            result.exit_code,
            result.stderr_tail,
            json_error,
            unreadable=unreadable,
            summary=summary,
            location=self.repository.display_url if self.repository is not None else None,
        )
        if error is not None:
            raise error

    # --- commands -----------------------------------------------------------------------------

    async def version(self) -> rj.ResticVersion:
        """The version of restic, refusing one older than ``settings.min_version``."""
        return await restic_version(self.settings)

    async def init(self) -> str:
        """Create the repository; returns its ID."""
        return rj.parse_init((await self._checked(["init"], collect=True)).stdout)

    async def cat_config(self) -> dict[str, Any]:
        """The repository's config (version, id, chunker polynomial)."""
        result = await self._checked(["cat", "config", "--no-lock"], collect=True)
        config = rj.load_object(result.stdout.replace("\n", " "))
        return dict(config) if config is not None else {}

    async def exists(self) -> bool:
        """Whether a repository exists at the location (exit 10 means no; other errors raise)."""
        result = await self.run(["cat", "config", "--no-lock"])
        if result.exit_code == 10:
            return False
        self._raise_for(result)
        return True

    async def backup(
        self,
        paths: Sequence[str],
        *,
        host: str,
        tags: Sequence[str] = (),
        excludes: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        progress_cb: Callable[[rj.BackupStatus], None] | None = None,
    ) -> rj.BackupSummary:
        """Back up ``paths`` as ``host``; raises :class:`PartialBackup` (with the summary) on exit 3."""
        if not host:
            raise ValueError("backup needs a host name")
        args = [
            "backup",
            f"--host={host}",
            *(f"--tag={t}" for t in tags),
            *(f"--exclude={e}" for e in excludes),
        ]
        result, summary = await self._reporting(
            [*args, *extra_args, "--", *paths],
            rj.parse_backup_message,
            (rj.BackupStatus, rj.BackupSummary),
            progress_cb,
        )
        self._raise_for(result, summary)
        if summary is None:
            raise ResticFailed("restic backup exited 0 but printed no summary", exit_code=0)
        return summary

    async def restore(
        self,
        snapshot: str = "latest",
        *,
        target: str,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        host: str | None = None,
        paths: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        progress_cb: Callable[[rj.RestoreStatus], None] | None = None,
    ) -> rj.RestoreSummary:
        """Restore ``snapshot`` (an ID, ``latest``, or ``ID:subfolder``) into ``target``."""
        if not snapshot or snapshot.startswith("-"):
            raise ValueError(f"not a snapshot: {snapshot!r}")
        args = ["restore", f"--target={target}", *(f"--include={i}" for i in include)]
        args += [f"--exclude={e}" for e in exclude]
        args += _filters(host, paths)
        result, summary = await self._reporting(
            [*args, *extra_args, "--", snapshot],
            rj.parse_restore_message,
            (rj.RestoreStatus, rj.RestoreSummary),
            progress_cb,
        )
        self._raise_for(result)
        if summary is None:
            raise ResticFailed("restic restore exited 0 but printed no summary", exit_code=0)
        return summary

    async def _reporting(
        self,
        args: Sequence[str],
        parse: Callable[[str], object],
        kinds: tuple[type[S], type[U]],
        progress_cb: Callable[[S], None] | None,
    ) -> tuple[RunResult, U | None]:
        """Run a command that streams JSON lines: its status lines go to ``progress_cb`` (throttled),
        and the last of its summary lines comes back with the result."""
        status_kind, summary_kind = kinds
        throttle: _Throttle[S] = _Throttle(progress_cb, self.settings.progress_interval)
        summaries: list[U] = []

        def on_line(line: str) -> None:
            message = parse(line)
            if isinstance(message, status_kind):
                throttle.offer(message)
            elif isinstance(message, summary_kind):
                summaries.append(message)

        result = await self.run(args, on_line=on_line)
        throttle.flush()
        return result, summaries[-1] if summaries else None

    async def snapshots(
        self,
        *,
        host: str | None = None,
        paths: Sequence[str] = (),
        tags: Sequence[str] = (),
        latest: int | None = None,
        no_lock: bool = False,
    ) -> list[rj.Snapshot]:
        """The snapshots matching the filters, oldest first. With ``no_lock`` restic writes no lock (it
        takes a shared one otherwise, which an exclusive ``forget``, ``check`` or ``prune`` waits for)."""
        args = ["snapshots", *_filters(host, paths), *(f"--tag={t}" for t in tags)]
        if latest is not None:
            args.append(f"--latest={latest}")
        if no_lock:
            args.append("--no-lock")
        return rj.parse_snapshots((await self._checked(args, collect=True)).stdout)

    async def forget(self, args: Sequence[str]) -> rj.ForgetResult:
        """Run ``restic forget <args>`` (from :func:`~stashlet.agent.restic.retention.forget_args`);
        refuses arguments that keep nothing or name no ``--host``."""
        if not keeps_something(args):
            raise EmptyRetentionPolicy("refusing to run restic forget without a --keep-* option")
        if not names_a_host(args):
            raise UnscopedRetention("refusing to run restic forget without --host: it would reach every host")
        return rj.parse_forget((await self._checked(["forget", *args], collect=True)).stdout)

    async def forget_snapshots(self, ids: Sequence[str]) -> None:
        """Forget exactly the snapshots ``ids`` (by full ID, no policy): what a Repository's
        ``wipeOut`` asks, never a retention policy."""
        if ids:
            await self._checked(["forget", "--", *ids])

    async def prune(self) -> None:
        """Remove the data no snapshot references any more."""
        await self._checked(["prune"])

    async def check_report(self, *, read_data_subset: str | None = None) -> rj.CheckResult:
        """Check the repository; a damaged one gives ``ok=False``, a check that could not run raises.

        restic prints a summary (``num_errors: 1``) even when the check never ran: it could not take its
        exclusive lock (exit 11) or reach the backend. Only exit 0, or exit 1 with restic's own verdict
        "repository contains errors", is a check's result; anything else raises from the taxonomy.
        """
        args = ["check"] + ([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])
        result = await self.run(args, collect=True)
        found = [r for line in result.stdout.splitlines() if (r := rj.parse_check_summary(line))]
        report = found[-1] if found else None
        if report is not None and (result.exit_code == 0 or _found_errors(result)):
            errors = tuple(self.scrub(e.message.strip()) for e in result.item_errors if e.message.strip())
            return dataclasses.replace(report, ok=report.ok and result.exit_code == 0, errors=errors)
        self._raise_for(result)
        return rj.CheckResult(True, 0, (), False, False)

    async def check(self, *, read_data_subset: str | None = None) -> bool:
        """Whether the repository is free of errors (``restic check``)."""
        return (await self.check_report(read_data_subset=read_data_subset)).ok

    async def stats(
        self, *, mode: str = "raw-data", snapshots: Sequence[str] = (), host: str | None = None
    ) -> rj.RepoStats:
        """``restic stats`` in ``mode`` (``raw-data``: stored size; ``restore-size``: restorable size)."""
        args = ["stats", f"--mode={mode}", *_filters(host, ()), "--", *snapshots]
        return rj.parse_stats((await self._checked(args, collect=True)).stdout)

    async def unlock(self) -> None:
        """Remove stale locks only (``restic unlock``)."""
        await self._checked(["unlock"])

    async def unlock_all(self) -> None:
        """Remove every lock (``restic unlock --remove-all``): only once each holder is known gone
        (:mod:`stashlet.agent.stale_locks` decides)."""
        await self._checked(["unlock", "--remove-all"])

    async def list_locks(self) -> list[str]:
        """The IDs of the locks in the repository."""
        return rj.parse_ids((await self._checked(["list", "locks", "--no-lock"], collect=True)).stdout)

    async def read_lock(self, lock_id: str) -> rj.Lock:
        """Who holds lock ``lock_id`` (hostname, pid, time, exclusive)."""
        if not _HEX_ID.match(lock_id):
            raise ValueError(f"not a lock ID: {lock_id!r}")
        result = await self._checked(["cat", "lock", lock_id, "--no-lock"], collect=True)
        return rj.parse_lock(result.stdout, lock_id)


def _found_errors(result: RunResult) -> bool:
    """Whether a ``check`` that exited non-zero did so because it found the repository damaged."""
    verdict = result.exit_error.message if result.exit_error is not None else ""
    return result.exit_code == 1 and "repository contains errors" in verdict


def _filters(host: str | None, paths: Sequence[str]) -> list[str]:
    return ([f"--host={host}"] if host else []) + [f"--path={p}" for p in paths]


def _write_files(files: Mapping[str, bytes]) -> None:
    """Write the repository's key/certificate files, readable by this user only."""
    for path, content in files.items():
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
