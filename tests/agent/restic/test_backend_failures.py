"""A backend that refuses or does not answer, with real restic and the real REST server (basic auth).

A wrong REST password is WrongCredentials, named with the backend's location and without restic's
"Is there a repository at the following location?"; a server stopped mid-backup is reported unreachable
(since the first failed try) while restic retries, and given up after the watch's bound with
BackendUnavailable; a server back within the bound is reported answering again and the backup ends well.
With the endpoint probe the agent gives the watch (:func:`probe_for`), a server killed mid-backup is
given up the same way, and a server that was never there while restic opens the repository too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.polling import eventually

from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.backend_watch import DEADLINE_MARGIN, BackendState, BackendWatch
from stashlet.agent.restic.endpoint import probe_for
from stashlet.agent.restic.errors import BackendUnavailable, WrongCredentials
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.localcluster import tools
from stashlet.localcluster.processes import free_port

pytestmark = pytest.mark.restic

USER = "stash"
REST_PASSWORD = "rest-pass-4711"
PASSWORD = "repository-password-1"
HOST = "host-0"


class RestServer:
    """The pinned rest-server on 127.0.0.1 with one htpasswd user; stoppable and restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / "rest-server.log"
        root.mkdir(parents=True, exist_ok=True)
        digest = base64.b64encode(hashlib.sha1(REST_PASSWORD.encode()).digest()).decode()  # noqa: S324 - htpasswd's {SHA}
        (root / ".htpasswd").write_text(f"{USER}:{{SHA}}{digest}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = tools.tool_dir(tools.REST_SERVER) / "rest-server"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(binary), "--path", str(self.root), "--listen", f"127.0.0.1:{self.port}"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while "start server on" not in self.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def repository(self, rest_password: str = REST_PASSWORD) -> ResticRepository:
        backend = {"rest": {"url": f"http://127.0.0.1:{self.port}/repo"}, "storageSecretName": "s"}
        secret = {
            "RESTIC_PASSWORD": PASSWORD.encode(),
            "REST_SERVER_USERNAME": USER.encode(),
            "REST_SERVER_PASSWORD": rest_password.encode(),
        }
        return build_repository(backend, secret, files_dir=str(self.root.parent / "files"))


@pytest.fixture
def rest_server(tmp_path: Path) -> Iterator[RestServer]:
    server = RestServer(tmp_path / "rest")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def rest_restic(settings: ResticSettings, rest_server: RestServer) -> Restic:
    restic = Restic(settings, rest_server.repository())
    await restic.init()
    return restic


def big_tree(root: Path, megabytes: int) -> Path:
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))
    return root


async def test_wrong_rest_password_is_wrong_credentials(
    settings: ResticSettings, rest_server: RestServer, rest_restic: Restic
) -> None:
    """401 from the REST server: WrongCredentials naming the backend, without restic's location hint and
    without any secret."""
    wrong = Restic(settings, rest_server.repository(rest_password="not-the-password"))
    with pytest.raises(WrongCredentials) as caught:
        await wrong.snapshots()
    error = caught.value
    assert error.reason == "WrongCredentials"
    assert error.exit_code == 1
    location = f"rest:http://127.0.0.1:{rest_server.port}/repo"
    assert error.message.startswith(f"backend {location} refused the storage Secret's credentials: ")
    assert "401 Unauthorized" in error.message
    assert "Is there a repository" not in error.message
    assert "not-the-password" not in error.message and PASSWORD not in error.message
    assert f"{USER}:" not in error.message  # no user part of the URL either
    assert await rest_restic.snapshots() == []  # the right password still works


async def test_a_backend_stopped_mid_backup_is_reported_and_given_up(
    rest_restic: Restic, rest_server: RestServer, tmp_path: Path
) -> None:
    """The server dies while restic uploads: the watch reports it unreachable since the first failed
    try, with restic's error and no credential; after the bound restic is interrupted and
    BackendUnavailable names the backend and since when."""
    data = big_tree(tmp_path / "data", 48)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    assert rest_restic.repository is not None
    watch = BackendWatch(rest_restic.repository.display_url, 8.0, report)
    rest_restic.on_backend = watch.notice
    progressed = asyncio.Event()
    backup = asyncio.ensure_future(
        watch.guard(
            lambda: rest_restic.backup(
                [str(data)],
                host=HOST,
                extra_args=["--limit-upload=2048"],
                progress_cb=lambda status: progressed.set() if status.bytes_done else None,
            ),
            hurry=rest_restic.hurry,
        )
    )
    await asyncio.wait_for(progressed.wait(), 60)
    rest_server.stop()
    stopped = time.time()
    await eventually(lambda: reports, timeout=30, interval=0.2, what="the unreachable backend reported")
    first = reports[0]
    assert first.reachable is False
    assert stopped - 1 <= first.since.timestamp() <= stopped + 20
    assert "connection refused" in first.error
    assert REST_PASSWORD not in first.message and f"{USER}:" not in first.message
    assert first.message.startswith(
        f"backend rest:http://127.0.0.1:{rest_server.port}/repo unreachable since "
    )
    with pytest.raises(BackendUnavailable) as caught:
        await asyncio.wait_for(backup, 90)
    gave_up = time.time()
    # the bound, plus restic's short grace (it would spend 60s retrying to remove its lock there)
    assert 8 <= gave_up - first.since.timestamp() < 8 + 3 + 5
    assert "unreachable since" in caught.value.message
    assert "gave up after" in caught.value.message and "the bound is 8s" in caught.value.message
    assert caught.value.reason == "BackendUnavailable"
    assert len(reports) == 1  # no flapping: one report per change


async def test_a_backend_back_within_the_bound_is_reported_answering(
    rest_restic: Restic, rest_server: RestServer, tmp_path: Path
) -> None:
    """A short outage: reported unreachable, then answering again once restic's retries go through; the
    backup ends with its snapshot."""
    data = big_tree(tmp_path / "data", 24)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    assert rest_restic.repository is not None
    watch = BackendWatch(rest_restic.repository.display_url, 120.0, report)
    rest_restic.on_backend = watch.notice
    progressed = asyncio.Event()
    backup = asyncio.ensure_future(
        watch.guard(
            lambda: rest_restic.backup(
                [str(data)],
                host=HOST,
                extra_args=["--limit-upload=2048"],
                progress_cb=lambda status: progressed.set() if status.bytes_done else None,
            )
        )
    )
    await asyncio.wait_for(progressed.wait(), 60)
    rest_server.stop()
    await eventually(lambda: reports, timeout=30, interval=0.2, what="the unreachable backend reported")
    rest_server.start()
    summary = await asyncio.wait_for(backup, 120)
    assert summary.snapshot_id
    assert [r.reachable for r in reports] == [False, True]
    assert reports[1].since >= reports[0].since  # times are whole seconds (as conditions carry them)
    assert reports[1].message.startswith(
        f"backend rest:http://127.0.0.1:{rest_server.port}/repo answers again"
    )
    assert watch.unreachable_for() == 0


async def test_a_dead_backend_is_given_up_before_the_sessions_deadline(
    rest_restic: Restic, rest_server: RestServer, tmp_path: Path
) -> None:
    """With a session deadline close, a dead backend is given up DEADLINE_MARGIN seconds before it
    (long before the bound), so the session fails with the backend's reason, not a bare timeout."""
    data = big_tree(tmp_path / "data", 48)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    assert rest_restic.repository is not None
    watch = BackendWatch(rest_restic.repository.display_url, 300.0, report)
    rest_restic.on_backend = watch.notice
    progressed = asyncio.Event()
    deadline = time.time() + 25
    backup = asyncio.ensure_future(
        watch.guard(
            lambda: rest_restic.backup(
                [str(data)],
                host=HOST,
                extra_args=["--limit-upload=2048"],
                progress_cb=lambda status: progressed.set() if status.bytes_done else None,
            ),
            deadline=deadline,
            hurry=rest_restic.hurry,
        )
    )
    await asyncio.wait_for(progressed.wait(), 20)
    rest_server.stop()
    with pytest.raises(BackendUnavailable, match="before the session's timeOut"):
        await asyncio.wait_for(backup, 60)
    assert deadline - DEADLINE_MARGIN - 1 <= time.time() < deadline  # given up in time to record it
    assert [r.reachable for r in reports] == [False]


async def test_a_backend_killed_mid_backup_is_given_up_with_the_probe(
    rest_restic: Restic, rest_server: RestServer, tmp_path: Path
) -> None:
    """The watch as the agent builds it, with the repository's endpoint probe: the server is killed while
    restic uploads; reported unreachable within a probe's cadence of the kill, given up after the bound
    with BackendUnavailable naming the backend and the refused connection, without a credential."""
    data = big_tree(tmp_path / "data", 48)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    repository = rest_restic.repository
    assert repository is not None
    watch = BackendWatch(
        repository.display_url, 8.0, report, probe=probe_for(repository, rest_restic.settings.base_env)
    )
    rest_restic.on_backend = watch.notice
    progressed = asyncio.Event()
    backup = asyncio.ensure_future(
        watch.guard(
            lambda: rest_restic.backup(
                [str(data)],
                host=HOST,
                extra_args=["--limit-upload=2048"],
                progress_cb=lambda status: progressed.set() if status.bytes_done else None,
            ),
            hurry=rest_restic.hurry,
        )
    )
    await asyncio.wait_for(progressed.wait(), 60)
    assert reports == []  # the live server was probed and not flagged
    rest_server.stop()
    stopped = time.time()
    with pytest.raises(BackendUnavailable) as caught:
        await asyncio.wait_for(backup, 90)
    assert [r.reachable for r in reports] == [False]
    assert stopped - 1 <= reports[0].since.timestamp() <= stopped + 6  # a probe every 5s at most
    assert 8 <= time.time() - reports[0].since.timestamp() < 8 + 3 + 5
    message = caught.value.message
    assert message.startswith(f"backend rest:http://127.0.0.1:{rest_server.port}/repo unreachable since ")
    assert "connection refused" in message and "the bound is 8s" in message
    assert REST_PASSWORD not in message and f"{USER}:" not in message


async def test_a_rest_server_never_there_is_given_up_with_the_probe(
    settings: ResticSettings, tmp_path: Path
) -> None:
    """No server on the repository's port while restic opens it: restic's retries and the probe both
    see the refusal; given up after the bound, before restic's own 15 minutes."""
    absent = RestServer(tmp_path / "absent")  # never started: its port refuses
    repository = absent.repository()
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(repository.display_url, 5.0, report, probe=probe_for(repository, {}))
    restic = Restic(settings, repository, on_backend=watch.notice)
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="connection refused"):
        await watch.guard(restic.snapshots, hurry=restic.hurry)
    assert 5 <= time.monotonic() - began < 5 + 3 + 5
    assert [r.reachable for r in reports] == [False]
