"""A GCS backend failing in every way issue 16 names, and recovering, under one running sidecar on the
real node.

fake-gcs-server (the pinned build, :mod:`tests.stores.fake_gcs`) and the FAKE token endpoint
(:class:`tests.stores.fake_gcs.FakeTokenEndpoint`: Google's cannot be reached here; it checks the JWT
restic signs with the Secret's key, the server itself checks no token) run on this host at the node's
bridge address. The seed's ``gcs-repo`` and ``gcs-secret`` (one replica, a schedule that never fires:
sessions are made by hand), the agent pointed at the server through ``runtimeSettings.container.env``
``STORAGE_EMULATOR_HOST``, a ``timeOut`` of 60 s and restic's ``--limit-upload`` (so a large backup runs
long enough to be cut off). One sidecar meets, in turn:

- a key the token endpoint does not trust: Failed, WrongCredentials naming the backend;
- the Secret fixed, but the bucket not made: Failed, RepositoryNotFound naming the bucket and saying to
  create it (restic 0.18.1 never creates a GCS bucket);
- the bucket made: the next session initialises the repository and Succeeds;
- the server stopped (its port refuses): Failed, BackendUnavailable naming the backend and its refused
  endpoint (restic itself says nothing: the agent's probe of the endpoint sees it), before the timeOut,
  no session left Running; the server back: the next session Succeeds;
- the server stopped while a 48 MiB backup uploads: BackendReachable False while the session runs, then
  Failed with BackendUnavailable before the timeOut; the server back: the next session Succeeds and
  plain restic finds every finished session's snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from e2e.manifests import backup_session
from e2e.seed import (
    APP,
    CONFIGURATION,
    MOUNT,
    PASSWORD,
    SECRET,
    b64,
    backed_up_and_checked,
    conditions,
    seed_objects,
    write_data,
)
from tests.polling import eventually
from tests.stores.fake_gcs import FakeTokenEndpoint, GcsServer, ServiceAccount, fake_gcs_server

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PROJECT = "stashlet-demo"
BUCKET = "gcs-failures"
PREFIX = "/sample/data"
LOCATION = f"gs:{BUCKET}:{PREFIX}"
TIME_OUT = 60
"""The configuration's ``timeOut`` in seconds: an unreachable backend is given up 15 s before it."""
UPLOAD_KIB_PER_S = 2048
BIG_MIB = 48
"""The large backup: about 24 s of upload at the limit."""


@dataclass(frozen=True)
class Gcs:
    """fake-gcs-server and the fake token endpoint on the node's bridge, the account it trusts and one
    it does not."""

    server: GcsServer
    tokens: FakeTokenEndpoint
    account: ServiceAccount
    stranger: ServiceAccount

    def key(self, account: ServiceAccount) -> bytes:
        return account.key_json(PROJECT, self.tokens.token_uri)


@pytest.fixture(scope="module")
def gcs(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gcs]:
    """The server at ``NODE_IP`` without the test's bucket (pods and this host reach it there)."""
    account = ServiceAccount.generate(PROJECT)
    stranger = ServiceAccount.generate(PROJECT, name="not-granted")
    with (
        fake_gcs_server(tmp_path_factory.mktemp("fake-gcs"), host=NODE_IP) as server,
        FakeTokenEndpoint(host=NODE_IP).running() as tokens,
    ):
        tokens.trust(account)
        yield Gcs(server, tokens, account, stranger)


def secret_data(gcs: Gcs, account: ServiceAccount) -> dict[str, bytes | str]:
    return {"GOOGLE_PROJECT_ID": PROJECT, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": gcs.key(account)}


def objects(namespace: str, gcs: Gcs) -> list[dict[str, Any]]:
    """Seed 003's objects (one replica) with the stranger's key in ``gcs-secret``; the configuration's
    timeOut and upload limit; the agent pointed at the server."""
    found = seed_objects(
        namespace,
        {"gcs": {"bucket": BUCKET, "prefix": PREFIX}},
        secret=secret_data(gcs, gcs.stranger),
        runtime_settings={"container": {"env": [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.server.url}]}},
    )
    [configuration] = [o for o in found if o["kind"] == "BackupConfiguration"]
    configuration["spec"]["timeOut"] = f"{TIME_OUT}s"
    configuration["spec"]["target"]["args"] = [f"--limit-upload={UPLOAD_KIB_PER_S}"]
    return found


def fixed_secret(namespace: str, gcs: Gcs) -> dict[str, Any]:
    """``gcs-secret`` with the trusted account's key."""
    data = {"RESTIC_PASSWORD": PASSWORD, **secret_data(gcs, gcs.account)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "data": {key: b64(value) for key, value in data.items()},
    }


def plain_restic(gcs: Gcs, tmp_path: Path, *args: str) -> str:
    """restic on this host with only the Secret's values and the server's address; what it prints."""
    key_file = tmp_path / "downloaded-sa-json.key"
    key_file.write_bytes(gcs.key(gcs.account))
    env = {
        "PATH": "/usr/bin:/bin",
        "RESTIC_REPOSITORY": LOCATION,
        "RESTIC_PASSWORD": PASSWORD,
        "GOOGLE_PROJECT_ID": PROJECT,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "STORAGE_EMULATOR_HOST": gcs.server.url,
    }
    argv = [str(tools.ensure("restic")), "--no-cache", "--no-lock", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=180)
    assert done.returncode == 0, f"restic {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


async def test_a_gcs_backend_refusing_missing_and_vanishing_then_fixed(
    kubectl: Any, namespace: str, operator_for: Any, gcs: Gcs, helpers: Any, tmp_path: Path
) -> None:
    """One sidecar through wrong credentials, a missing bucket, a refusing endpoint and a server that
    vanishes mid-backup: each session Fails with its reason naming the backend (no key, no password in
    any status or event), none stays Running, and the session after each fix Succeeds."""
    get = helpers.get
    operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, gcs))
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", CONFIGURATION) == "Ready", timeout=60, what="Ready"
    )
    [pod] = await helpers.rolled_out(kubectl, namespace, APP)
    numbers = count(1)
    private_lines = [
        json.loads(gcs.key(account))["private_key"].splitlines()[1] for account in (gcs.account, gcs.stranger)
    ]

    def clean(obj: Any) -> None:
        text = json.dumps(obj)
        assert PASSWORD not in text
        assert all(line not in text for line in private_lines)

    def status_of(name: str) -> dict[str, Any]:
        return dict(get(kubectl, "backupsession", name, "-n", namespace).get("status") or {})

    async def ended(name: str, timeout: float = TIME_OUT + 30) -> dict[str, Any]:  # noqa: ASYNC109
        def done() -> dict[str, Any] | None:
            status = status_of(name)
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status: dict[str, Any] = await helpers.until(done, timeout=timeout, what=f"{name} ended")
        clean(status)
        return status

    def start() -> str:
        name = f"gcs-{next(numbers)}"
        kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, CONFIGURATION))
        return name

    def host(status: dict[str, Any]) -> dict[str, Any]:
        [stats] = status["targets"][0]["stats"]
        return dict(stats)

    def none_running() -> None:
        sessions = get(kubectl, "backupsession", "-n", namespace)["items"]
        running = [
            s["metadata"]["name"] for s in sessions if (s.get("status") or {}).get("phase") == "Running"
        ]
        assert running == [], running

    # 1. A key the token endpoint does not trust.
    refused = await ended(start())
    assert (refused["phase"], host(refused)["reason"]) == ("Failed", "WrongCredentials"), refused
    error = host(refused)["error"]
    assert error.startswith(f"backend {LOCATION} refused the storage Secret's credentials: "), error
    assert error.endswith("oauth2: cannot fetch token: 400 Bad Request"), error
    assert "Is there a repository" not in error
    assert any(r.startswith(f"no trusted key {gcs.stranger.key_id!r}") for r in gcs.tokens.refusals)

    # 2. The Secret fixed (the running sidecar reads it once the kubelet refreshed the mount); the bucket
    # is still missing.
    kubectl("apply", "-f", "-", input_obj=[fixed_secret(namespace, gcs)])
    secret_applied = time.monotonic()

    async def past_the_credentials() -> dict[str, Any] | None:
        status = await ended(start())
        if host(status)["reason"] == "WrongCredentials":
            return None
        return status

    no_bucket = await eventually(past_the_credentials, timeout=240, interval=5, what="the fixed Secret used")
    secret_seen = time.monotonic() - secret_applied
    assert (no_bucket["phase"], host(no_bucket)["reason"]) == ("Failed", "RepositoryNotFound"), no_bucket
    assert host(no_bucket)["error"].startswith(
        f"backend {LOCATION} has no such bucket, so no repository: GCS bucket {BUCKET} does not exist, "
        "and restic does not create a GCS bucket: create it first"
    ), host(no_bucket)
    assert BUCKET not in gcs.server.buckets()

    # 3. The bucket made: the next session initialises the repository and backs up.
    gcs.server.create_bucket(BUCKET, PROJECT)
    first, _ = await backed_up_and_checked(kubectl, helpers, namespace, f"gcs-{next(numbers)}")
    assert conditions(first)["BackendRepositoryInitialized"][0] == "True"

    # 4. The server stopped: its port refuses connections, restic retries silently.
    gcs.server.stop()
    created = time.monotonic()
    down = await ended(start())
    refused_for = time.monotonic() - created
    assert (down["phase"], host(down)["reason"]) == ("Failed", "BackendUnavailable"), down
    error = host(down)["error"]
    assert error.startswith(f"backend {LOCATION} unreachable since "), error
    # restic is silent while Google's client retries (the probe's word: "its endpoint: dial tcp ...") or,
    # when the client's context ends first, prints its last error: either way the refused endpoint is named
    assert f"dial tcp {NODE_IP}:" in error and "connection refused" in error, error
    assert "before the session's timeOut" in error
    assert refused_for < TIME_OUT + 10, refused_for
    none_running()

    # 5. The server back.
    gcs.server.start()
    back = await ended(start())
    assert back["phase"] == "Succeeded", back

    # 6. The server vanishes while a large backup uploads.
    (volume / "big.bin").write_bytes(os.urandom(BIG_MIB * 1024 * 1024))
    cut = start()
    created = time.monotonic()

    def uploading() -> bool:
        stats = [s for t in status_of(cut).get("targets", []) for s in t.get("stats", [])]
        return any(s.get("progress", {}).get("bytesDone", 0) > 0 for s in stats)

    await helpers.until(uploading, timeout=40, what="the large backup uploading")
    gcs.server.stop()
    stopped = time.monotonic()

    def unreachable() -> dict[str, Any] | None:
        status = status_of(cut)
        return status if conditions({"status": status}).get("BackendReachable", ("",))[0] == "False" else None

    running = await helpers.until(unreachable, timeout=30, what="BackendReachable False while it runs")
    assert running["phase"] == "Running", running
    noticed = time.monotonic() - stopped
    cut_off = await ended(cut)
    cut_for = time.monotonic() - created
    assert (cut_off["phase"], host(cut_off)["reason"]) == ("Failed", "BackendUnavailable"), cut_off
    assert host(cut_off)["error"].startswith(f"backend {LOCATION} unreachable since "), host(cut_off)
    assert "before the session's timeOut" in host(cut_off)["error"]
    assert cut_for < TIME_OUT + 10, cut_for
    none_running()

    gcs.server.start()
    again = await ended(start(), timeout=TIME_OUT + 60)
    assert again["phase"] == "Succeeded", again
    snapshots = json.loads(plain_restic(gcs, tmp_path, "snapshots", "--json"))
    assert [(s["hostname"], s["paths"]) for s in snapshots] == [("host-0", [MOUNT])] * 3, snapshots
    listed = plain_restic(gcs, tmp_path, "ls", "latest", f"{MOUNT}/big.bin")
    assert f"{MOUNT}/big.bin" in listed

    events = get(kubectl, "events", "-n", namespace)["items"]
    clean(events)
    sidecar_log = kubectl("logs", "-n", namespace, pod, "-c", "stash").stdout
    assert all(line not in sidecar_log for line in private_lines) and PASSWORD not in sidecar_log
    print(  # the figures the report quotes (pytest -s)
        f"fixed Secret used after {secret_seen:.0f} s; refusing endpoint: session Failed after "
        f"{refused_for:.0f} s; cut off mid-backup: BackendReachable False {noticed:.0f} s after the stop, "
        f"Failed {cut_for:.0f} s after the session's creation (timeOut {TIME_OUT} s)"
    )
