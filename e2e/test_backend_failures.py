"""A backend that refuses the credentials, then one that dies mid-backup, on the real node.

The test runs its own REST server pod with basic auth (htpasswd from a Secret) in its namespace. A
configuration whose storage Secret holds a wrong REST password fails with WrongCredentials, named with
the backend and without restic's "Is there a repository at the following location?". Then the server is
scaled to zero while another configuration's backup uploads: while restic retries, the session says the
backend is unreachable and since when (condition BackendReachable False, a Warning event), and it ends
Failed with reason BackendUnavailable before its timeOut, naming the backend.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from typing import Any

import pytest
from e2e.manifests import backup_configuration, backup_session, busybox_deployment

from stashlet.localcluster import images, nodeobjects

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "backend-failures-1"
REST_USER = "stash"
REST_PASSWORD = "rest-basic-auth-1"
WRONG_REST_PASSWORD = "not-the-rest-password"
PORT = nodeobjects.REST_SERVER_PORT


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def rest_server_with_auth(namespace: str) -> list[dict[str, Any]]:
    """The pinned rest-server with one htpasswd user, behind Service ``auth-rest`` in ``namespace``."""
    digest = base64.b64encode(hashlib.sha1(REST_PASSWORD.encode()).digest()).decode()  # noqa: S324 - htpasswd {SHA}
    labels = {"app": "auth-rest"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "auth-rest-htpasswd", "namespace": namespace},
            "data": {".htpasswd": b64(f"{REST_USER}:{{SHA}}{digest}\n")},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "auth-rest", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "rest-server",
                                "image": images.REST_SERVER_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "--path=/data",
                                    f"--listen=:{PORT}",
                                    "--htpasswd-file=/auth/.htpasswd",
                                ],
                                "ports": [{"containerPort": PORT}],
                                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/data"},
                                    {"name": "auth", "mountPath": "/auth", "readOnly": True},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "auth", "secret": {"secretName": "auth-rest-htpasswd"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "auth-rest", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": PORT}]},
        },
    ]


def backup_of(
    namespace: str, name: str, rest_password: str, *, mb: int, spec: dict[str, Any]
) -> list[dict[str, Any]]:
    """Secret, Repository on the auth'd server, Deployment ``name`` writing ``mb`` MiB, its configuration."""
    write = f"head -c {mb * 1024 * 1024} /dev/urandom > /data/big.bin && sleep 3600"
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-secret", "namespace": namespace},
            "data": {
                "RESTIC_PASSWORD": b64(PASSWORD),
                "REST_SERVER_USERNAME": b64(REST_USER),
                "REST_SERVER_PASSWORD": b64(rest_password),
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": f"{name}-repo", "namespace": namespace},
            "spec": {
                "backend": {
                    "rest": {"url": location(namespace, name)},
                    "storageSecretName": f"{name}-secret",
                }
            },
        },
        busybox_deployment(namespace, ["/bin/sh", "-c", write], name=name),
        backup_configuration(
            namespace, name, repository=f"{name}-repo", workload=name, args=["--limit-upload=1024"], **spec
        ),
    ]


def location(namespace: str, name: str) -> str:
    return f"http://auth-rest.{namespace}.svc.cluster.local:{PORT}/{name}"


async def test_a_refusing_then_a_dead_backend_are_named(
    kubectl: Any, namespace: str, operator_for: Any, helpers: Any
) -> None:
    """WrongCredentials for a wrong REST password; for a server stopped mid-backup, BackendReachable
    False with the time of the first failure while the session runs, then Failed with BackendUnavailable
    before the timeOut, naming the backend; no secret in any status or event."""
    operator_for(namespace)
    get = helpers.get
    kubectl("apply", "-f", "-", input_obj=rest_server_with_auth(namespace))
    kubectl("rollout", "status", "-n", namespace, "deployment/auth-rest", "--timeout=120s")
    kubectl("apply", "-f", "-", input_obj=backup_of(namespace, "refused", WRONG_REST_PASSWORD, mb=1, spec={}))
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=backup_of(namespace, "cut-off", REST_PASSWORD, mb=32, spec={"timeOut": "90s"}),
    )

    def ready(name: str) -> bool:
        bc = get(kubectl, "backupconfiguration", name, "-n", namespace)
        return bool(bc.get("status", {}).get("phase") == "Ready")

    def ended(name: str) -> dict[str, Any] | None:
        obj = get(kubectl, "backupsession", name, "-n", namespace)
        return dict(obj) if obj.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    def events_of(name: str) -> list[dict[str, Any]]:
        items = get(kubectl, "events", "-n", namespace, f"--field-selector=involvedObject.name={name}")
        return list(items["items"])

    for name in ("refused", "cut-off"):
        await helpers.until(lambda name=name: ready(name), timeout=90, what=f"{name} Ready")
        await helpers.rolled_out(kubectl, namespace, name)

    # A wrong REST password: WrongCredentials, a clean message.
    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "refused-1", "refused"))
    refused = await helpers.until(lambda: ended("refused-1"), timeout=120, what="refused-1 ended")
    host = refused["status"]["targets"][0]["stats"][0]
    assert (refused["status"]["phase"], host["reason"]) == ("Failed", "WrongCredentials")
    backend = f"rest:{location(namespace, 'refused')}"
    assert host["error"].startswith(f"backend {backend} refused the storage Secret's credentials: "), host
    assert "401" in host["error"]
    assert "Is there a repository" not in host["error"]
    assert WRONG_REST_PASSWORD not in json.dumps(refused) and f"{REST_USER}:" not in host["error"]

    # The server dies while a backup uploads.
    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "cut-off-1", "cut-off"))
    created = time.time()

    def uploading() -> bool:
        obj = get(kubectl, "backupsession", "cut-off-1", "-n", namespace)
        stats = [s for t in obj.get("status", {}).get("targets", []) for s in t.get("stats", [])]
        return any(s.get("progress", {}).get("bytesDone", 0) > 0 for s in stats)

    await helpers.until(uploading, timeout=60, what="the backup uploading")
    kubectl("scale", "deployment", "auth-rest", "-n", namespace, "--replicas=0")
    stopped = time.time()

    def unreachable() -> dict[str, Any] | None:
        obj = get(kubectl, "backupsession", "cut-off-1", "-n", namespace)
        condition = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}.get(
            "BackendReachable"
        )
        return dict(obj) if condition and condition["status"] == "False" else None

    running = await helpers.until(unreachable, timeout=60, what="BackendReachable False while it runs")
    assert running["status"]["phase"] == "Running"
    condition = {c["type"]: c for c in running["status"]["conditions"]}["BackendReachable"]
    cut_off = f"rest:{location(namespace, 'cut-off')}"
    assert condition["reason"] == "BackendUnreachable"
    assert condition["message"].startswith(f"backend {cut_off} unreachable since "), condition
    since = condition["lastTransitionTime"]
    assert since in condition["message"]  # the condition's time is the first failed try
    since_epoch = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    assert stopped - 5 <= since_epoch <= stopped + 40
    warnings = await helpers.until(
        lambda: [e for e in events_of("cut-off-1") if e["reason"] == "BackendUnreachable"],
        timeout=30,
        what="the BackendUnreachable event",
    )
    assert warnings[0]["type"] == "Warning"

    failed = await helpers.until(lambda: ended("cut-off-1"), timeout=150, what="cut-off-1 ended")
    ended_at = time.time()
    host = failed["status"]["targets"][0]["stats"][0]
    assert (failed["status"]["phase"], host["reason"]) == ("Failed", "BackendUnavailable"), json.dumps(
        failed["status"]
    )
    assert host["error"].startswith(f"backend {cut_off} unreachable since {since}"), host["error"]
    assert "before the session's timeOut" in host["error"]
    assert ended_at - created < 90 + 15  # before the timeOut, give or take the polling
    everything = json.dumps(failed) + json.dumps(events_of("cut-off-1"))
    assert REST_PASSWORD not in everything and PASSWORD not in everything
