"""A restore whose backend refuses connections, on the real node: ``stash-init`` fails loudly naming the
backend, the application never starts on an empty volume, and the restore goes through once the backend
is back.

The seed's ``gcs-repo`` and ``gcs-secret`` on fake-gcs-server (the pinned build, on this host at the
node's bridge address, :mod:`tests.stores.fake_gcs`; the key's ``token_uri`` is the FAKE token endpoint
of that module, Google's cannot be reached here). The sidecar backs the volume up; the server is stopped
(its port refuses: restic's GCS client retries silently, the agent's probe of the endpoint sees it), the
volume wiped and seed 004's RestoreSession applied with the agent's bound on an unreachable backend
shortened to 20 s (``STASHLET_BACKEND_GIVE_UP_AFTER`` through ``runtimeSettings.container.env``, as
``STORAGE_EMULATOR_HOST``). An init-container's restart is the restore's retry (the kubelet restarts a
failed ``stash-init`` with its back-off), so the same RestoreSession finishes once the server is back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e.seed import (
    APP,
    PASSWORD,
    RESTORE,
    backed_up_and_checked,
    conditions,
    manifest,
    restore_session,
    seed_objects,
    wipe,
    write_data,
)
from tests.stores.fake_gcs import FakeTokenEndpoint, GcsServer, ServiceAccount, fake_gcs_server

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import NODE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PROJECT = "stashlet-demo"
BUCKET = "appscode-qa"
LOCATION = f"gs:{BUCKET}:/sample/data"
GIVE_UP = 20


@dataclass(frozen=True)
class Gcs:
    """fake-gcs-server and the fake token endpoint on the node's bridge, and the account it trusts."""

    server: GcsServer
    tokens: FakeTokenEndpoint
    account: ServiceAccount


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


def agent_env(gcs: Gcs, **extra: str) -> dict[str, Any]:
    """``runtimeSettings`` pointing the agent's restic at the server, with ``extra`` agent settings."""
    env = {"STORAGE_EMULATOR_HOST": gcs.server.url, **extra}
    return {"container": {"env": [{"name": name, "value": value} for name, value in env.items()]}}


def init_container(pod: dict[str, Any]) -> dict[str, Any]:
    """``stash-init``'s status in ``pod`` (empty while the kubelet has not reported it)."""
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    return next((dict(s) for s in statuses if s["name"] == "stash-init"), {})


def exit_codes(status: dict[str, Any]) -> list[int]:
    """The exit codes of a container's finished runs the kubelet still shows (the current and the last)."""
    states = (status.get("state") or {}, status.get("lastState") or {})
    return [s["terminated"]["exitCode"] for s in states if "terminated" in s]


async def test_a_restore_against_a_refusing_backend_fails_naming_it_and_restores_once_it_is_back(
    kubectl: Any, namespace: str, operator_for: Any, gcs: Gcs, helpers: Any
) -> None:
    """The server stopped: the RestoreSession turns Failed with host-0's reason BackendUnavailable naming
    ``gs:appscode-qa:/sample/data`` and its refused endpoint (BackendReachable False, a Warning event);
    ``stash-init`` exited non-zero, the application container never started and the volume is as empty
    as it was wiped (nothing claimed). The server back: the kubelet's restart of ``stash-init`` restores
    every file byte for byte, the same RestoreSession Succeeds and the application runs. No key and no
    password in any status or event."""
    get = helpers.get
    operator_for(namespace)
    objects = seed_objects(
        namespace,
        {"gcs": {"bucket": BUCKET, "prefix": "/sample/data"}},
        secret={
            "GOOGLE_PROJECT_ID": PROJECT,
            "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": gcs.account.key_json(PROJECT, gcs.tokens.token_uri),
        },
        runtime_settings=agent_env(gcs),
    )
    kubectl("apply", "-f", "-", input_obj=objects)
    volume = await helpers.pvc_path(kubectl, namespace, "source-pvc")
    write_data(volume)
    before = manifest(volume)

    def phase(kind: str, name: str) -> str | None:
        return (get(kubectl, kind, name, "-n", namespace).get("status") or {}).get("phase")

    await helpers.until(
        lambda: phase("backupconfiguration", "pause-backup") == "Ready", timeout=60, what="Ready"
    )
    await helpers.rolled_out(kubectl, namespace, APP)
    await backed_up_and_checked(kubectl, helpers, namespace, "before-the-outage")

    gcs.server.stop()
    wipe(volume)
    stopped = time.monotonic()
    restore = restore_session(
        namespace, runtime_settings=agent_env(gcs, STASHLET_BACKEND_GIVE_UP_AFTER=f"{GIVE_UP}s")
    )
    kubectl("apply", "-f", "-", input_obj=restore)

    def failed() -> dict[str, Any] | None:
        status = get(kubectl, "restoresession", RESTORE, "-n", namespace).get("status") or {}
        return dict(status) if status.get("phase") == "Failed" else None

    status = await helpers.until(failed, timeout=180, what="the RestoreSession Failed")
    failed_after = time.monotonic() - stopped
    [entry] = status["stats"]
    assert (entry["hostname"], entry["phase"]) == ("host-0", "Failed"), entry
    error = entry["error"]
    assert error.startswith(f"BackendUnavailable: backend {LOCATION} unreachable since "), error
    assert f"its endpoint: dial tcp {NODE_IP}:" in error and "connection refused" in error, error
    assert f"(the bound is {GIVE_UP}s)" in error, error
    assert conditions({"status": status})["BackendReachable"] == ("False", "BackendUnreachable"), status
    events = get(kubectl, "events", "-n", namespace, f"--field-selector=involvedObject.name={RESTORE}")[
        "items"
    ]
    warnings = [e for e in events if e["reason"] == "BackendUnreachable"]
    assert warnings and warnings[0]["type"] == "Warning", events

    def restoring_pod() -> dict[str, Any] | None:
        pods = get(kubectl, "pods", "-n", namespace, "-l", f"app={APP}")["items"]
        found = [p for p in pods if not p["metadata"].get("deletionTimestamp") and init_container(p)]
        return dict(found[0]) if len(found) == 1 and exit_codes(init_container(found[0])) else None

    pod = await helpers.until(restoring_pod, timeout=60, what="stash-init's failed run")
    assert 0 not in exit_codes(init_container(pod)), init_container(pod)
    apps = {c["name"]: c for c in pod["status"].get("containerStatuses") or []}
    assert "running" not in (apps["busybox"].get("state") or {}), apps["busybox"]
    assert not apps["busybox"].get("ready"), apps["busybox"]
    assert manifest(volume) == {}
    secret = json.loads(gcs.account.key_json(PROJECT, gcs.tokens.token_uri))["private_key"].splitlines()[1]
    for shown in (json.dumps(status), json.dumps(events)):
        assert PASSWORD not in shown and secret not in shown

    gcs.server.start()
    back = time.monotonic()
    await helpers.until(lambda: phase("restoresession", RESTORE) == "Succeeded", timeout=180, what="restored")
    restored_after = time.monotonic() - back
    [pod_name] = await helpers.rolled_out(kubectl, namespace, APP, container="stash-init")
    assert pod_name == pod["metadata"]["name"]  # the same pod: its init-container's restart restored
    assert manifest(volume) == before
    rs = get(kubectl, "restoresession", RESTORE, "-n", namespace)
    assert [(s["hostname"], s["phase"]) for s in rs["status"]["stats"]] == [("host-0", "Succeeded")]
    init_log = kubectl("logs", "-n", namespace, pod_name, "-c", "stash-init").stdout
    assert PASSWORD not in init_log and secret not in init_log
    print(  # the figures the report quotes (pytest -s)
        f"RestoreSession Failed {failed_after:.0f} s after the server stopped (bound {GIVE_UP} s); "
        f"Succeeded {restored_after:.0f} s after it was back"
    )
