"""Seeds 003/004 on S3 over HTTPS, end to end: a Repository and Secret written as Stash's S3 guide writes
them for a TLS-secured S3-compatible server, against a real S3 server.

versitygw (the pinned build, :mod:`tests.stores.versitygw`) runs on this host, listening on the node's
bridge address, which pods reach, over HTTPS with a certificate from a private CA made by the test. The
Secret holds ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``RESTIC_PASSWORD`` and the CA as
``CA_CERT_DATA``; the Repository names ``s3.endpoint`` (``https://...``), ``s3.bucket``, ``s3.region``
and ``s3.prefix`` (leading slash and all). The bucket does not exist beforehand: as the guide says, the
first backup creates it. The seed's objects otherwise, but one replica, a schedule that never fires
(sessions are made by hand) and ``keep-last-1``, so two sessions show retention removing a snapshot.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.manifests import backup_configuration, backup_session, busybox_deployment
from e2e.seed import (
    APP,
    PASSWORD,
    RESTORE,
    b64,
    conditions,
    manifest,
    restore_session,
    seed_objects,
    wipe,
    write_data,
)
from tests.polling import eventually
from tests.stores.versitygw import REGION, S3Server, versitygw

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

BUCKET = "stash-demo"
PREFIX = "/backup/demo/deployment/stash-demo"


@pytest.fixture(scope="module")
def s3(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """versitygw over HTTPS at ``NODE_IP`` (pods and this host reach it there), certificate valid there."""
    with versitygw(tmp_path_factory.mktemp("versitygw"), host=NODE_IP, tls=True) as server:
        yield server


def objects(namespace: str, s3: S3Server) -> list[dict[str, Any]]:
    """Seed 003's objects (one replica, keep-last-1) with the guide's ``minio-secret`` (the keys, the CA)
    and ``s3-repo`` on the TLS server."""
    assert s3.ca_cert is not None
    return seed_objects(
        namespace,
        {"s3": {"endpoint": s3.endpoint, "bucket": BUCKET, "region": REGION, "prefix": PREFIX}},
        secret={
            "AWS_ACCESS_KEY_ID": s3.keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.keys.secret_access_key,
            "CA_CERT_DATA": s3.ca_cert,
        },
        secret_name="minio-secret",
        repository="s3-repo",
        retention={"name": "keep-last-1", "keepLast": 1, "prune": True},
    )


def plain_restic(s3: S3Server, tmp_path: Path, *args: str) -> str:
    """restic on this host with only the Secret's values (the CA saved to a file, as ``--cacert``);
    what it prints (the test fails with restic's words when it exits non-zero)."""
    assert s3.ca_cert is not None
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(s3.ca_cert)
    env = {
        "PATH": "/usr/bin:/bin",
        "RESTIC_REPOSITORY": f"s3:{s3.endpoint}/{BUCKET}{PREFIX}",
        "RESTIC_PASSWORD": PASSWORD,
        "AWS_ACCESS_KEY_ID": s3.keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.keys.secret_access_key,
    }
    argv = [str(tools.ensure("restic")), "--no-cache", f"--cacert={ca_file}", "--retry-lock=2m", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=180)
    assert done.returncode == 0, f"restic {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def refused_storage(namespace: str, s3: S3Server, secret_key: str) -> list[dict[str, Any]]:
    """Secret ``keys-secret`` (the given secret access key, the right CA) and Repository ``keys-repo``
    (bucket ``rotated``, with its region), a busybox Deployment ``keys`` and its BackupConfiguration."""
    assert s3.ca_cert is not None
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys-secret", "namespace": namespace},
            "data": {
                "RESTIC_PASSWORD": b64(PASSWORD),
                "AWS_ACCESS_KEY_ID": b64(s3.keys.access_key_id),
                "AWS_SECRET_ACCESS_KEY": b64(secret_key),
                "CA_CERT_DATA": b64(s3.ca_cert),
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "keys-repo", "namespace": namespace},
            "spec": {
                "backend": {
                    "s3": {"endpoint": s3.endpoint, "bucket": "rotated", "region": REGION, "prefix": "/keys"},
                    "storageSecretName": "keys-secret",
                }
            },
        },
        busybox_deployment(namespace, ["/bin/sh", "-c", "echo keys > /data/f && sleep 3000"], name="keys"),
        backup_configuration(namespace, "keys", repository="keys-repo", workload="keys"),
    ]


async def test_seed_003_004_on_s3_over_https(
    kubectl: Any, namespace: str, operator_for: Any, s3: S3Server, helpers: Any, tmp_path: Path
) -> None:
    """The sidecar's first backup creates the bucket and the repository under the prefix over HTTPS
    (restic trusts the server through CA_CERT_DATA), checks the repository once
    (RepositoryIntegrityVerified, the Repository's integrity and count); a second backup and keep-last-1
    leave one snapshot, the second, as plain restic reads it with the Secret's values alone. The volume
    is wiped and ``stash-init`` puts every file back byte for byte with its mode; the RestoreSession
    Succeeds. No log holds the secret key or the password."""
    get = helpers.get
    operator_for(namespace)
    assert not s3.bucket_exists(BUCKET)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, s3))
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)
    before = manifest(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", "pause-backup") == "Ready", timeout=60, what="Ready"
    )
    [pod] = await helpers.rolled_out(kubectl, namespace, APP)

    async def backed_up(name: str) -> dict[str, Any]:
        kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, "pause-backup"))
        await helpers.until(
            lambda: phase("backupsession", name) in ("Succeeded", "Failed"), timeout=120, what=name
        )
        session: dict[str, Any] = get(kubectl, "backupsession", name, "-n", namespace)
        assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"])
        assert conditions(session)["RetentionPolicyApplied"][0] == "True"
        return session

    first = await backed_up("first")
    assert conditions(first)["BackendRepositoryInitialized"][0] == "True"
    assert s3.bucket_exists(BUCKET)
    verified = await helpers.until(
        lambda: conditions(get(kubectl, "backupsession", "first", "-n", namespace)).get(
            "RepositoryIntegrityVerified"
        ),
        timeout=120,
        what="the integrity check",
    )
    assert verified[0] == "True", verified
    (volume / "data.txt").write_text("second_data\n")
    before["data.txt"] = ("file", before["data.txt"][1], b"second_data\n")
    await backed_up("second")

    def counted() -> dict[str, Any] | None:
        status = get(kubectl, "repository", "s3-repo", "-n", namespace).get("status") or {}
        return status if status.get("integrity") is True and status.get("snapshotCount") == 1 else None

    await helpers.until(counted, timeout=90, what="s3-repo's status: integrity, one snapshot")

    names = s3.objects(BUCKET)
    top = PREFIX.strip("/")
    # restic's layout under the prefix; a lock too while the sidecar's post-session stats or check reads
    folders = {n.removeprefix(f"{top}/").split("/")[0] for n in names}
    assert folders - {"locks"} == {"config", "keys", "data", "index", "snapshots"}, names
    assert all(n.startswith(f"{top}/") for n in names)
    [snapshot] = json.loads(plain_restic(s3, tmp_path, "snapshots", "--json"))
    assert (snapshot["hostname"], snapshot["paths"]) == ("host-0", ["/source/data"])
    assert plain_restic(s3, tmp_path, "dump", "latest", "/source/data/data.txt") == "second_data\n"

    sidecar_log = kubectl("logs", "-n", namespace, pod, "-c", "stash").stdout  # before the restore rolls it

    wipe(volume)
    kubectl("apply", "-f", "-", input_obj=restore_session(namespace, repository="s3-repo"))
    [new_pod] = await helpers.rolled_out(kubectl, namespace, APP, container="stash-init")
    init_log = kubectl("logs", "-n", namespace, new_pod, "-c", "stash-init").stdout
    assert manifest(volume) == before, init_log[-3000:]
    await helpers.until(lambda: phase("restoresession", RESTORE) == "Succeeded", timeout=60, what="restored")
    rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
    assert [(s["hostname"], s["phase"]) for s in rs["status"]["stats"]] == [("host-0", "Succeeded")]

    for log in (sidecar_log, init_log):
        assert s3.keys.secret_access_key not in log
        assert PASSWORD not in log


async def test_wrong_s3_keys_fail_the_session_and_the_fixed_secret_backs_up(
    kubectl: Any, namespace: str, operator_for: Any, s3: S3Server, helpers: Any
) -> None:
    """A storage Secret with a wrong secret access key: the session Fails with WrongCredentials naming the
    S3 location (S3 answers 403 AccessDenied, which restic does not retry), the key nowhere in its status.
    The Secret fixed, the running sidecar's next session backs up (the kubelet refreshes the mounted
    Secret within its sync period: a session made before that still meets the old key)."""
    get = helpers.get
    operator_for(namespace)
    wrong = "not-the-secret-access-key-0123456789"
    kubectl("apply", "-f", "-", input_obj=refused_storage(namespace, s3, wrong))
    await helpers.until(
        lambda: (
            get(kubectl, "backupconfiguration", "keys", "-n", namespace).get("status", {}).get("phase")
            == "Ready"
        ),
        timeout=90,
        what="keys Ready",
    )
    await helpers.rolled_out(kubectl, namespace, "keys")
    sessions = iter(range(1, 100))

    async def session_ended() -> dict[str, Any]:
        name = f"keys-{next(sessions)}"
        kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, "keys"))

        def ended() -> dict[str, Any] | None:
            obj = get(kubectl, "backupsession", name, "-n", namespace)
            return dict(obj) if obj.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

        ended_session: dict[str, Any] = await helpers.until(ended, timeout=120, what=f"{name} ended")
        return ended_session

    refused = await session_ended()
    host = refused["status"]["targets"][0]["stats"][0]
    assert (refused["status"]["phase"], host["reason"]) == ("Failed", "WrongCredentials"), host
    location = f"s3:{s3.endpoint}/rotated/keys"
    assert host["error"].startswith(f"backend {location} refused the storage Secret's credentials: "), host
    assert "Access Denied" in host["error"]
    assert "Is there a repository" not in host["error"]
    assert wrong not in json.dumps(refused) and s3.keys.secret_access_key not in json.dumps(refused)

    kubectl("apply", "-f", "-", input_obj=refused_storage(namespace, s3, s3.keys.secret_access_key)[0])

    async def backed_up() -> dict[str, Any] | None:
        session = await session_ended()
        if session["status"]["phase"] == "Succeeded":
            return session
        assert session["status"]["targets"][0]["stats"][0]["reason"] == "WrongCredentials", session
        return None

    fixed = await eventually(backed_up, timeout=240, interval=5, what="a session with the fixed Secret")
    assert fixed["status"]["targets"][0]["stats"][0]["phase"] == "Succeeded"
    assert s3.bucket_exists("rotated")
