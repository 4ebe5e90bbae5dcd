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
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.manifests import backup_session
from e2e.seed import APP, CONFIGURATION, MOUNT, PASSWORD, SECRET, b64, seed_objects
from tests.stores.versitygw import REGION, S3Keys, S3Server, versitygw

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

BUCKET = "rotation"
PREFIX = "/stash-demo"
KUBELET_STAMP = "..%Y_%m_%d_%H_%M_%S."
"""How the kubelet names each write of a Secret volume, the folder ``..data`` links to: the UTC second
of the write, then random digits."""


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


def containers(pod: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Each container of ``pod``: its container id and restart count."""
    return {
        c["name"]: (c.get("containerID", ""), c["restartCount"]) for c in pod["status"]["containerStatuses"]
    }


def kubelet_write(volume: Path) -> dt.datetime | None:
    """When the kubelet wrote the Secret volume's current version (from the name ``..data`` links to)."""
    try:
        target = (volume / "..data").readlink().name
    except OSError:
        return None
    return dt.datetime.strptime(target[: len("..2006_01_02_15_04_05.")], KUBELET_STAMP).replace(tzinfo=dt.UTC)


def restic_dump(s3: S3Server, keys: S3Keys, tmp_path: Path, path: str) -> str:
    """``restic dump latest <path>`` on this host with ``keys``; the file's content."""
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
        "--retry-lock=2m",
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
    get = helpers.get
    a, b = new_keys("A"), new_keys("B")
    s3.create_user(a)
    operator_for(namespace)
    backend = {"s3": {"endpoint": s3.endpoint, "bucket": BUCKET, "region": REGION, "prefix": PREFIX}}
    objects = seed_objects(namespace, backend, secret=secret_data(s3, a))
    kubectl("apply", "-f", "-", input_obj=objects)
    data = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    (data / "data.txt").write_text("written with A's keys\n")

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", CONFIGURATION) == "Ready", timeout=60, what="Ready"
    )
    [pod_name] = await helpers.rolled_out(kubectl, namespace, APP)
    pod = get(kubectl, "pod", pod_name, "-n", namespace)
    before = containers(pod)

    async def backed_up(name: str) -> None:
        kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, CONFIGURATION))
        await helpers.until(
            lambda: phase("backupsession", name) in ("Succeeded", "Failed"), timeout=120, what=name
        )
        status = get(kubectl, "backupsession", name, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded", json.dumps(status)

    await backed_up("with-a")
    assert s3.bucket_exists(BUCKET)

    s3.create_user(b)
    s3.change_bucket_owner(BUCKET, b.access_key_id)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    secret["data"] = {k: b64(v) for k, v in {"RESTIC_PASSWORD": PASSWORD, **secret_data(s3, b)}.items()}
    assert node.node is not None
    volumes = (
        node.node.paths.kubelet_root / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~secret"
    )
    [volume] = [v for v in volumes.iterdir() if (v / "AWS_ACCESS_KEY_ID").is_file()]
    assert (volume / "AWS_ACCESS_KEY_ID").read_text() == a.access_key_id
    applied = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    kubectl("apply", "-f", "-", input_obj=[secret])
    s3.delete_user(a.access_key_id)
    status, answer = s3.request("GET", f"/{BUCKET}", keys=a)
    assert (status, b"<Code>InvalidAccessKeyId</Code>" in answer) == (403, True), answer
    assert s3.call("GET", f"/{BUCKET}", keys=b) == 200

    await helpers.until(
        lambda: (volume / "AWS_ACCESS_KEY_ID").read_text() == b.access_key_id,
        timeout=150,
        interval=1,
        what="the kubelet writing the new Secret into the pod's volume",
    )
    seen = time.monotonic() - started
    written = kubelet_write(volume)
    assert written is not None
    (data / "data.txt").write_text("written with B's keys\n")
    await backed_up("with-b")

    after = get(kubectl, "pod", pod_name, "-n", namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert containers(after) == before
    snapshots = [n for n in s3.objects(BUCKET) if n.startswith(f"{PREFIX.strip('/')}/snapshots/")]
    assert len(snapshots) == 2, snapshots
    assert restic_dump(s3, b, tmp_path, f"{MOUNT}/data.txt") == "written with B's keys\n"

    def changes() -> list[dict[str, Any]]:
        log = kubectl("logs", "-n", namespace, pod_name, "-c", "stash").stdout
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        return [
            line
            for line in lines
            if line.get("msg", "").startswith("mounted storage Secret changed")
            and line.get("secret") == SECRET
        ]

    [change] = await helpers.until(changes, timeout=30, what="the agent's log of the Secret's change")
    log = kubectl("logs", "-n", namespace, pod_name, "-c", "stash").stdout
    noticed = dt.datetime.fromisoformat(change["time"])
    assert change["keys"] == sorted(["RESTIC_PASSWORD", *secret_data(s3, b)])
    for secret_value in (a.secret_access_key, b.secret_access_key, PASSWORD):
        assert secret_value not in log
    print(  # the figure the report quotes (pytest -s)
        f"Secret applied {applied:%H:%M:%S.%f}; kubelet wrote it {written:%H:%M:%S} "
        f"({(written - applied).total_seconds():+.1f} s; seen on the host after {seen:.1f} s); "
        f"the agent logged the change at {noticed:%H:%M:%S.%f} ({(noticed - applied).total_seconds():+.1f} s)"
    )
