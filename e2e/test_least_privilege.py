"""Least privilege with a shared service account, end to end on the real node.

stashlet is installed with its Helm chart (its admission policies included). The workload runs as the
namespace's ``default`` account; its ``stash`` sidecar runs as ``stashlet-agent-<bc>``, whose token and the
storage Secret are mounted into that container alone. The backend is a restic REST server pod with basic
auth (an htpasswd file from a Secret), so a backend credential can be rotated: the Secret's
``REST_SERVER_USERNAME``/``REST_SERVER_PASSWORD`` change while the old user is removed from the server,
and the next session, in the same pod, succeeds with the new one.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from e2e.manifests import backup_configuration, backup_session, busybox_deployment

from stashlet.localcluster import nodeobjects

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "least-privilege-restic-password"
USERS = {"user-one": "first-rest-password", "user-two": "second-rest-password"}
CONFIGURATION = "app-backup"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def htpasswd(user: str) -> str:
    """An htpasswd line rest-server accepts ({SHA}: base64 of the SHA-1 of the password)."""
    digest = base64.b64encode(hashlib.sha1(USERS[user].encode()).digest()).decode()  # noqa: S324 - htpasswd's {SHA}
    return f"{user}:{{SHA}}{digest}\n"


def auth_secret(namespace: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "rest-auth", "namespace": namespace},
        "data": {".htpasswd": b64(htpasswd(user))},
    }


def storage_secret(namespace: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "rest-secret", "namespace": namespace},
        "data": {
            "RESTIC_PASSWORD": b64(PASSWORD),
            "REST_SERVER_USERNAME": b64(user),
            "REST_SERVER_PASSWORD": b64(USERS[user]),
        },
    }


def authenticated_rest_server(namespace: str) -> list[dict[str, Any]]:
    """The pinned rest-server in ``namespace`` with basic auth from Secret ``rest-auth`` (reloaded by the
    server when the file changes) and its access log on stdout."""
    objects = [copy.deepcopy(o) for o in nodeobjects.rest_server(namespace) if o["kind"] != "Namespace"]
    for obj in objects:
        obj["metadata"]["name"] = "rest-auth-server"
    deployment, service = objects
    labels = {"app": "rest-auth-server"}
    deployment["spec"]["selector"]["matchLabels"] = labels
    deployment["spec"]["template"]["metadata"]["labels"] = labels
    service["spec"]["selector"] = labels
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = str(nodeobjects.REST_SERVER_PORT)
    container["args"] = [
        "--path",
        "/data",
        "--listen",
        f":{port}",
        "--htpasswd-file",
        "/auth/.htpasswd",
        "--log",
        "-",
    ]
    container["volumeMounts"].append({"name": "auth", "mountPath": "/auth", "readOnly": True})
    pod["volumes"].append({"name": "auth", "secret": {"secretName": "rest-auth"}})
    return objects


def workload(namespace: str) -> dict[str, Any]:
    """A Deployment that names no service account (it runs as ``default``) and writes one file."""
    return busybox_deployment(
        namespace,
        ["/bin/sh", "-c", "echo kept > /source/data/file.txt && sleep 3000"],
        mount_path="/source/data",
        volume="source-data",
    )


def backup_objects(namespace: str) -> list[dict[str, Any]]:
    url = f"http://rest-auth-server.{namespace}.svc.cluster.local:{nodeobjects.REST_SERVER_PORT}/repo"
    return [
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "rest-repo", "namespace": namespace},
            "spec": {"backend": {"rest": {"url": url}, "storageSecretName": "rest-secret"}},
        },
        backup_configuration(
            namespace, CONFIGURATION, repository="rest-repo", mount_path="/source/data", volume="source-data"
        ),
    ]


def accepted(host_url: str, user: str) -> int:
    """The REST server's answer to ``user`` reading the repository's config (401: not a user)."""
    request = urllib.request.Request(f"{host_url}/repo/config", method="HEAD")
    request.add_header("Authorization", f"Basic {b64(f'{user}:{USERS[user]}')}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_a_backup_runs_as_the_agents_own_account_and_follows_a_rotated_credential(
    kubectl: Any, namespace: str, operator_for: Any, rest_backend: Any, helpers: Any
) -> None:
    """The workload runs as ``default`` and is warned about (DedicatedServiceAccount=False) while Ready.
    Its pod's ``stash`` container alone mounts the agent's token and the storage Secret; the session
    Succeeds. Then the backend user is rotated (the server knows only the new user, the Secret names it):
    the agent logs that the mounted Secret changed (key names only), and the next session Succeeds in the
    same pod, its container never restarted. No credential appears in the agent's log. The operator's own
    account may create Secrets only as the sidecars' tokens: any other Secret, or a token of another
    account, is refused by the chart's admission policy."""
    install = operator_for(namespace)
    operator = f"--as=system:serviceaccount:{install.namespace}:{install.release}-operator"
    for forged in (
        {"type": "Opaque", "metadata": {"name": "stashlet-agent-x", "namespace": namespace}},
        {
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": "stashlet-agent-x",
                "namespace": namespace,
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
        },
    ):
        refused = kubectl(
            "create",
            operator,
            "-f",
            "-",
            input_obj={"apiVersion": "v1", "kind": "Secret", **forged},
            check=False,
        )
        assert refused.returncode != 0
        assert "the stashlet operator creates only the token Secrets" in refused.stderr, refused.stderr
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[auth_secret(namespace, "user-one"), *authenticated_rest_server(namespace)],
    )
    kubectl("rollout", "status", "-n", namespace, "deployment/rest-auth-server", "--timeout=120s")
    kubectl("apply", "-f", "-", input_obj=[storage_secret(namespace, "user-one"), workload(namespace)])
    kubectl("apply", "-f", "-", input_obj=backup_objects(namespace))

    def ready() -> dict[str, Any] | None:
        bc = helpers.get(kubectl, "backupconfiguration", CONFIGURATION, "-n", namespace)
        return bc if bc.get("status", {}).get("phase") == "Ready" else None

    bc = await helpers.until(ready, timeout=120, what="the configuration Ready")
    warned = {c["type"]: c for c in bc["status"]["conditions"]}["DedicatedServiceAccount"]
    assert (warned["status"], warned["reason"]) == ("False", "DefaultServiceAccount")
    [pod_name] = await helpers.rolled_out(kubectl, namespace, "app")
    pod = helpers.get(kubectl, "pod", pod_name, "-n", namespace)
    assert pod["spec"]["serviceAccountName"] == "default"
    mounts = {c["name"]: {m["name"] for m in c.get("volumeMounts") or []} for c in pod["spec"]["containers"]}
    assert {"stash-kube-token", "stash-storage-secret"} <= mounts["stash"]
    assert not {"stash-kube-token", "stash-storage-secret"} & mounts["app"]

    async def succeeded(name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found = helpers.get(kubectl, "backupsession", name, "-n", namespace)
            return found if found.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

        ended: dict[str, Any] = await helpers.until(done, timeout=240, what=f"BackupSession {name} to end")
        assert ended["status"]["phase"] == "Succeeded", json.dumps(ended["status"])
        return ended

    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "before-rotation", CONFIGURATION))
    await succeeded("before-rotation")

    host_url = (
        f"http://{helpers.get(kubectl, 'service', 'rest-auth-server', '-n', namespace)['spec']['clusterIP']}"
    )
    host_url += f":{nodeobjects.REST_SERVER_PORT}"
    assert accepted(host_url, "user-one") == 200
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[auth_secret(namespace, "user-two"), storage_secret(namespace, "user-two")],
    )

    def rotated_on_the_server() -> bool:
        return accepted(host_url, "user-two") == 200 and accepted(host_url, "user-one") == 401

    await helpers.until(
        rotated_on_the_server, timeout=240, interval=3, what="the REST server to know only user-two"
    )

    def agent_log() -> str:
        return str(kubectl("logs", "-n", namespace, pod_name, "-c", "stash").stdout)

    def noticed() -> str | None:
        lines = [line for line in agent_log().splitlines() if "mounted storage Secret changed" in line]
        return lines[-1] if lines else None

    line = json.loads(
        await helpers.until(noticed, timeout=240, interval=3, what="the agent to see the new Secret")
    )
    assert line["secret"] == "rest-secret"
    assert line["keys"] == ["RESTIC_PASSWORD", "REST_SERVER_PASSWORD", "REST_SERVER_USERNAME"]

    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "after-rotation", CONFIGURATION))
    await succeeded("after-rotation")
    after = helpers.get(kubectl, "pod", pod_name, "-n", namespace)
    [stash] = [s for s in after["status"]["containerStatuses"] if s["name"] == "stash"]
    assert stash["restartCount"] == 0
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    log = agent_log()
    for secret in (PASSWORD, *USERS.values()):
        assert secret not in log
