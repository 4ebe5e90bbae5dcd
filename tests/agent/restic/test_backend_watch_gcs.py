"""The watch's endpoint probe against a real GCS JSON API server (fake-gcs-server) and the pinned restic.

restic 0.18.1 prints nothing while a GCS endpoint refuses connections: Google's storage client retries
inside one call until its context ends. These tests show it (restic hands the watch no notice at all)
and that the probe the agent builds for the repository (:func:`probe_for`, the server's address taken
from ``STORAGE_EMULATOR_HOST`` as the agent's container env gives it) still gets the session out: a
stopped server is given up after the bound with BackendUnavailable naming ``gs:<bucket>:/<prefix>``, a
server back within the bound is reported answering again and the operation ends well, and a live server
under a long silent upload is never flagged. The key's ``token_uri`` is the FAKE token endpoint of
:mod:`tests.stores.fake_gcs` (Google's own cannot be reached here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.polling import eventually
from tests.stores.fake_gcs import FakeTokenEndpoint, GcsServer, ServiceAccount, fake_gcs_server

from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.endpoint import Probe, probe_for
from stashlet.agent.restic.errors import BackendUnavailable
from stashlet.agent.restic.runner import Restic, ResticSettings, inherited_env
from stashlet.localcluster.processes import ManagedProcess

pytestmark = pytest.mark.restic

PROJECT = "stashlet-demo"
BUCKET = "appscode-qa"
PASSWORD = "changeit-4711"
HOST = "host-0"


@dataclass
class GcsRepo:
    """A repository on a running fake-gcs-server, restic as the agent runs it, and the probe it gets."""

    server: GcsServer
    repository: ResticRepository
    restic: Restic
    probe: Probe
    private_key: str

    @property
    def location(self) -> str:
        return self.repository.display_url

    def stop_server(self) -> None:
        self.server.process.stop()

    def restart_server(self) -> ManagedProcess:
        """The same server again (same address, same objects on disk)."""
        popen = self.server.process.popen
        assert popen is not None and isinstance(popen.args, list)
        return ManagedProcess.start("fake-gcs-server", [str(a) for a in popen.args], self.server.process.log)


@pytest.fixture
def gcs_repo(tmp_path: Path, settings: ResticSettings) -> Iterator[GcsRepo]:
    """A fresh fake-gcs-server with the guide's bucket and a token endpoint trusting one account; the
    guide's Repository ``gs:appscode-qa:/sample/data`` mapped by the agent."""
    account = ServiceAccount.generate(PROJECT)
    with fake_gcs_server(tmp_path / "fake-gcs") as server, FakeTokenEndpoint().running() as tokens:
        tokens.trust(account)
        server.create_bucket(BUCKET, PROJECT)
        key = account.key_json(PROJECT, tokens.token_uri)
        secret = {
            "RESTIC_PASSWORD": PASSWORD.encode(),
            "GOOGLE_PROJECT_ID": PROJECT.encode(),
            "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": key,
        }
        backend = {"gcs": {"bucket": BUCKET, "prefix": "/sample/data/"}, "storageSecretName": "gcs-secret"}
        repository = build_repository(backend, secret, files_dir=str(tmp_path / "files"))
        environ = {**os.environ, "STORAGE_EMULATOR_HOST": server.url}
        agent_settings = dataclasses.replace(settings, base_env=inherited_env(environ))
        probe = probe_for(repository, agent_settings.base_env)
        assert probe is not None
        private = next(line for line in key.decode().split("\\n") if line and "-----" not in line)
        yield GcsRepo(server, repository, Restic(agent_settings, repository), probe, private)


def watched(
    gcs: GcsRepo, give_up_after: float, probe_every: float
) -> tuple[BackendWatch, list[BackendState], list[rj.BackendNotice]]:
    """A watch with the repository's probe; the reports it makes and what restic itself said."""
    reports: list[BackendState] = []
    notices: list[rj.BackendNotice] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(gcs.location, give_up_after, report, probe=gcs.probe, probe_every=probe_every)

    def notice(seen: rj.BackendNotice) -> None:
        notices.append(seen)
        watch.notice(seen)

    gcs.restic.on_backend = notice
    return watch, reports, notices


async def test_a_stopped_gcs_server_is_given_up_though_restic_is_silent(gcs_repo: GcsRepo) -> None:
    """The repository exists, the server stops: restic's listing says nothing at all; the probe reports
    the endpoint unreachable and the watch gives up after the bound, restic interrupted, with
    BackendUnavailable naming the gs: location and the refused address, no secret in it."""
    await gcs_repo.restic.init()
    gcs_repo.stop_server()
    watch, reports, notices = watched(gcs_repo, 6.0, 1.0)
    began = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await watch.guard(lambda: gcs_repo.restic.snapshots(host=HOST), hurry=gcs_repo.restic.hurry)
    took = time.monotonic() - began
    assert 6 <= took < 6 + 1 + 3 + 5, took  # the bound, a probe's cadence, restic's short grace, slack
    assert notices == []  # restic itself printed no retry: the probe alone saw it
    address = gcs_repo.server.url.removeprefix("http://")
    assert [r.reachable for r in reports] == [False]
    assert reports[0].message.startswith("backend gs:appscode-qa:/sample/data unreachable since ")
    message = caught.value.message
    assert caught.value.reason == "BackendUnavailable"
    assert message.startswith("backend gs:appscode-qa:/sample/data unreachable since ")
    assert (
        f"restic retries silently, its endpoint: dial tcp {address}: connect: connection refused" in message
    )
    gave_up = re.search(r"gave up after (\d+)s of retries \(the bound is 6s\)", message)
    assert gave_up is not None, message
    assert 6 <= int(gave_up.group(1)) <= took + 1, (gave_up.group(0), took)  # a loaded machine gives up later
    assert PASSWORD not in message and gcs_repo.private_key not in message


async def test_a_gcs_server_back_within_the_bound_is_reported_answering(gcs_repo: GcsRepo) -> None:
    """The server is down when the listing starts and back a few seconds later at the same address:
    reported unreachable (by the probe), then answering again; restic's listing ends well."""
    await gcs_repo.restic.init()
    gcs_repo.stop_server()
    watch, reports, notices = watched(gcs_repo, 120.0, 1.0)
    listing = asyncio.ensure_future(watch.guard(lambda: gcs_repo.restic.snapshots(host=HOST)))
    restarted: ManagedProcess | None = None
    try:
        await eventually(lambda: reports, timeout=20, interval=0.2, what="the stopped server reported")
        restarted = gcs_repo.restart_server()
        assert await asyncio.wait_for(listing, 90) == []
    finally:
        listing.cancel()
        if restarted is not None:
            restarted.stop()
    assert [r.reachable for r in reports] == [False, True]
    assert reports[1].message.startswith("backend gs:appscode-qa:/sample/data answers again since ")
    assert watch.unreachable_for() == 0
    assert notices == []


async def test_a_live_gcs_server_under_a_long_silent_upload_is_never_flagged(
    gcs_repo: GcsRepo, tmp_path: Path
) -> None:
    """A throttled upload for several seconds against a server that answers: the probe runs many
    times, the watch (bound 1s) reports nothing and the backup makes its snapshot."""
    await gcs_repo.restic.init()
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    probes = 0
    probe = gcs_repo.probe

    async def counted() -> str | None:
        nonlocal probes
        probes += 1
        return await probe()

    gcs_repo.probe = counted
    watch, reports, _ = watched(gcs_repo, 1.0, 0.3)
    began = time.monotonic()
    summary = await watch.guard(
        lambda: gcs_repo.restic.backup([str(data)], host=HOST, extra_args=["--limit-upload=2048"])
    )
    assert summary.snapshot_id
    assert time.monotonic() - began > 4  # long enough for the bound to have passed several times
    assert probes >= 10
    assert reports == [] and watch.state is None
