"""Seeds 003/004 on Azure Blob, end to end: a Repository and Secret as Stash's Azure page writes them
(``azure.container``, ``azure.prefix``; ``AZURE_ACCOUNT_NAME``, ``AZURE_ACCOUNT_KEY``), against Azurite.

Azurite (the pinned npm package, :mod:`tests.stores.azurite`) runs on this host over HTTPS, listening
on the node's bridge address, with its own account and key and a certificate from a private CA that
the Secret carries (``CA_CERT_DATA``). restic always reaches ``https://<account>.blob.<suffix>``: the
BackupConfiguration and the RestoreSession set the suffix (``azurite.test:<port>``) through
``runtimeSettings.container.env`` ``AZURE_ENDPOINT_SUFFIX``, and the Deployment's pods resolve
``<account>.blob.azurite.test`` through ``hostAliases``. The Secret also names the access tier
(``AZURE_ACCESS_TIER``), without which Azurite refuses every write restic makes. The container is made
beforehand, as Stash's page has it ("a Repository pointing to the desired blob container"): restic
0.18.1 retries a missing container's ContainerNotFound as an outage rather than calling it no
repository (tests/agent/restic/test_store_azure.py), so the agent, which runs ``restic init`` only for
no repository, would not create it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.seed import (
    APP,
    PASSWORD,
    RESTORE,
    backed_up_and_checked,
    manifest,
    restore_session,
    seed_objects,
    wipe,
    write_data,
)
from tests.stores import azurite

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

CONTAINER = "stash-backup"
PREFIX = "demo/deployment/stash-demo"
LOCATION = f"azure:{CONTAINER}:/{PREFIX}"


@pytest.fixture(scope="module")
def server(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    """Azurite on ``NODE_IP`` (pods and this host reach it there)."""
    with azurite.running(tmp_path_factory.mktemp("azurite"), address=NODE_IP) as running:
        yield running


def suffix_env(server: azurite.Azurite) -> dict[str, Any]:
    """``runtimeSettings`` giving the agent's restic Azurite's endpoint suffix."""
    return {"container": {"env": [{"name": "AZURE_ENDPOINT_SUFFIX", "value": server.endpoint_suffix}]}}


def objects(namespace: str, server: azurite.Azurite) -> list[dict[str, Any]]:
    """Seed 003's objects (one replica, its pods resolving Azurite's name) with ``azure-secret`` (the
    account, its key, the CA, the access tier) and ``azure-repo``, the suffix through ``runtimeSettings``."""
    return seed_objects(
        namespace,
        {"azure": {"container": CONTAINER, "prefix": f"/{PREFIX}"}},
        secret=dict(server.secret(PASSWORD)),
        secret_name="azure-secret",
        repository="azure-repo",
        runtime_settings=suffix_env(server),
        host_aliases=[{"ip": server.address, "hostnames": [server.host]}],
    )


def plain_restic(server: azurite.Azurite, *args: str) -> str:
    """restic on this host with only the Secret's values, the suffix and the CA (its name resolved as the
    pods' hostAliases do); what it prints (the test fails with restic's words when it exits non-zero)."""
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


def env_of(pod: dict[str, Any], container: str) -> dict[str, str]:
    """A container's literal environment in ``pod``'s spec (containers and init containers)."""
    spec = pod["spec"]
    [found] = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container]
    return {e["name"]: e["value"] for e in found.get("env", []) if "value" in e}


async def test_seed_003_004_on_azure(
    kubectl: Any, namespace: str, operator_for: Any, server: azurite.Azurite, helpers: Any
) -> None:
    """The sidecar backs the PVC up into ``azure:stash-backup:/demo/deployment/stash-demo`` over HTTPS
    (the Secret's CA and key, the suffix from runtimeSettings), applies the retention policy, checks the
    repository (RepositoryIntegrityVerified, the Repository's integrity and count); the container holds
    restic's objects under the prefix; plain restic reads the snapshot. The volume is wiped and
    ``stash-init`` puts every file back byte for byte with its mode; the RestoreSession Succeeds. No log
    holds the account key or the password."""
    get = helpers.get
    operator_for(namespace)
    server.create_container(CONTAINER)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, server))
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)
    before = manifest(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", "pause-backup") == "Ready", timeout=60, what="Ready"
    )
    [pod] = await helpers.rolled_out(kubectl, namespace, APP)
    suffix = {"AZURE_ENDPOINT_SUFFIX": server.endpoint_suffix}
    assert env_of(get(kubectl, "pod", pod, "-n", namespace), "stash").items() >= suffix.items()
    _, repo = await backed_up_and_checked(kubectl, helpers, namespace, "to-azure", repository="azure-repo")
    assert repo["snapshotCount"] == 1

    names = server.blob_names(CONTAINER)
    assert {n.split("/")[3] for n in names} >= {"config", "keys", "data", "index", "snapshots"}, names
    assert all(n.startswith(f"{PREFIX}/") for n in names), names
    [snapshot] = json.loads(plain_restic(server, "snapshots", "--json"))
    assert (snapshot["hostname"], snapshot["paths"]) == ("host-0", ["/source/data"])
    assert plain_restic(server, "dump", "latest", "/source/data/data.txt") == "sample_data\n"

    wipe(volume)
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=restore_session(namespace, repository="azure-repo", runtime_settings=suffix_env(server)),
    )
    [new_pod] = await helpers.rolled_out(kubectl, namespace, APP, container="stash-init")
    assert env_of(get(kubectl, "pod", new_pod, "-n", namespace), "stash-init").items() >= suffix.items()
    init_log = kubectl("logs", "-n", namespace, new_pod, "-c", "stash-init").stdout
    assert manifest(volume) == before, init_log[-3000:]
    await helpers.until(lambda: phase("restoresession", RESTORE) == "Succeeded", timeout=60, what="restored")
    rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
    assert [(s["hostname"], s["phase"]) for s in rs["status"]["stats"]] == [("host-0", "Succeeded")]

    sidecar_log = kubectl("logs", "-n", namespace, pod, "-c", "stash").stdout
    for log in (sidecar_log, init_log):
        assert server.account_key not in log
        assert PASSWORD not in log
