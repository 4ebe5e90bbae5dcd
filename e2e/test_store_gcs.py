"""Seeds 003/004 on GCS, end to end: the seed's Repository ``gcs-repo`` and Secret ``gcs-secret`` as the
seed writes them, against a real GCS JSON API server.

fake-gcs-server (the pinned build, :mod:`tests.stores.fake_gcs`) runs on this host, listening on the
node's bridge address, which pods reach. The BackupConfiguration and the RestoreSession point restic at
it the way Stash documents for any agent setting, ``runtimeSettings.container.env``
(``STORAGE_EMULATOR_HOST``); nothing else departs from the seed's objects but the Deployment's one
replica and a schedule that never fires (sessions are made by hand). The Secret's
``GOOGLE_SERVICE_ACCOUNT_JSON_KEY`` is a real service-account key whose ``token_uri`` is a FAKE token
endpoint (:class:`tests.stores.fake_gcs.FakeTokenEndpoint`; Google's cannot be reached here) that checks
the JWT restic signs with the key. A second test rotates the service account's key under a running
sidecar (a new key made, the Secret applied, the old key deleted at the token endpoint).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e.rotation import Sidecar, rewritten
from e2e.seed import (
    APP,
    PASSWORD,
    RESTORE,
    b64,
    backed_up_and_checked,
    manifest,
    restore_session,
    seed_objects,
    wipe,
    write_data,
)
from tests.stores.fake_gcs import FakeTokenEndpoint, GcsServer, ServiceAccount, fake_gcs_server

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PROJECT = "stashlet-demo"
BUCKET = "appscode-qa"


@dataclass(frozen=True)
class Gcs:
    """fake-gcs-server and the fake token endpoint on the node's bridge, and the account it trusts."""

    server: GcsServer
    tokens: FakeTokenEndpoint
    account: ServiceAccount

    def key(self, account: ServiceAccount) -> bytes:
        """``account``'s JSON key file, its ``token_uri`` the fake token endpoint."""
        return account.key_json(PROJECT, self.tokens.token_uri)


@pytest.fixture(scope="module")
def gcs(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gcs]:
    """The seed's bucket on fake-gcs-server at ``NODE_IP`` (pods and this host reach it there)."""
    account = ServiceAccount.generate(PROJECT)
    with (
        fake_gcs_server(tmp_path_factory.mktemp("fake-gcs"), host=NODE_IP) as server,
        FakeTokenEndpoint(host=NODE_IP).running() as tokens,
    ):
        tokens.trust(account)
        server.create_bucket(BUCKET, PROJECT)
        yield Gcs(server, tokens, account)


def emulator_env(gcs: Gcs) -> dict[str, Any]:
    """``runtimeSettings`` pointing the agent's restic at the server."""
    return {"container": {"env": [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.server.url}]}}


def objects(namespace: str, gcs: Gcs) -> list[dict[str, Any]]:
    """Seed 003's objects (one replica) with the seed's ``gcs-secret`` (the project, the service-account
    key) and ``gcs-repo``, the agent pointed at the server through ``runtimeSettings``."""
    key = gcs.account.key_json(PROJECT, gcs.tokens.token_uri)
    return seed_objects(
        namespace,
        {"gcs": {"bucket": BUCKET, "prefix": "/sample/data"}},
        secret={"GOOGLE_PROJECT_ID": PROJECT, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": key},
        runtime_settings=emulator_env(gcs),
    )


def plain_restic(gcs: Gcs, key: bytes, tmp_path: Path, *args: str) -> str:
    """restic on this host with only the Secret's values (the key saved to a file) and the server's
    address; what it prints (the test fails with restic's words when it exits non-zero)."""
    key_file = tmp_path / "downloaded-sa-json.key"
    key_file.write_bytes(key)
    env = {
        "PATH": "/usr/bin:/bin",
        "RESTIC_REPOSITORY": f"gs:{BUCKET}:/sample/data",
        "RESTIC_PASSWORD": PASSWORD,
        "GOOGLE_PROJECT_ID": PROJECT,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "STORAGE_EMULATOR_HOST": gcs.server.url,
    }
    argv = [str(tools.ensure("restic")), "--no-cache", "--retry-lock=2m", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=180)
    assert done.returncode == 0, f"restic {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


async def test_seed_003_004_on_gcs(
    kubectl: Any, namespace: str, operator_for: Any, gcs: Gcs, helpers: Any, tmp_path: Path
) -> None:
    """The sidecar backs the PVC up into ``gs:appscode-qa:/sample/data`` (its restic asks the token
    endpoint with the Secret's key), applies the retention policy, checks the repository once
    (RepositoryIntegrityVerified, the Repository's integrity, size and count); the bucket holds restic's
    objects under ``sample/data/``; plain restic reads the snapshot. The volume is wiped and ``stash-init``
    puts every file back byte for byte with its mode; the RestoreSession Succeeds. No log holds the key."""
    get = helpers.get
    operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, gcs))
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)
    before = manifest(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", "pause-backup") == "Ready", timeout=60, what="Ready"
    )
    [pod] = await helpers.rolled_out(kubectl, namespace, APP)
    granted = len(gcs.tokens.grants)
    _, repo = await backed_up_and_checked(kubectl, helpers, namespace, "to-gcs", repository="gcs-repo")
    assert repo["snapshotCount"] == 1
    grants = gcs.tokens.grants[granted:]
    assert grants, f"the sidecar's restic never asked for a token (refusals: {gcs.tokens.refusals})"
    assert {g["iss"] for g in grants} == {gcs.account.email}

    names = gcs.server.object_names(BUCKET)
    assert {n.split("/")[2] for n in names} == {"config", "keys", "data", "index", "snapshots"}, names
    assert all(n.startswith("sample/data/") for n in names)
    key = gcs.account.key_json(PROJECT, gcs.tokens.token_uri)
    [snapshot] = json.loads(plain_restic(gcs, key, tmp_path, "snapshots", "--json"))
    assert (snapshot["hostname"], snapshot["paths"]) == ("host-0", ["/source/data"])
    assert plain_restic(gcs, key, tmp_path, "dump", "latest", "/source/data/data.txt") == "sample_data\n"

    wipe(volume)
    granted = len(gcs.tokens.grants)
    kubectl("apply", "-f", "-", input_obj=restore_session(namespace, runtime_settings=emulator_env(gcs)))
    [new_pod] = await helpers.rolled_out(kubectl, namespace, APP, container="stash-init")
    init_log = kubectl("logs", "-n", namespace, new_pod, "-c", "stash-init").stdout
    assert manifest(volume) == before, init_log[-3000:]
    await helpers.until(lambda: phase("restoresession", RESTORE) == "Succeeded", timeout=60, what="restored")
    rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
    assert [(s["hostname"], s["phase"]) for s in rs["status"]["stats"]] == [("host-0", "Succeeded")]
    assert gcs.tokens.grants[granted:], "stash-init's restic never asked for a token"

    sidecar_log = kubectl("logs", "-n", namespace, pod, "-c", "stash").stdout
    private = json.loads(key)["private_key"].splitlines()[1]
    for log in (sidecar_log, init_log):
        assert private not in log
        assert PASSWORD not in log


async def test_a_rotated_service_account_key_reaches_the_running_sidecar(
    kubectl: Any, namespace: str, operator_for: Any, gcs: Gcs, node: LocalCluster, helpers: Any
) -> None:
    """A service account's key rotated as its owner does it on GCS: key A backs up; a second key B is made
    for the same account, the Secret applied with B's key file, A deleted (the FAKE token endpoint refuses
    it from then on). Once the kubelet has put the new Secret into the pod's volume, the same sidecar (same
    pod, no container restarted) backs up with B: its token came from B's key. fake-gcs-server checks no
    token, so what this shows is the agent's part: each session reads the key file anew."""
    key_a, key_b = gcs.account, gcs.account.new_key()
    operator_for(namespace)
    objects = seed_objects(
        namespace,
        {"gcs": {"bucket": BUCKET, "prefix": "/rotation"}},
        secret={"GOOGLE_PROJECT_ID": PROJECT, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": gcs.key(key_a)},
        runtime_settings=emulator_env(gcs),
    )
    kubectl("apply", "-f", "-", input_obj=objects)
    await helpers.pvc_path(kubectl, namespace, "source-pvc")
    sidecar = await Sidecar.ready(kubectl, helpers, namespace)

    async def backed_up(name: str) -> list[str]:
        """The session Succeeded; the key ids the token endpoint granted tokens for meanwhile."""
        granted = len(gcs.tokens.grants)
        await sidecar.backed_up(name)
        return sorted({g["kid"] for g in gcs.tokens.grants[granted:]})

    assert await backed_up("with-a") == [key_a.key_id]
    gcs.tokens.trust(key_b)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    secret["data"]["GOOGLE_SERVICE_ACCOUNT_JSON_KEY"] = b64(gcs.key(key_b))
    volume = sidecar.secret_volume(node, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY")
    applied = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input_obj=[secret])
    gcs.tokens.revoke(key_a)
    await rewritten(helpers, volume, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY", gcs.key(key_b).decode(), applied)
    assert await backed_up("with-b") == [key_b.key_id]
    assert sidecar.unrestarted()
    assert len(gcs.server.object_names(BUCKET, "rotation/snapshots/")) == 2
    log = sidecar.log()
    for key in (key_a, key_b):
        assert json.loads(gcs.key(key))["private_key"].splitlines()[1] not in log
