"""The ``s3`` backend against a real S3 server (versitygw) with the pinned restic, over HTTP and HTTPS.

The Repository and Secret are written as Stash's S3 guide writes them for an S3-compatible server
(``s3.endpoint`` with its scheme, ``s3.bucket``, ``s3.prefix`` with its leading slash, ``s3.region``;
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``RESTIC_PASSWORD``, and ``CA_CERT_DATA`` for a server
whose certificate a private CA signed). The agent's mapping (:func:`build_repository`) and runner do the
work; plain restic, given only the Secret's values, reads what they wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.stores.versitygw import REGION, S3Keys, S3Server, private_ca, versitygw

from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.errors import (
    RepositoryNotFound,
    ResticError,
    UntrustedCertificate,
    WrongCredentials,
    error_for_exit,
    refusal,
)
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.localcluster.processes import free_port

pytestmark = pytest.mark.restic

PASSWORD = "changeit"
HOST = "host-0"
PREFIX = "/backup/demo/deployment/stash-demo"
"""The guide's prefix, leading slash and all."""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """versitygw over plain HTTP on loopback."""
    with versitygw(tmp_path_factory.mktemp("versitygw")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """versitygw over HTTPS, its certificate signed by a private CA."""
    with versitygw(tmp_path_factory.mktemp("versitygw-tls"), tls=True) as server:
        yield server


def stash_secret(
    server: S3Server, *, keys: S3Keys | None = None, ca: bytes | None = None
) -> dict[str, bytes]:
    """The guide's ``s3-secret`` (``minio-secret`` with ``CA_CERT_DATA`` for a TLS server)."""
    keys = keys or server.keys
    secret = {
        "RESTIC_PASSWORD": PASSWORD.encode(),
        "AWS_ACCESS_KEY_ID": keys.access_key_id.encode(),
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key.encode(),
    }
    if ca is not None:
        secret["CA_CERT_DATA"] = ca
    return secret


def repository(
    server: S3Server, secret: dict[str, bytes], tmp_path: Path, bucket: str, *, region: str | None = REGION
) -> ResticRepository:
    """The guide's Repository ``minio-repo`` through the agent's mapping (with ``s3.region`` unless None)."""
    spec = {"endpoint": server.endpoint, "bucket": bucket, "prefix": PREFIX}
    if region:
        spec["region"] = region
    backend = {"s3": spec, "storageSecretName": "s3-secret"}
    return build_repository(backend, secret, files_dir=str(tmp_path / "files"), secret_namespace="demo")


def plain_restic(
    binary: str,
    server: S3Server,
    secret: dict[str, bytes],
    bucket: str,
    *args: str,
    cacert: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """restic as a user runs it with the Secret's values alone (and the CA file a user saves them to)."""
    env = {key: value.decode() for key, value in secret.items() if key != "CA_CERT_DATA"}
    env |= {"RESTIC_REPOSITORY": f"s3:{server.endpoint}/{bucket}{PREFIX}", "PATH": "/usr/bin:/bin"}
    options = [f"--cacert={cacert}"] if cacert else []
    argv = [binary, "--no-cache", *options, *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)


def source_tree(root: Path) -> Path:
    (root / "deep").mkdir(parents=True)
    (root / "data.txt").write_text("sample_data\n")
    (root / "deep" / "blob.bin").write_bytes(bytes(range(256)) * 4096)
    return root


async def test_restic_init_creates_the_missing_bucket(
    settings: ResticSettings, s3: S3Server, tmp_path: Path
) -> None:
    """The guide: "If the bucket does not exist yet, Stash will create it". restic init does, under the
    prefix (no leading slash in the object names), with the Secret's keys; the Repository is the guide's
    MinIO one, without a region."""
    assert not s3.bucket_exists("created-by-init")
    restic = Restic(settings, repository(s3, stash_secret(s3), tmp_path, "created-by-init", region=None))
    assert restic.repository is not None
    assert restic.repository.url == f"s3:{s3.endpoint}/created-by-init/backup/demo/deployment/stash-demo"
    assert "AWS_DEFAULT_REGION" not in restic.repository.env
    await restic.init()
    assert s3.bucket_exists("created-by-init")
    names = s3.objects("created-by-init")
    assert "backup/demo/deployment/stash-demo/config" in names
    assert all(name.startswith("backup/demo/deployment/stash-demo/") for name in names)


@pytest.mark.parametrize("region", [REGION, None])
async def test_a_missing_bucket_is_no_repository(
    settings: ResticSettings, s3: S3Server, tmp_path: Path, region: str | None
) -> None:
    """Opening a repository in a bucket that does not exist. With ``s3.region`` restic's HeadObject gets
    404 NoSuchKey: exit 10 at once, RepositoryNotFound. Without it restic asks the bucket's location, gets
    NoSuchBucket and retries it; the watch ends it at the first retry with RepositoryNotFound too (so
    the first backup initialises). Either way ``restic init`` then creates the bucket and the repository
    opens."""
    bucket = f"missing-{'with' if region else 'no'}-region"
    repo = repository(s3, stash_secret(s3), tmp_path, bucket, region=region)
    if region:
        with pytest.raises(RepositoryNotFound):
            await asyncio.wait_for(Restic(settings, repo).snapshots(), 60)
    else:
        error, reports = await watched(settings, repo)
        assert reports == []  # no outage: the watch ends it at the first retry
        assert "The specified bucket does not exist" in error.message
        assert isinstance(error, RepositoryNotFound)
        assert error.message.startswith(
            f"backend {repo.display_url} has no such bucket or container, so no repository: "
        )
    assert not s3.bucket_exists(bucket)
    restic = Restic(settings, repo)
    await restic.init()
    assert s3.bucket_exists(bucket)
    assert await restic.snapshots() == []


async def test_backup_into_a_users_bucket_and_plain_restic_reads_it(
    settings: ResticSettings, restic_binary: str, s3: S3Server, tmp_path: Path
) -> None:
    """A bucket made beforehand with CreateBucket: the agent's runner inits, backs up twice, lists;
    plain restic with the Secret's values alone sees the same snapshots and dumps the same bytes."""
    s3.create_bucket("stash-demo")
    secret = stash_secret(s3)
    restic = Restic(settings, repository(s3, secret, tmp_path, "stash-demo"))
    await restic.init()
    data = source_tree(tmp_path / "data")
    first = await restic.backup([str(data)], host=HOST)
    (data / "data.txt").write_text("changed\n")
    second = await restic.backup([str(data)], host=HOST)
    assert first.snapshot_id and second.snapshot_id and first.snapshot_id != second.snapshot_id
    snapshots = await restic.snapshots(host=HOST)
    assert [s.id for s in snapshots] == [first.snapshot_id, second.snapshot_id]
    assert await restic.check()

    listed = plain_restic(restic_binary, s3, secret, "stash-demo", "snapshots", "--json")
    assert listed.returncode == 0, listed.stderr
    assert f'"id":"{second.snapshot_id}"' in listed.stdout.replace(" ", "")
    dumped = plain_restic(
        restic_binary, s3, secret, "stash-demo", "dump", first.snapshot_id, f"{data}/data.txt"
    )
    assert (dumped.returncode, dumped.stdout) == (0, "sample_data\n"), dumped.stderr


async def test_https_with_the_secrets_ca_cert_data(
    settings: ResticSettings, restic_binary: str, s3_tls: S3Server, tmp_path: Path
) -> None:
    """An HTTPS endpoint whose certificate a private CA signed: the Secret's CA_CERT_DATA becomes a
    private file handed to restic as --cacert; init, backup, snapshots go through, and plain restic with
    the same CA reads the repository."""
    assert s3_tls.endpoint.startswith("https://") and s3_tls.ca_cert is not None
    secret = stash_secret(s3_tls, ca=s3_tls.ca_cert)
    repo = repository(s3_tls, secret, tmp_path, "tls-bucket")
    [cacert] = [option for option in repo.options if option.startswith("--cacert=")]
    ca_file = Path(cacert.removeprefix("--cacert="))
    restic = Restic(settings, repo)
    await restic.init()
    assert await asyncio.to_thread(ca_file.read_bytes) == s3_tls.ca_cert
    assert (await asyncio.to_thread(ca_file.stat)).st_mode & 0o777 == 0o600
    summary = await restic.backup([str(source_tree(tmp_path / "data"))], host=HOST)
    assert [s.id for s in await restic.snapshots()] == [summary.snapshot_id]

    listed = plain_restic(restic_binary, s3_tls, secret, "tls-bucket", "snapshots", "--json", cacert=ca_file)
    assert listed.returncode == 0, listed.stderr
    assert summary.snapshot_id and summary.snapshot_id in listed.stdout


async def watched(settings: ResticSettings, repo: ResticRepository) -> tuple[ResticError, list[BackendState]]:
    """``restic snapshots`` against a server that refuses it, watched as a session watches it (a short
    bound): restic retries (its S3 backend calls only AccessDenied permanent); the watch ends it at the
    first retry no retry can cure, else gives up at the bound. The error, and what the watch reported."""
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    restic = Restic(settings, repo)
    watch = BackendWatch(repo.display_url, 2.0, report)
    restic.on_backend = watch.notice
    with pytest.raises(ResticError) as caught:
        await asyncio.wait_for(watch.guard(restic.snapshots, hurry=restic.hurry), 60)
    return caught.value, reports


@pytest.mark.parametrize("ca", ["missing", "another CA"])
async def test_a_missing_or_wrong_ca_is_an_untrusted_certificate(
    settings: ResticSettings, s3_tls: S3Server, tmp_path: Path, ca: str
) -> None:
    """Without CA_CERT_DATA, or with another CA's: restic says x509 on every retry; the watch ends it at
    the first with an UntrustedCertificate (reason and message say it is the certificate, name the
    backend and the Secret's key to fix), reporting no outage, no secret value in it."""
    other = private_ca(tmp_path / "other-ca").ca_cert.read_bytes() if ca == "another CA" else None
    secret = stash_secret(s3_tls, ca=other)
    repo = repository(s3_tls, secret, tmp_path, "tls-bucket")
    began = time.monotonic()
    error, reports = await watched(settings, repo)
    assert time.monotonic() - began < 15  # not restic's 15 minutes, nor the watch's bound
    assert reports == []
    assert "x509: certificate signed by unknown authority" in error.message
    assert isinstance(error, UntrustedCertificate)
    assert error.reason == "UntrustedCertificate"
    assert error.message.startswith(
        f"backend {repo.display_url} is reached over TLS with a certificate restic does not trust: "
    )
    assert "CA_CERT_DATA" in error.message
    for value in secret.values():
        assert value.decode() not in error.message
    # restic's own exit after its retries (15 minutes later) is classified the same way.
    retried = "Stat: tls: failed to verify certificate: x509: certificate signed by unknown authority"
    final = error_for_exit(1, f"Fatal: unable to open config file: {retried}", location=repo.display_url)
    assert isinstance(final, UntrustedCertificate)


async def test_ca_cert_data_that_is_no_certificate(
    settings: ResticSettings, s3_tls: S3Server, tmp_path: Path
) -> None:
    """CA_CERT_DATA that is not PEM: restic stops at once; UntrustedCertificate, not a bare failure."""
    repo = repository(s3_tls, stash_secret(s3_tls, ca=b"not a certificate"), tmp_path, "tls-bucket")
    with pytest.raises(UntrustedCertificate, match="cannot parse root certificate"):
        await asyncio.wait_for(Restic(settings, repo).snapshots(), 60)


@pytest.mark.parametrize("region", [REGION, None])
async def test_wrong_secret_key_is_wrong_credentials(
    settings: ResticSettings, s3: S3Server, tmp_path: Path, region: str | None
) -> None:
    """A wrong secret access key. With ``s3.region`` restic's first call is HeadObject, answered 403
    AccessDenied, which restic takes as permanent: WrongCredentials at once. Without it (the guide's
    MinIO Repository) restic first asks the bucket's location and gets SignatureDoesNotMatch, which it
    retries; that retry's error is WrongCredentials. Either names the backend, never the key."""
    bucket = f"wrong-key-{'with' if region else 'no'}-region"
    s3.create_bucket(bucket)
    wrong = S3Keys(s3.keys.access_key_id, "not-the-secret-key-0123456789")
    repo = repository(s3, stash_secret(s3, keys=wrong), tmp_path, bucket, region=region)
    if region:
        with pytest.raises(WrongCredentials) as caught:
            await asyncio.wait_for(Restic(settings, repo).snapshots(), 60)
        error: ResticError | None = caught.value
        assert "Access Denied" in caught.value.message
    else:
        error, reports = await watched(settings, repo)
        assert reports == []  # no outage: the watch ends it at the first retry
        assert "signature we calculated does not match" in error.message
    assert isinstance(error, WrongCredentials)
    assert error.reason == "WrongCredentials"
    assert error.message.startswith(f"backend {repo.display_url} refused the storage Secret's credentials: ")
    assert "Is there a repository" not in error.message
    assert wrong.secret_access_key not in error.message


async def test_an_endpoint_that_refuses_connections_is_unavailable(
    settings: ResticSettings, s3: S3Server, tmp_path: Path
) -> None:
    """``s3.endpoint`` on a port nothing listens on: restic retries "connection refused", the watch gives
    up with BackendUnavailable naming the backend; with the endpoint fixed the same Secret works."""
    s3.create_bucket("fixed-endpoint")
    secret = stash_secret(s3)
    closed = dataclasses.replace(s3, endpoint=f"http://127.0.0.1:{free_port()}")
    repo = repository(closed, secret, tmp_path, "fixed-endpoint")
    given_up, reports = await watched(settings, repo)
    retried = reports[0].error
    assert reports[0].reachable is False
    assert "connection refused" in retried
    assert refusal(retried, repo.display_url) is None  # it may come back: no refusal
    assert given_up.reason == "BackendUnavailable"
    assert given_up.message.startswith(f"backend {repo.display_url} unreachable since ")
    assert s3.keys.secret_access_key not in given_up.message
    restic = Restic(settings, repository(s3, secret, tmp_path, "fixed-endpoint"))
    await restic.init()
    assert await restic.snapshots() == []


async def test_insecure_tls_skips_verification(
    settings: ResticSettings, s3_tls: S3Server, tmp_path: Path
) -> None:
    """The guide's ``s3.insecureTLS: true``: no CA_CERT_DATA, restic runs with --insecure-tls and opens the
    repository of the untrusted server."""
    backend = {
        "s3": {"endpoint": s3_tls.endpoint, "bucket": "insecure", "prefix": PREFIX, "insecureTLS": True},
        "storageSecretName": "s3-secret",
    }
    repo = build_repository(backend, stash_secret(s3_tls), files_dir=str(tmp_path / "files"))
    assert "--insecure-tls" in repo.options
    assert not [option for option in repo.options if option.startswith("--cacert")]
    restic = Restic(settings, repo)
    await restic.init()
    assert await restic.snapshots() == []
