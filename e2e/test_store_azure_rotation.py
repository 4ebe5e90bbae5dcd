"""An Azure storage account's key rotated under a running sidecar (issue 16, part 5), end to end on the
real node.

Azurite (:mod:`tests.stores.azurite`) over HTTPS at the node's bridge address, as in
``e2e/test_store_azure.py``. Azure gives an account two keys so that one can be rotated while the other
is in use; Azurite accepts every key it is started with (``AZURITE_ACCOUNTS name:key1:key2``), so the
rotation is done as an account's owner does it, the server restarted for each step: key A backs up;
key B is added (both valid), the storage Secret is applied with B, and A is revoked (Azurite restarted
with B alone: A is refused from then on, 403 AuthorizationFailure). The kubelet puts the new Secret into
the running pod's volume within its sync period; the agent reads the mounted Secret's files for every
session, so the same sidecar's next session backs up with B, without a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.manifests import backup_session
from e2e.seed import APP, CONFIGURATION, PASSWORD, b64, seed_objects
from tests.stores import azurite

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

CONTAINER = "rotation"
PREFIX = "stash-demo"
SECRET = "azure-secret"
KUBELET_STAMP = "..%Y_%m_%d_%H_%M_%S."
"""How the kubelet names each write of a Secret volume, the folder ``..data`` links to: the UTC second
of the write, then random digits."""


@pytest.fixture(scope="module")
def server(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    """Azurite on ``NODE_IP`` (pods and this host reach it there)."""
    with azurite.running(tmp_path_factory.mktemp("azurite"), address=NODE_IP) as running:
        yield running


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


def refuses(server: azurite.Azurite, key: str) -> bool:
    """Whether Azurite refuses a container listing signed with ``key`` (403)."""
    try:
        dataclasses.replace(server, account_key=key).blob_names(CONTAINER)
    except AssertionError as refused:
        return "answered 403" in str(refused)
    return False


async def test_a_rotated_account_key_reaches_the_running_sidecar_and_the_revoked_one_does_not_matter(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    server: azurite.Azurite,
    node: LocalCluster,
    helpers: Any,
) -> None:
    """Key A backs up; B added, the Secret updated to B, A revoked (Azurite refuses it now). Once the
    kubelet has put the new Secret into the pod's volume, the same sidecar (same pod, same containers, no
    restart) backs up with B: two snapshots in the container. The agent logs the Secret's change (its key
    names, no value); no key in any log or status."""
    get = helpers.get
    key_a = server.account_key
    server.create_container(CONTAINER)
    operator_for(namespace)
    suffix = {"container": {"env": [{"name": "AZURE_ENDPOINT_SUFFIX", "value": server.endpoint_suffix}]}}
    objects = seed_objects(
        namespace,
        {"azure": {"container": CONTAINER, "prefix": f"/{PREFIX}"}},
        secret=dict(server.secret(PASSWORD)),
        secret_name=SECRET,
        repository="azure-repo",
        runtime_settings=suffix,
        host_aliases=[{"ip": server.address, "hostnames": [server.host]}],
    )
    kubectl("apply", "-f", "-", input_obj=objects)
    await helpers.pvc_path(kubectl, namespace, "source-pvc")

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

    key_b = azurite.new_key()
    server.stop()
    server.start((key_a, key_b))  # B added: both valid
    assert not refuses(server, key_a) and not refuses(server, key_b)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    secret["data"] = {k: b64(v) for k, v in server.secret(PASSWORD).items()}
    assert server.account_key == key_b
    assert node.node is not None
    volumes = (
        node.node.paths.kubelet_root / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~secret"
    )
    [volume] = [v for v in volumes.iterdir() if (v / "AZURE_ACCOUNT_KEY").is_file()]
    assert (volume / "AZURE_ACCOUNT_KEY").read_text() == key_a
    applied = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    kubectl("apply", "-f", "-", input_obj=[secret])
    server.stop()
    server.start((key_b,))  # A revoked
    assert refuses(server, key_a) and not refuses(server, key_b)

    await helpers.until(
        lambda: (volume / "AZURE_ACCOUNT_KEY").read_text() == key_b,
        timeout=150,
        interval=1,
        what="the kubelet writing the new Secret into the pod's volume",
    )
    seen = time.monotonic() - started
    written = kubelet_write(volume)
    assert written is not None
    await backed_up("with-b")

    after = get(kubectl, "pod", pod_name, "-n", namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert containers(after) == before
    snapshots = [n for n in server.blob_names(CONTAINER) if n.startswith(f"{PREFIX}/snapshots/")]
    assert len(snapshots) == 2, snapshots

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
    noticed = dt.datetime.fromisoformat(change["time"])
    assert change["keys"] == sorted(server.secret(PASSWORD))
    log = kubectl("logs", "-n", namespace, pod_name, "-c", "stash").stdout
    sessions = json.dumps(get(kubectl, "backupsession", "-n", namespace))
    for secret_value in (key_a, key_b, PASSWORD):
        assert secret_value not in log and secret_value not in sessions
    print(  # the figure the report quotes (pytest -s)
        f"Secret applied {applied:%H:%M:%S.%f}; kubelet wrote it {written:%H:%M:%S} "
        f"({(written - applied).total_seconds():+.1f} s; seen on the host after {seen:.1f} s); "
        f"the agent logged the change at {noticed:%H:%M:%S.%f} ({(noticed - applied).total_seconds():+.1f} s)"
    )
