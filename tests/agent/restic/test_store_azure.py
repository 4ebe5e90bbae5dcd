"""The ``azure`` backend against a real server: Azurite over HTTPS (private CA), with real restic.

The Repository and Secret are written as Stash's Azure page writes them (container, prefix,
AZURE_ACCOUNT_NAME, AZURE_ACCOUNT_KEY), plus CA_CERT_DATA and AZURE_ACCESS_TIER; the endpoint suffix
comes from the agent's environment (AZURE_ENDPOINT_SUFFIX) as in a pod. Plain restic then reads the
repository with only the Secret's values, the suffix and the CA.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.stores import azurite

from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.errors import RepositoryNotFound, UntrustedCertificate, WrongCredentials
from stashlet.agent.restic.runner import Restic, ResticSettings

PASSWORD = "azure-repository-password"
HOST = "host-0"
BACKEND = {
    "azure": {"container": "stash-backup", "prefix": "/demo/deployment/my-deploy"},
    "storageSecretName": "azure-secret",
}
LOCATION = "azure:stash-backup:/demo/deployment/my-deploy"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    with azurite.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture
def azure_settings(settings: ResticSettings, server: azurite.Azurite) -> ResticSettings:
    """restic as the agent runs it, resolving Azurite's name, with the suffix from the environment."""
    return dataclasses.replace(
        settings,
        binary=str(server.restic_wrapper(Path(settings.binary))),
        base_env={"AZURE_ENDPOINT_SUFFIX": server.endpoint_suffix},
    )


def repository(server: azurite.Azurite, tmp_path: Path, **changes: bytes | None) -> ResticRepository:
    secret = server.secret(PASSWORD)
    for key, value in changes.items():
        if value is None:
            secret.pop(key)
        else:
            secret[key] = value
    return build_repository(BACKEND, secret, files_dir=str(tmp_path / "files"), secret_namespace="demo")


@pytest.mark.restic
async def test_a_stash_azure_repository_on_azurite(
    server: azurite.Azurite, azure_settings: ResticSettings, settings: ResticSettings, tmp_path: Path
) -> None:
    """init creates the container, backup and snapshots go through HTTPS with the Secret's CA and key;
    plain restic with only the Secret's values (+ suffix and CA) lists the snapshot and reads a file."""
    repo = repository(server, tmp_path)
    assert repo.url == LOCATION
    assert repo.options[:2] == ("-o", "azure.access-tier=Hot")
    restic = Restic(azure_settings, repo)
    await restic.init()
    data = tmp_path / "data"
    data.mkdir()
    (data / "note.txt").write_text("kept in Azure Blob\n")
    (data / "blob.bin").write_bytes(os.urandom(256 * 1024))
    summary = await restic.backup([str(data)], host=HOST)
    snapshots = await restic.snapshots()
    assert [s.id for s in snapshots] == [summary.snapshot_id]

    assert summary.snapshot_id
    names = await asyncio.to_thread(server.blob_names, "stash-backup")
    assert {name.split("/")[3] for name in names} == {"config", "keys", "data", "index", "snapshots"}, names
    assert all(name.startswith("demo/deployment/my-deploy/") for name in names)
    listed = await asyncio.to_thread(plain_restic, server, azure_settings.binary, "snapshots", "--json")
    assert [(s["id"], s["hostname"]) for s in json.loads(listed)] == [(summary.snapshot_id, HOST)]
    note = await asyncio.to_thread(
        plain_restic, server, azure_settings.binary, "dump", summary.snapshot_id, str(data / "note.txt")
    )
    assert note == "kept in Azure Blob\n"


def plain_restic(server: azurite.Azurite, binary: str, *args: str) -> str:
    """restic as a user runs it: only the Secret's values, the suffix and the CA; reads take no lock."""
    secret = server.secret(PASSWORD)
    env = {
        key: secret[key].decode() for key in ("RESTIC_PASSWORD", "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY")
    }
    env["AZURE_ENDPOINT_SUFFIX"] = server.endpoint_suffix
    done = subprocess.run(
        [binary, "-r", LOCATION, f"--cacert={server.ca_file}", "--no-cache", "--no-lock", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.restic
async def test_without_the_secrets_ca_tls_is_refused(
    server: azurite.Azurite, azure_settings: ResticSettings, tmp_path: Path
) -> None:
    """A Secret without CA_CERT_DATA: restic does not trust Azurite's certificate and retries; the
    backend watch ends it at the first retry with UntrustedCertificate (no retry can cure it), naming the
    backend and the Secret's key to fix, reporting no outage."""
    restic = Restic(azure_settings, repository(server, tmp_path, CA_CERT_DATA=None))
    assert restic.repository is not None
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(restic.repository.display_url, 300.0, report)
    restic.on_backend = watch.notice
    with pytest.raises(UntrustedCertificate) as caught:
        await asyncio.wait_for(watch.guard(restic.snapshots, hurry=restic.hurry), 60)
    assert reports == []
    assert "x509: certificate signed by unknown authority" in caught.value.message
    assert "CA_CERT_DATA" in caught.value.message
    assert server.account_key not in caught.value.message


@pytest.mark.restic
async def test_a_wrong_account_key_is_wrong_credentials_at_once(
    server: azurite.Azurite, azure_settings: ResticSettings, tmp_path: Path
) -> None:
    """Another key for the account: Azurite answers 403 AuthorizationFailure, which restic does not retry,
    so the agent's error is WrongCredentials naming the backend with the status and code (no rules of
    dashes, no hint, no key) and the watch reports no outage."""
    wrong = azurite.new_key()
    restic = Restic(azure_settings, repository(server, tmp_path, AZURE_ACCOUNT_KEY=wrong.encode()))
    assert restic.repository is not None
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(restic.repository.display_url, 300.0, report)
    restic.on_backend = watch.notice
    with pytest.raises(WrongCredentials) as caught:
        await asyncio.wait_for(watch.guard(restic.snapshots, hurry=restic.hurry), 60)
    message = caught.value.message
    assert reports == []
    assert message.startswith(f"backend {LOCATION} refused the storage Secret's credentials: "), message
    assert "RESPONSE 403: 403 Server failed to authenticate the request" in message
    assert "ERROR CODE: AuthorizationFailure" in message
    assert "----" not in message and "Is there a repository" not in message
    assert wrong not in message and server.account_key not in message


@pytest.mark.restic
async def test_a_missing_container_is_no_repository_and_init_creates_it(
    server: azurite.Azurite, azure_settings: ResticSettings, tmp_path: Path
) -> None:
    """A container that does not exist: restic 0.18.1 retries the 404 on the repository's config (its
    IsNotExist knows only BlobNotFound) and prints the SDK's status on lines after its retry line; the
    backend watch reads them and ends the operation at the first retry with RepositoryNotFound naming the
    backend, reporting no outage, so the agent runs ``restic init``, which creates the container."""
    backend = {**BACKEND, "azure": {"container": "not-made-yet", "prefix": "/demo"}}
    repo = build_repository(backend, server.secret(PASSWORD), files_dir=str(tmp_path / "files"))
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    restic = Restic(azure_settings, repo)
    watch = BackendWatch(repo.display_url, 300.0, report)
    restic.on_backend = watch.notice
    with pytest.raises(RepositoryNotFound) as caught:
        await asyncio.wait_for(watch.guard(restic.snapshots, hurry=restic.hurry), 60)
    assert reports == []
    message = caught.value.message
    assert message.startswith(
        "backend azure:not-made-yet:/demo has no such bucket or container, so no repository: "
    ), message
    assert "RESPONSE 404: 404 The specified container does not exist." in message
    await Restic(azure_settings, repo).init()
    assert await Restic(azure_settings, repo).snapshots() == []


def test_access_tier_from_the_secret() -> None:
    """AZURE_ACCESS_TIER becomes restic's azure.access-tier, spelt as Azure does; without it, no option."""
    secret = {"RESTIC_PASSWORD": b"pw", "AZURE_ACCOUNT_NAME": b"acct", "AZURE_ACCOUNT_KEY": b"key"}
    cool = build_repository(BACKEND, {**secret, "AZURE_ACCESS_TIER": b" cool "}, files_dir="/f")
    assert cool.options == ("-o", "azure.access-tier=Cool")
    assert build_repository(BACKEND, secret, files_dir="/f").options == ()


def test_an_unknown_access_tier_is_refused() -> None:
    """A tier restic would silently drop is refused, naming the Secret and the key."""
    secret = {"RESTIC_PASSWORD": b"pw", "AZURE_ACCOUNT_NAME": b"acct", "AZURE_ACCESS_TIER": b"Premium"}
    with pytest.raises(BackendError) as caught:
        build_repository(BACKEND, secret, files_dir="/f", secret_namespace="demo")
    assert str(caught.value) == (
        "storage Secret demo/azure-secret key AZURE_ACCESS_TIER must be one of Hot, Cool, Cold, Archive"
    )
