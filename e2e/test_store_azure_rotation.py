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
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.rotation import Sidecar, rewritten
from e2e.seed import PASSWORD, b64, seed_objects
from tests.stores import azurite

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

CONTAINER = "rotation"
PREFIX = "stash-demo"
SECRET = "azure-secret"


@pytest.fixture(scope="module")
def server(node: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    """Azurite on ``NODE_IP`` (pods and this host reach it there)."""
    with azurite.running(tmp_path_factory.mktemp("azurite"), address=NODE_IP) as running:
        yield running


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
    sidecar = await Sidecar.ready(kubectl, helpers, namespace)
    await sidecar.backed_up("with-a")

    key_b = azurite.new_key()
    server.stop()
    server.start((key_a, key_b))  # B added: both valid
    assert not refuses(server, key_a) and not refuses(server, key_b)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    secret["data"] = {k: b64(v) for k, v in server.secret(PASSWORD).items()}
    assert server.account_key == key_b
    volume = sidecar.secret_volume(node, "AZURE_ACCOUNT_KEY")
    assert (volume / "AZURE_ACCOUNT_KEY").read_text() == key_a
    applied = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input_obj=[secret])
    server.stop()
    server.start((key_b,))  # A revoked
    assert refuses(server, key_a) and not refuses(server, key_b)

    write = await rewritten(helpers, volume, "AZURE_ACCOUNT_KEY", key_b, applied)
    await sidecar.backed_up("with-b")

    assert sidecar.unrestarted()
    snapshots = [n for n in server.blob_names(CONTAINER) if n.startswith(f"{PREFIX}/snapshots/")]
    assert len(snapshots) == 2, snapshots
    change = await sidecar.secret_change(SECRET)
    assert change["keys"] == sorted(server.secret(PASSWORD))
    log = sidecar.log()
    sessions = json.dumps(helpers.get(kubectl, "backupsession", "-n", namespace))
    for secret_value in (key_a, key_b, PASSWORD):
        assert secret_value not in log and secret_value not in sessions
    print(write.report(dt.datetime.fromisoformat(change["time"])))  # the figure the report quotes (pytest -s)
