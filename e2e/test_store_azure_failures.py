"""An Azure Blob backend refusing the key, then refusing connections, and recovering, under one running
sidecar on the real node.

Azurite (the pinned npm package, :mod:`tests.stores.azurite`) runs on this host over HTTPS at the node's
bridge address with a certificate from a private CA the Secret carries; the Repository and Secret as
Stash's Azure page writes them (plus CA_CERT_DATA and AZURE_ACCESS_TIER), the endpoint suffix through
``runtimeSettings.container.env`` and the account's blob host through the pods' ``hostAliases`` (as in
``e2e/test_store_azure.py``), a ``timeOut`` of 60 s and restic's ``--limit-upload`` (so a large backup
runs long enough to be cut off). The container is made beforehand (restic 0.18.1 retries a missing
container as an outage). One sidecar meets, in turn:

- an account key Azurite does not hold: Failed, WrongCredentials naming the backend, with Azure's status
  and error code (403 AuthorizationFailure, which restic does not retry);
- the Secret fixed: once the kubelet refreshed the mount, the next session initialises the repository and
  Succeeds;
- Azurite stopped (its port refuses): restic retries, the session says so (BackendReachable False) and
  Fails with BackendUnavailable naming the backend and restic's error before the timeOut, no session left
  Running; Azurite back: the next session Succeeds;
- Azurite stopped while a 48 MiB backup uploads: BackendReachable False while the session runs, then
  Failed with BackendUnavailable before the timeOut; Azurite back: the next session Succeeds and plain
  restic reads the three snapshots, the last holding the large file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from e2e.manifests import backup_session
from e2e.seed import (
    APP,
    CONFIGURATION,
    MOUNT,
    PASSWORD,
    conditions,
    seed_objects,
    write_data,
)
from tests.polling import eventually
from tests.stores import azurite

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

CONTAINER = "stash-failures"
PREFIX = "demo/deployment/stash-demo"
LOCATION = f"azure:{CONTAINER}:/{PREFIX}"
SECRET = "azure-secret"
REPOSITORY = "azure-repo"
TIME_OUT = 60
"""The configuration's ``timeOut`` in seconds: an unreachable backend is given up 15 s before it."""
UPLOAD_KIB_PER_S = 2048
BIG_MIB = 48
"""The large backup: about 24 s of upload at the limit."""


@pytest.fixture(scope="module")
def server(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    """Azurite on ``NODE_IP`` (pods and this host reach it there)."""
    with azurite.running(tmp_path_factory.mktemp("azurite"), address=NODE_IP) as running:
        yield running


def objects(namespace: str, server: azurite.Azurite, key: str) -> list[dict[str, Any]]:
    """Seed 003's objects (one replica, its pods resolving Azurite's name) with ``azure-secret`` holding
    ``key`` and ``azure-repo``, the suffix through ``runtimeSettings``, the configuration's timeOut."""
    found = seed_objects(
        namespace,
        {"azure": {"container": CONTAINER, "prefix": f"/{PREFIX}"}},
        secret={**server.secret(PASSWORD), "AZURE_ACCOUNT_KEY": key},
        secret_name=SECRET,
        repository=REPOSITORY,
        runtime_settings={
            "container": {"env": [{"name": "AZURE_ENDPOINT_SUFFIX", "value": server.endpoint_suffix}]}
        },
        host_aliases=[{"ip": server.address, "hostnames": [server.host]}],
    )
    [configuration] = [o for o in found if o["kind"] == "BackupConfiguration"]
    configuration["spec"]["timeOut"] = f"{TIME_OUT}s"
    configuration["spec"]["target"]["args"] = [f"--limit-upload={UPLOAD_KIB_PER_S}"]
    return found


def plain_restic(server: azurite.Azurite, *args: str) -> str:
    """restic on this host with only the Secret's values, the suffix and the CA; what it prints."""
    secret = server.secret(PASSWORD)
    env = {
        key: secret[key].decode() for key in ("RESTIC_PASSWORD", "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY")
    }
    env.update(PATH="/usr/bin:/bin", RESTIC_REPOSITORY=LOCATION, AZURE_ENDPOINT_SUFFIX=server.endpoint_suffix)
    restic = server.restic_wrapper(tools.ensure("restic"))
    argv = [str(restic), "--no-cache", "--no-lock", f"--cacert={server.ca_file}", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=180)
    assert done.returncode == 0, f"restic {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


async def test_an_azure_backend_refusing_the_key_then_connections_then_vanishing_then_fixed(
    kubectl: Any, namespace: str, operator_for: Any, server: azurite.Azurite, helpers: Any
) -> None:
    """One sidecar through a wrong account key, a stopped Azurite and one stopped mid-backup: each session
    Fails with its reason naming the backend (no key, no password in any status or event), none stays
    Running, and the session after each fix Succeeds."""
    get = helpers.get
    operator_for(namespace)
    server.create_container(CONTAINER)
    wrong = azurite.new_key()
    kubectl("apply", "-f", "-", input_obj=objects(namespace, server, wrong))
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", CONFIGURATION) == "Ready", timeout=60, what="Ready"
    )
    [pod] = await helpers.rolled_out(kubectl, namespace, APP)
    numbers = count(1)

    def clean(obj: Any) -> None:
        text = json.dumps(obj)
        assert PASSWORD not in text and wrong not in text and server.account_key not in text

    def status_of(name: str) -> dict[str, Any]:
        return dict(get(kubectl, "backupsession", name, "-n", namespace).get("status") or {})

    async def ended(name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = status_of(name)
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status: dict[str, Any] = await helpers.until(done, timeout=TIME_OUT + 30, what=f"{name} ended")
        clean(status)
        return status

    def start() -> str:
        name = f"azure-{next(numbers)}"
        kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, CONFIGURATION))
        return name

    def host(status: dict[str, Any]) -> dict[str, Any]:
        [stats] = status["targets"][0]["stats"]
        return dict(stats)

    # 1. A key Azurite does not hold.
    refused = await ended(start())
    assert (refused["phase"], host(refused)["reason"]) == ("Failed", "WrongCredentials"), refused
    error = host(refused)["error"]
    assert error.startswith(f"backend {LOCATION} refused the storage Secret's credentials: "), error
    assert "RESPONSE 403" in error and "ERROR CODE: AuthorizationFailure" in error, error
    assert "----" not in error and "Is there a repository" not in error

    # 2. The Secret fixed: the running sidecar reads it once the kubelet refreshed the mount.
    [secret] = [o for o in objects(namespace, server, server.account_key) if o["kind"] == "Secret"]
    kubectl("apply", "-f", "-", input_obj=[secret])
    secret_applied = time.monotonic()

    async def backed_up() -> dict[str, Any] | None:
        name = start()
        status = await ended(name)
        if status["phase"] == "Succeeded":
            return {"name": name, **status}
        assert host(status)["reason"] == "WrongCredentials", status
        return None

    first = await eventually(backed_up, timeout=240, interval=5, what="a session with the fixed Secret")
    secret_seen = time.monotonic() - secret_applied
    assert conditions({"status": first})["BackendRepositoryInitialized"][0] == "True", first
    verified = await helpers.until(
        lambda: conditions({"status": status_of(first["name"])}).get("RepositoryIntegrityVerified"),
        timeout=120,
        what="the integrity check",
    )
    assert verified[0] == "True", verified

    def upkept() -> bool:  # the session's upkeep (check, then stats) is over: the sidecar is idle
        status = get(kubectl, "repository", REPOSITORY, "-n", namespace).get("status") or {}
        return status.get("integrity") is True and status.get("snapshotCount") == 1

    await helpers.until(upkept, timeout=60, what=f"{REPOSITORY}'s status: integrity, one snapshot")

    # 3. Azurite stopped: its port refuses connections, restic retries and says so.
    server.stop()
    created = time.monotonic()
    name = start()

    def unreachable(session: str) -> dict[str, Any] | None:
        """The status once BackendReachable is False and the host's Running entry is in (the two are
        separate writes: under load the condition can land first)."""
        status = status_of(session)
        down = conditions({"status": status}).get("BackendReachable", ("",))[0] == "False"
        return status if down and "phase" in status else None

    running = await helpers.until(
        lambda: unreachable(name), timeout=TIME_OUT, what="BackendReachable False while it runs"
    )
    assert running["phase"] == "Running", running
    condition = {c["type"]: c for c in running["conditions"]}["BackendReachable"]
    assert condition["reason"] == "BackendUnreachable"
    assert condition["message"].startswith(f"backend {LOCATION} unreachable since "), condition
    down = await ended(name)
    refused_for = time.monotonic() - created
    assert (down["phase"], host(down)["reason"]) == ("Failed", "BackendUnavailable"), down
    error = host(down)["error"]
    assert error.startswith(f"backend {LOCATION} unreachable since "), error
    assert f":{server.port}: connect: connection refused" in error, error
    assert "before the session's timeOut" in error
    assert refused_for < TIME_OUT + 10, refused_for
    sessions = get(kubectl, "backupsession", "-n", namespace)["items"]
    assert [s["metadata"]["name"] for s in sessions if s["status"]["phase"] == "Running"] == []

    # 4. Azurite back.
    server.start()
    back = await ended(start())
    assert back["phase"] == "Succeeded", back

    # 5. Azurite vanishes while a large backup uploads.
    (volume / "big.bin").write_bytes(os.urandom(BIG_MIB * 1024 * 1024))
    cut = start()
    created = time.monotonic()

    def uploading() -> bool:
        stats = [s for t in status_of(cut).get("targets", []) for s in t.get("stats", [])]
        return any(s.get("progress", {}).get("bytesDone", 0) > 0 for s in stats)

    await helpers.until(uploading, timeout=40, what="the large backup uploading")
    server.stop()
    stopped = time.monotonic()
    running = await helpers.until(
        lambda: unreachable(cut), timeout=40, what="BackendReachable False while it uploads"
    )
    assert running["phase"] == "Running", running
    noticed = time.monotonic() - stopped
    cut_off = await ended(cut)
    cut_for = time.monotonic() - created
    assert (cut_off["phase"], host(cut_off)["reason"]) == ("Failed", "BackendUnavailable"), cut_off
    assert host(cut_off)["error"].startswith(f"backend {LOCATION} unreachable since "), host(cut_off)
    assert "before the session's timeOut" in host(cut_off)["error"]
    assert cut_for < TIME_OUT + 10, cut_for
    server.start()
    again = await ended(start())
    assert again["phase"] == "Succeeded", again
    snapshots = json.loads(plain_restic(server, "snapshots", "--json"))
    assert [(s["hostname"], s["paths"]) for s in snapshots] == [("host-0", [MOUNT])] * 3, snapshots
    assert f"{MOUNT}/big.bin" in plain_restic(server, "ls", "latest", f"{MOUNT}/big.bin")

    clean(get(kubectl, "events", "-n", namespace)["items"])
    sidecar_log = kubectl("logs", "-n", namespace, pod, "-c", "stash").stdout
    assert wrong not in sidecar_log and server.account_key not in sidecar_log and PASSWORD not in sidecar_log
    print(  # the figures the report quotes (pytest -s)
        f"fixed Secret used after {secret_seen:.0f} s; refusing endpoint: session Failed after "
        f"{refused_for:.0f} s; cut off mid-backup: BackendReachable False {noticed:.0f} s after the stop, "
        f"Failed {cut_for:.0f} s after the session's creation (timeOut {TIME_OUT} s)"
    )
