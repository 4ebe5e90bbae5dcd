"""S3 access keys rotated under a running sidecar (issue 16, part 5), end to end on the real node.

versitygw (:mod:`tests.stores.versitygw`) over HTTPS at the node's bridge address, with its internal IAM:
besides root it keeps accounts, made and deleted with its admin calls as an operator of the store would.
User A's keys are in the storage Secret and back up; then the store's admin rotates: user B is made and
given the bucket, the Secret is updated to B's keys (``kubectl apply``), user A is deleted (its key id is
refused from then on, ``InvalidAccessKeyId``). The kubelet puts the new Secret into the running pod's
volume within its sync period; the agent reads the mounted Secret's files for every session, so the same
sidecar's next session backs up with B's keys, without a restart.
"""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.rotation import Sidecar, rewritten
from e2e.seed import MOUNT, PASSWORD, SECRET, b64, seed_objects
from tests.stores.versitygw import REGION, S3Keys, S3Server, versitygw

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

BUCKET = "rotation"
PREFIX = "/stash-demo"


@pytest.fixture(scope="module")
def s3(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """versitygw over HTTPS at ``NODE_IP`` with its internal IAM (accounts besides root)."""
    with versitygw(tmp_path_factory.mktemp("versitygw"), host=NODE_IP, tls=True, iam=True) as server:
        yield server


def new_keys(name: str) -> S3Keys:
    return S3Keys(f"AK{name}{secrets.token_hex(7).upper()}", secrets.token_urlsafe(30))


def secret_data(s3: S3Server, keys: S3Keys) -> dict[str, bytes | str]:
    assert s3.ca_cert is not None
    return {
        "AWS_ACCESS_KEY_ID": keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        "CA_CERT_DATA": s3.ca_cert,
    }


def restic_dump(s3: S3Server, keys: S3Keys, tmp_path: Path, path: str) -> str:
    """``restic dump latest <path>`` on this host with ``keys`` (without a lock); the file's content."""
    assert s3.ca_cert is not None
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(s3.ca_cert)
    env = {
        "PATH": "/usr/bin:/bin",
        "RESTIC_REPOSITORY": f"s3:{s3.endpoint}/{BUCKET}{PREFIX}",
        "RESTIC_PASSWORD": PASSWORD,
        "AWS_ACCESS_KEY_ID": keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
    }
    argv = [
        str(tools.ensure("restic")),
        "--no-cache",
        "--no-lock",  # a read: never waits for (or reports, on stdout) the sidecar's check or stats lock
        f"--cacert={ca_file}",
        "dump",
        "latest",
        path,
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"restic dump exited {done.returncode}: {done.stderr}"
    return done.stdout


async def test_rotated_keys_reach_the_running_sidecar_and_the_revoked_ones_do_not_matter(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    s3: S3Server,
    node: LocalCluster,
    helpers: Any,
    tmp_path: Path,
) -> None:
    """User A's keys back up; B made and given the bucket, the Secret updated to B's keys, A deleted (the
    server refuses A's key id now). Once the kubelet has put the new Secret into the pod's volume, the
    same sidecar (same pod, same containers, no restart) backs up with B's keys: two snapshots in the
    bucket, the second holding the data written after the rotation, read back with B's keys. The agent
    logs the Secret's change (its key names, no value)."""
    a, b = new_keys("A"), new_keys("B")
    s3.create_user(a)
    operator_for(namespace)
    backend = {"s3": {"endpoint": s3.endpoint, "bucket": BUCKET, "region": REGION, "prefix": PREFIX}}
    objects = seed_objects(namespace, backend, secret=secret_data(s3, a))
    kubectl("apply", "-f", "-", input_obj=objects)
    data = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    (data / "data.txt").write_text("written with A's keys\n")
    sidecar = await Sidecar.ready(kubectl, helpers, namespace)
    await sidecar.backed_up("with-a")
    assert s3.bucket_exists(BUCKET)

    s3.create_user(b)
    s3.change_bucket_owner(BUCKET, b.access_key_id)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    secret["data"] = {k: b64(v) for k, v in {"RESTIC_PASSWORD": PASSWORD, **secret_data(s3, b)}.items()}
    volume = sidecar.secret_volume(node, "AWS_ACCESS_KEY_ID")
    assert (volume / "AWS_ACCESS_KEY_ID").read_text() == a.access_key_id
    applied = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input_obj=[secret])
    s3.delete_user(a.access_key_id)
    status, answer = s3.request("GET", f"/{BUCKET}", keys=a)
    assert (status, b"<Code>InvalidAccessKeyId</Code>" in answer) == (403, True), answer
    assert s3.call("GET", f"/{BUCKET}", keys=b) == 200

    write = await rewritten(helpers, volume, "AWS_ACCESS_KEY_ID", b.access_key_id, applied)
    (data / "data.txt").write_text("written with B's keys\n")
    await sidecar.backed_up("with-b")

    assert sidecar.unrestarted()
    snapshots = [n for n in s3.objects(BUCKET) if n.startswith(f"{PREFIX.strip('/')}/snapshots/")]
    assert len(snapshots) == 2, snapshots
    assert restic_dump(s3, b, tmp_path, f"{MOUNT}/data.txt") == "written with B's keys\n"
    change = await sidecar.secret_change(SECRET)
    assert change["keys"] == sorted(["RESTIC_PASSWORD", *secret_data(s3, b)])
    log = sidecar.log()
    for secret_value in (a.secret_access_key, b.secret_access_key, PASSWORD):
        assert secret_value not in log
    print(write.report(dt.datetime.fromisoformat(change["time"])))  # the figure the report quotes (pytest -s)
