"""Repository backend + storage Secret -> restic location, environment, options and files."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from stashlet.agent.restic.backend import ResticRepository, build_repository, decode_secret_data
from stashlet.agent.restic.backend_spec import BackendError, MissingSecretKey

PASSWORD = b"s3cr3t-restic-pw"
FILES = "/stash-tmp/restic-files"


def build(backend: dict[str, Any], **secret: bytes | str) -> ResticRepository:
    data: dict[str, bytes | str] = {"RESTIC_PASSWORD": PASSWORD, **secret}
    return build_repository({**backend, "storageSecretName": "my-secret"}, data, files_dir=FILES)


def test_local_directory_from_mount_and_sub_path() -> None:
    """A local backend is the mount path joined with the sub path; the password goes in the env."""
    repo = build({"local": {"mountPath": "/safe/data", "subPath": "/demo/app/", "hostPath": {"path": "/x"}}})
    assert repo.provider == "local"
    assert repo.url == "/safe/data/demo/app"
    assert repo.env == {"RESTIC_PASSWORD": PASSWORD.decode(), "RESTIC_REPOSITORY": "/safe/data/demo/app"}
    assert repo.options == ()
    assert repo.files == {}
    assert build({"local": {"mountPath": "/safe/data"}}).url == "/safe/data"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"subPath": "x"}, "local.mountPath"),
        ({"mountPath": "relative"}, "must be absolute"),
        ({"mountPath": "/safe", "subPath": "../../etc"}, "must not contain '..'"),
    ],
)
def test_local_path_errors(spec: dict[str, str], message: str) -> None:
    """A missing or relative mount path, or a sub path climbing out of it, is refused."""
    with pytest.raises(BackendError, match=message):
        build({"local": spec})


@pytest.mark.parametrize(
    ("s3", "url"),
    [
        ({"bucket": "b"}, "s3:s3.amazonaws.com/b"),
        ({"endpoint": "s3.amazonaws.com", "bucket": "stash-demo", "prefix": "/backup/demo/deployment/x"},
         "s3:s3.amazonaws.com/stash-demo/backup/demo/deployment/x"),
        ({"endpoint": "https://minio.minio-ns.svc/", "bucket": "b", "prefix": "p//q/"},
         "s3:https://minio.minio-ns.svc/b/p/q"),
        ({"endpoint": "http://127.0.0.1:9000", "bucket": "b", "prefix": ""}, "s3:http://127.0.0.1:9000/b"),
        ({"endpoint": "nyc3.digitaloceanspaces.com", "bucket": "b", "prefix": "p"},
         "s3:nyc3.digitaloceanspaces.com/b/p"),
    ],
)  # fmt: skip
def test_s3_locations(s3: dict[str, str], url: str) -> None:
    """S3 URLs: default endpoint, scheme kept when given, prefix slashes normalised."""
    repo = build({"s3": s3}, AWS_ACCESS_KEY_ID="AKIA", AWS_SECRET_ACCESS_KEY="shh-secret-key")
    assert repo.url == url
    assert repo.env["RESTIC_REPOSITORY"] == url


def test_s3_credentials_region_and_tls_options() -> None:
    """Keys come from the Secret, the region from the spec, insecureTLS and CA_CERT_DATA become options."""
    repo = build(
        {"s3": {"endpoint": "https://minio", "bucket": "b", "region": "us-west-1", "insecureTLS": True}},
        AWS_ACCESS_KEY_ID="AKIA",
        AWS_SECRET_ACCESS_KEY="shh-secret-key",
        AWS_SESSION_TOKEN="tok-123",
        CA_CERT_DATA=b"-----BEGIN CERTIFICATE-----\n",
    )
    assert repo.env["AWS_ACCESS_KEY_ID"] == "AKIA"
    assert repo.env["AWS_SECRET_ACCESS_KEY"] == "shh-secret-key"
    assert repo.env["AWS_SESSION_TOKEN"] == "tok-123"
    assert repo.env["AWS_DEFAULT_REGION"] == "us-west-1"
    assert repo.options == ("--insecure-tls", f"--cacert={FILES}/ca.crt")
    assert repo.files == {f"{FILES}/ca.crt": b"-----BEGIN CERTIFICATE-----\n"}


def test_s3_without_keys_relies_on_ambient_credentials() -> None:
    """No AWS keys in the Secret (e.g. workload identity) is allowed: nothing is set."""
    repo = build({"s3": {"bucket": "b"}})
    assert set(repo.env) == {"RESTIC_PASSWORD", "RESTIC_REPOSITORY"}


def test_s3_half_a_key_pair_is_refused() -> None:
    """An access key without its secret (or the reverse) names the missing key."""
    with pytest.raises(MissingSecretKey, match="has no key AWS_SECRET_ACCESS_KEY") as caught:
        build({"s3": {"bucket": "b"}}, AWS_ACCESS_KEY_ID="AKIA")
    assert caught.value.key == "AWS_SECRET_ACCESS_KEY"
    with pytest.raises(MissingSecretKey, match="has no key AWS_ACCESS_KEY_ID"):
        build({"s3": {"bucket": "b"}}, AWS_SECRET_ACCESS_KEY="shh-secret-key")


def test_gcs_writes_the_key_file() -> None:
    """GCS: gs:bucket:/prefix, project ID in env, the JSON key written to a file named by the env."""
    key = b'{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}'
    repo = build(
        {"gcs": {"bucket": "stash-testing", "prefix": "stash-auto-backup/user1/deployment/stash-demo"}},
        GOOGLE_PROJECT_ID="my-project",
        GOOGLE_SERVICE_ACCOUNT_JSON_KEY=key,
    )
    assert repo.url == "gs:stash-testing:/stash-auto-backup/user1/deployment/stash-demo"
    assert repo.env["GOOGLE_PROJECT_ID"] == "my-project"
    path = f"{FILES}/gcs-service-account.json"
    assert repo.env["GOOGLE_APPLICATION_CREDENTIALS"] == path
    assert repo.files == {path: key}
    assert build({"gcs": {"bucket": "b", "prefix": "/sample/data"}}).url == "gs:b:/sample/data"
    assert build({"gcs": {"bucket": "b"}}).url == "gs:b:/"


def test_azure_account_from_secret_or_spec() -> None:
    """Azure takes the account name from the Secret, else from spec.storageAccount; else it fails."""
    repo = build(
        {"azure": {"container": "c", "prefix": "p"}}, AZURE_ACCOUNT_NAME="acct", AZURE_ACCOUNT_KEY="key-1"
    )
    assert repo.url == "azure:c:/p"
    assert (repo.env["AZURE_ACCOUNT_NAME"], repo.env["AZURE_ACCOUNT_KEY"]) == ("acct", "key-1")
    from_spec = build({"azure": {"container": "c", "storageAccount": "spec-acct"}}, AZURE_ACCOUNT_KEY="key-1")
    assert from_spec.env["AZURE_ACCOUNT_NAME"] == "spec-acct"
    with pytest.raises(MissingSecretKey, match="AZURE_ACCOUNT_NAME"):
        build({"azure": {"container": "c"}}, AZURE_ACCOUNT_KEY="key-1")


def test_b2_needs_both_keys() -> None:
    """B2: b2:bucket:prefix with both account keys required."""
    repo = build({"b2": {"bucket": "bk", "prefix": "/a/b"}}, B2_ACCOUNT_ID="id-1", B2_ACCOUNT_KEY="key-1")
    assert repo.url == "b2:bk:a/b"
    assert (repo.env["B2_ACCOUNT_ID"], repo.env["B2_ACCOUNT_KEY"]) == ("id-1", "key-1")
    with pytest.raises(MissingSecretKey, match="has no key B2_ACCOUNT_KEY"):
        build({"b2": {"bucket": "bk"}}, B2_ACCOUNT_ID="id-1")


def test_swift_copies_the_keystone_keys_present() -> None:
    """Swift: swift:container:/prefix and whichever ST_*/OS_* keys the Secret holds, nothing else."""
    repo = build(
        {"swift": {"container": "stash-backup", "prefix": "/demo/deployment/my-deploy"}},
        OS_AUTH_URL="https://keystone",
        OS_USERNAME="u",
        OS_PASSWORD="p-123",
        OS_PROJECT_NAME="proj",
        OS_REGION_NAME="r1",
        UNRELATED="x",
    )
    assert repo.url == "swift:stash-backup:/demo/deployment/my-deploy"
    assert {k for k in repo.env if k.startswith(("OS_", "ST_"))} == {
        "OS_AUTH_URL",
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_PROJECT_NAME",
        "OS_REGION_NAME",
    }
    assert "UNRELATED" not in repo.env


def test_rest_credentials_go_in_the_environment() -> None:
    """REST: rest:URL; the basic-auth user and password go to restic's env, not into the URL."""
    repo = build(
        {"rest": {"url": "http://rest-server.demo.svc:8000/stash-backup-demo"}},
        REST_SERVER_USERNAME="user",
        REST_SERVER_PASSWORD="p@ss/word",
    )
    assert repo.url == "rest:http://rest-server.demo.svc:8000/stash-backup-demo"
    assert repo.env["RESTIC_REST_USERNAME"] == "user"
    assert repo.env["RESTIC_REST_PASSWORD"] == "p@ss/word"
    with pytest.raises(MissingSecretKey, match="REST_SERVER_USERNAME"):
        build({"rest": {"url": "http://h"}}, REST_SERVER_PASSWORD="p@ss/word")


def test_rest_password_in_the_spec_url_is_redacted() -> None:
    """A password written into rest.url is hidden in repr and scrubbed from text."""
    repo = build({"rest": {"url": "http://user:hunter22@h:8000/repo"}})
    assert "hunter22" not in repr(repo)
    assert repo.display_url == "rest:http://user:<redacted>@h:8000/repo"
    assert repo.scrub("cannot reach http://user:hunter22@h") == "cannot reach http://user:<redacted>@h"


def test_max_connections_becomes_an_extended_option() -> None:
    """The maxConnections field becomes '-o <scheme>.connections=N' for the backend's scheme."""
    assert build({"gcs": {"bucket": "b", "maxConnections": 5}}).options == ("-o", "gs.connections=5")
    assert build({"azure": {"container": "c", "maxConnections": 3}}, AZURE_ACCOUNT_NAME="a").options == (
        "-o",
        "azure.connections=3",
    )
    assert build({"gcs": {"bucket": "b", "maxConnections": 0}}).options == ()


def test_missing_password_names_secret_and_key_never_values() -> None:
    """Without RESTIC_PASSWORD the error names the Secret (with namespace) and the key, not any value."""
    with pytest.raises(MissingSecretKey) as caught:
        build_repository(
            {"s3": {"bucket": "b"}, "storageSecretName": "s3-secret"},
            {"AWS_ACCESS_KEY_ID": b"AKIA-VALUE", "AWS_SECRET_ACCESS_KEY": b"VERY-SECRET"},
            files_dir=FILES,
            secret_namespace="demo",
        )
    message = str(caught.value)
    assert message == "storage Secret demo/s3-secret has no key RESTIC_PASSWORD"
    assert (caught.value.secret, caught.value.key, caught.value.reason) == (
        "demo/s3-secret",
        "RESTIC_PASSWORD",
        "StorageSecretKeyMissing",
    )


def test_empty_or_undecodable_values_are_refused_without_echoing_them() -> None:
    """An empty password or a non-UTF-8 credential names the key only."""
    with pytest.raises(BackendError, match="key RESTIC_PASSWORD is empty"):
        build_repository(
            {"local": {"mountPath": "/r"}, "storageSecretName": "s"},
            {"RESTIC_PASSWORD": b""},
            files_dir=FILES,
        )
    with pytest.raises(BackendError, match="key B2_ACCOUNT_KEY is not UTF-8 text") as caught:
        build({"b2": {"bucket": "b"}}, B2_ACCOUNT_ID="id", B2_ACCOUNT_KEY=b"\xff\xfehidden")
    assert "hidden" not in str(caught.value)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({}, "exactly one of"),
        ({"s3": {"bucket": "b"}, "gcs": {"bucket": "b"}}, "exactly one of"),
        ({"dropbox": {}}, "exactly one of"),
        ({"s3": {}}, "s3.bucket"),
        ({"gcs": {"prefix": "x"}}, "gcs.bucket"),
        ({"rest": {}}, "rest.url"),
    ],
)
def test_invalid_backend_specs(backend: dict[str, Any], message: str) -> None:
    """No backend, two backends, an unknown one, or a missing required field raise BackendError."""
    with pytest.raises(BackendError, match=message) as caught:
        build(backend)
    assert caught.value.reason == "InvalidBackend"


def test_storage_secret_name_is_required() -> None:
    """A backend without storageSecretName is refused (Stash requires it for RESTIC_PASSWORD)."""
    with pytest.raises(BackendError, match="storageSecretName"):
        build_repository({"local": {"mountPath": "/r"}}, {"RESTIC_PASSWORD": PASSWORD}, files_dir=FILES)


def test_files_need_an_absolute_directory() -> None:
    """Key files are only ever written under an absolute directory."""
    with pytest.raises(BackendError, match="absolute"):
        build_repository(
            {"gcs": {"bucket": "b"}, "storageSecretName": "s"},
            {"RESTIC_PASSWORD": PASSWORD, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": b"{}"},
            files_dir="relative/dir",
        )


def test_repr_and_str_never_show_secret_values() -> None:
    """repr()/str() list env keys and file paths only; every value is redacted."""
    repo = build(
        {"s3": {"bucket": "b"}},
        AWS_ACCESS_KEY_ID="AKIA-VISIBLE?",
        AWS_SECRET_ACCESS_KEY="shh-secret-key",
        CA_CERT_DATA=b"CERT-CONTENT",
    )
    for text in (repr(repo), str(repo), f"{repo}", repr([repo])):
        for value in (PASSWORD.decode(), "AKIA-VISIBLE?", "shh-secret-key", "CERT-CONTENT"):
            assert value not in text
        assert "AWS_SECRET_ACCESS_KEY" in text
        assert f"{FILES}/ca.crt" in text


def test_scrub_replaces_every_secret_value() -> None:
    """scrub() removes every Secret value from a text (e.g. restic's stderr) before it is shown."""
    repo = build({"s3": {"bucket": "b"}}, AWS_ACCESS_KEY_ID="AKIA-1", AWS_SECRET_ACCESS_KEY="shh-secret-key")
    text = f"failed with {PASSWORD.decode()} and shh-secret-key for AKIA-1"
    assert repo.scrub(text) == "failed with <redacted> and <redacted> for <redacted>"
    assert repo.scrub("nothing to hide") == "nothing to hide"


def test_decode_secret_data() -> None:
    """A Secret's base64 data decodes to bytes; a broken value names its key only."""
    data = {"RESTIC_PASSWORD": base64.b64encode(b"pw\n").decode()}
    assert decode_secret_data(data) == {"RESTIC_PASSWORD": b"pw\n"}
    assert decode_secret_data(None) == {}
    with pytest.raises(BackendError, match="key AWS_SECRET_ACCESS_KEY is not valid base64") as caught:
        decode_secret_data({"AWS_SECRET_ACCESS_KEY": "not base64!!"})
    assert "not base64!!" not in str(caught.value)
