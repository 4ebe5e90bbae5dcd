"""The ``gcs`` backend against a real GCS JSON API server (fake-gcs-server) with the pinned restic.

The Repository and Secret are written as Stash's GCS guide writes them (``gcs.bucket``, ``gcs.prefix``
with its leading slash; ``GOOGLE_PROJECT_ID`` and ``GOOGLE_SERVICE_ACCOUNT_JSON_KEY``, a service-account
key file). The agent's mapping (:func:`build_repository`) and runner do the work; the server's address
reaches restic as the agent's own ``STORAGE_EMULATOR_HOST`` does (:func:`inherited_env`). The key's
``token_uri`` is a FAKE token endpoint (:class:`tests.stores.fake_gcs.FakeTokenEndpoint`: Google's own
cannot be reached here), which checks the JWT restic signs with the key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.stores.fake_gcs import FakeTokenEndpoint, GcsServer, ServiceAccount, fake_gcs_server

from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.errors import RepositoryNotFound, WrongCredentials
from stashlet.agent.restic.retention import Retention, forget_args
from stashlet.agent.restic.runner import Restic, ResticSettings, inherited_env

pytestmark = pytest.mark.restic

PROJECT = "stashlet-demo"
BUCKET = "appscode-qa"
PASSWORD = "changeit"
HOST = "host-0"


@dataclass(frozen=True)
class Gcs:
    """The session's GCS: the server, the fake token endpoint, and the account it trusts."""

    server: GcsServer
    tokens: FakeTokenEndpoint
    account: ServiceAccount


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gcs]:
    """fake-gcs-server on loopback with the seed's bucket, and a token endpoint trusting one account."""
    account = ServiceAccount.generate(PROJECT)
    with (
        fake_gcs_server(tmp_path_factory.mktemp("fake-gcs")) as server,
        FakeTokenEndpoint().running() as tokens,
    ):
        tokens.trust(account)
        server.create_bucket(BUCKET, PROJECT)
        yield Gcs(server, tokens, account)


def stash_secret(gcs: Gcs, account: ServiceAccount | None = None) -> dict[str, bytes]:
    """The guide's ``gcs-secret``: password, project, and the account's downloaded JSON key."""
    key = (account or gcs.account).key_json(PROJECT, gcs.tokens.token_uri)
    return {
        "RESTIC_PASSWORD": PASSWORD.encode(),
        "GOOGLE_PROJECT_ID": PROJECT.encode(),
        "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": key,
    }


def repository(secret: dict[str, bytes], tmp_path: Path, bucket: str, prefix: str) -> ResticRepository:
    """The guide's Repository ``gcs-repo`` through the agent's mapping."""
    backend = {"gcs": {"bucket": bucket, "prefix": prefix}, "storageSecretName": "gcs-secret"}
    return build_repository(backend, secret, files_dir=str(tmp_path / "files"), secret_namespace="demo")


def runner(settings: ResticSettings, gcs: Gcs, repo: ResticRepository) -> Restic:
    """The agent's runner, its environment taken as the agent takes its own (runtimeSettings' env)."""
    environ = {**os.environ, "STORAGE_EMULATOR_HOST": gcs.server.url}
    return Restic(dataclasses.replace(settings, base_env=inherited_env(environ)), repo)


def plain_restic(
    binary: str, gcs: Gcs, secret: dict[str, bytes], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """restic as a user runs it with the Secret's values alone: the key saved to a file, the guide's
    location typed by hand, and the server's address."""
    key_file = tmp_path / "downloaded-sa-json.key"
    key_file.write_bytes(secret["GOOGLE_SERVICE_ACCOUNT_JSON_KEY"])
    env = {
        "PATH": "/usr/bin:/bin",
        "RESTIC_REPOSITORY": "gs:appscode-qa:/sample/data",
        "RESTIC_PASSWORD": secret["RESTIC_PASSWORD"].decode(),
        "GOOGLE_PROJECT_ID": secret["GOOGLE_PROJECT_ID"].decode(),
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "STORAGE_EMULATOR_HOST": gcs.server.url,
    }
    argv = [binary, "--no-cache", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_stash_gcs_repository_on_a_real_gcs_api(
    gcs: Gcs, settings: ResticSettings, restic_binary: str, tmp_path: Path
) -> None:
    """``gs:appscode-qa:/sample/data``: init, two backups, snapshots, forget with prune and a check read
    every pack; the objects sit in the bucket under ``sample/data/`` (restic's layout); the token
    endpoint granted restic a token for the key's account with a storage scope. Plain restic, given only
    the Secret's values (the key written to a file) and the server's address, reads the same repository."""
    secret = stash_secret(gcs)
    repo = repository(secret, tmp_path, BUCKET, "/sample/data/")
    assert repo.url == "gs:appscode-qa:/sample/data"
    restic = runner(settings, gcs, repo)
    granted = len(gcs.tokens.grants)
    await restic.init()
    data = tmp_path / "source" / "data"
    data.mkdir(parents=True)
    (data / "data.txt").write_text("sample_data\n")
    (data / "blob.bin").write_bytes(os.urandom(2_000_000))
    first = await restic.backup([str(data)], host=HOST)
    (data / "data.txt").write_text("sample_data, later\n")
    second = await restic.backup([str(data)], host=HOST)
    assert first.snapshot_id and second.snapshot_id
    assert [s.id for s in await restic.snapshots(host=HOST)] == [first.snapshot_id, second.snapshot_id]
    forgotten = await restic.forget(forget_args(Retention(keep_last=1, prune=True), hosts=[HOST]))
    assert forgotten.removed_count == 1
    assert await restic.check(read_data_subset="100%")

    names = gcs.server.object_names(BUCKET)
    assert "sample/data/config" in names
    kinds = {name.split("/")[2] for name in names}
    assert kinds == {"config", "keys", "data", "index", "snapshots"}, kinds
    assert len([n for n in names if n.startswith("sample/data/snapshots/")]) == 1

    grants = gcs.tokens.grants[granted:]
    assert grants, f"restic never asked the token endpoint (refusals: {gcs.tokens.refusals})"
    assert {g["iss"] for g in grants} == {gcs.account.email}
    assert all("https://www.googleapis.com/auth/devstorage.read_write" in g["scope"].split() for g in grants)

    dumped = await asyncio.to_thread(
        plain_restic, restic_binary, gcs, secret, tmp_path, "dump", "latest", f"{data}/data.txt"
    )
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout == "sample_data, later\n"


async def test_a_key_the_token_endpoint_does_not_trust_fails_as_wrong_credentials(
    gcs: Gcs, settings: ResticSettings, tmp_path: Path
) -> None:
    """A key of another account (not trusted): the token request is refused (``invalid_grant``), restic
    stops at once and the agent reports WrongCredentials naming the location, with no part of the key."""
    stranger = ServiceAccount.generate(PROJECT, name="not-granted")
    secret = stash_secret(gcs, stranger)
    restic = runner(settings, gcs, repository(secret, tmp_path, BUCKET, "/stranger"))
    refused = len(gcs.tokens.refusals)
    with pytest.raises(WrongCredentials) as caught:
        await restic.init()
    message = str(caught.value)
    assert "gs:appscode-qa:/stranger" in message
    assert "invalid_grant" in message
    assert "PRIVATE KEY" not in message
    assert gcs.tokens.refusals[refused:], "the token endpoint was never asked"
    assert all(r.startswith(f"no trusted key {stranger.key_id!r}") for r in gcs.tokens.refusals[refused:])
    assert gcs.server.object_names(BUCKET, "stranger/") == []


async def test_a_session_with_a_key_the_token_endpoint_refuses_ends_at_once(
    gcs: Gcs, settings: ResticSettings, tmp_path: Path
) -> None:
    """What a session runs first (``restic snapshots``/``backup`` open the config) retries a refused token
    request for 15 minutes; under the agent's backend watch it ends at the first retry with
    WrongCredentials naming the location, reporting no outage."""
    stranger = ServiceAccount.generate(PROJECT, name="not-granted")
    restic = runner(settings, gcs, repository(stash_secret(gcs, stranger), tmp_path, BUCKET, "/stranger"))
    assert restic.repository is not None
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(restic.repository.display_url, 300.0, report)
    restic.on_backend = watch.notice
    with pytest.raises(WrongCredentials) as caught:
        await asyncio.wait_for(watch.guard(restic.snapshots, hurry=restic.hurry), 60)
    assert reports == []
    message = caught.value.message
    assert message.startswith("backend gs:appscode-qa:/stranger refused the storage Secret's credentials: ")
    assert message.endswith("oauth2: cannot fetch token: 400 Bad Request"), message
    assert "PRIVATE KEY" not in message


async def test_a_missing_bucket_is_not_created_by_restic_init(
    gcs: Gcs, settings: ResticSettings, tmp_path: Path
) -> None:
    """restic 0.18.1 does not create a missing bucket, whatever Stash's guide says of the permission to
    create it: its gs backend compares the client's error with ``==``, and cloud.google.com/go/storage
    v1.56.1 wraps ErrBucketNotExist. So, as the agent meets it: ``snapshots`` finds no repository (exit
    10), and ``init`` fails (exit 1) with RepositoryNotFound naming the backend and the bucket and saying
    to create it, not a generic ResticFailed. The bucket has to exist beforehand."""
    restic = runner(settings, gcs, repository(stash_secret(gcs), tmp_path, "no-such-bucket", "/sample/data"))
    with pytest.raises(RepositoryNotFound) as no_repository:
        await restic.snapshots()
    assert no_repository.value.exit_code == 10
    with pytest.raises(RepositoryNotFound) as caught:
        await restic.init()
    assert caught.value.exit_code == 1
    message = str(caught.value)
    assert message.startswith(
        "backend gs:no-such-bucket:/sample/data has no such bucket, so no repository: GCS bucket "
        "no-such-bucket does not exist, and restic does not create a GCS bucket: create it first"
    ), message
    assert "storage: bucket doesn't exist" in message
    assert "no-such-bucket" not in gcs.server.buckets()


@pytest.mark.parametrize("value", [b"not json", b'"a string"', b"\xff\xfe", b"[]"])
def test_a_key_that_is_not_a_json_key_file_is_refused_naming_the_secret(value: bytes, tmp_path: Path) -> None:
    """A ``GOOGLE_SERVICE_ACCOUNT_JSON_KEY`` that is no JSON object is refused by the mapping, naming the
    Secret and key (restic would only name GOOGLE_APPLICATION_CREDENTIALS), and no value."""
    secret = {"RESTIC_PASSWORD": PASSWORD.encode(), "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": value}
    with pytest.raises(BackendError) as caught:
        repository(secret, tmp_path, BUCKET, "/sample/data")
    message = str(caught.value)
    assert message.startswith(
        "storage Secret demo/gcs-secret key GOOGLE_SERVICE_ACCOUNT_JSON_KEY is not a JSON"
    )
    assert caught.value.__cause__ is None
    assert value.decode(errors="replace") not in message
