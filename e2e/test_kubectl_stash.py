"""``kubectl stash`` on the real node, restic in the cluster (the default): each command runs a
short-lived Pod from stashlet's own agent image (``stashlet-agent repo``) with the Repository's storage
Secret mounted, against the restic REST server pod, and reads the results from the pod's log. The
password rotation's every step runs in such pods (``key add`` with the new password from a temporary
Secret); no pod or temporary Secret is left, and no password is printed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import rest_storage
from e2e.seed import APP, CONFIGURATION, REPOSITORY, SECRET, backed_up_and_checked, seed_objects
from e2e.seed import PASSWORD as SEED_PASSWORD
from tests.polling import wait_until

from stashlet.kubectl_stash import cli, keys
from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "e2e-old-password-7731"
NEW = "e2e-new-password-0198"


def plugin(node: LocalCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run([*argv, f"--kubeconfig={node.kubeconfig}"], out, err)
    return code, out.getvalue(), err.getvalue()


def host_restic(url: str, password: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"RESTIC_REPOSITORY": f"rest:{url}", "RESTIC_PASSWORD": password, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [str(tools.ensure("restic")), "--no-cache", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert not check or done.returncode == 0, (
        f"restic {' '.join(args)}: exit {done.returncode}: {done.stderr}"
    )
    return done


def init_when_reachable(url: str) -> None:
    """``restic init`` once the REST server's Service answers this host (kube-proxy's rules for a new
    Service can lag its pod's readiness by a moment); the last failure is shown if it never does."""
    last: list[str] = []

    def initialised() -> bool:
        done = host_restic(url, PASSWORD, "init", check=False)
        last[:] = [f"exit {done.returncode}: {done.stderr}"]
        return done.returncode == 0

    wait_until(initialised, what=f"restic init at {url}", timeout=60, log=lambda: "".join(last))


def test_kubectl_stash_runs_restic_in_pods_and_rotates_the_password(
    node: LocalCluster, kubectl: Any, namespace: str, rest_backend: Any, tmp_path: Path
) -> None:
    storage = rest_storage(
        namespace, f"{rest_backend.pod_url}/{namespace}-plugin", PASSWORD, name="repo", secret="repo-secret"
    )
    kubectl("apply", "-f", "-", input_obj=storage)
    host_url = f"{rest_backend.host_url}/{namespace}-plugin"
    init_when_reachable(host_url)
    data = tmp_path / "data"
    data.mkdir()
    (data / "file.bin").write_bytes(os.urandom(256 * 1024))
    host_restic(host_url, PASSWORD, "backup", "--host=app-0", str(data))
    [snapshot] = json.loads(host_restic(host_url, PASSWORD, "snapshots", "--json", "--no-lock").stdout)

    code, out, err = plugin(node, "snapshots", "repo", "-n", namespace)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["ID", "HOST", "PATHS", "TIME", "AGE", "SIZE"]
    assert row.split()[:3] == [snapshot["short_id"], "app-0", str(data)]
    assert row.split()[-2:] == ["256.000", "KiB"]

    code, out, err = plugin(node, "check", "repo", "-n", namespace, "--read-data")
    assert (code, out) == (0, "repositories.stash.appscode.com/repo: no errors were found\n"), err

    new_file = tmp_path / "new-password"
    new_file.write_text(NEW)
    code, out, err = plugin(
        node,
        "key",
        "update",
        "repo",
        "-n",
        namespace,
        f"--new-password-file={new_file}",
        "--propagation-wait=0",
    )
    assert code == 0, err
    assert [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("step ")] == list(
        keys.STEPS
    )
    secret = json.loads(kubectl("get", "secret", "repo-secret", "-n", namespace, "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["RESTIC_PASSWORD"]).decode() == NEW
    assert keys.ROTATED_OUT not in (secret["metadata"].get("annotations") or {})
    assert host_restic(host_url, NEW, "cat", "config", "--no-lock", check=False).returncode == 0
    assert host_restic(host_url, PASSWORD, "cat", "config", "--no-lock", check=False).returncode != 0
    assert PASSWORD not in out + err and NEW not in out + err

    code, out, err = plugin(node, "key", "list", "repo", "-n", namespace)
    assert code == 0, err
    assert len(out.splitlines()) == 2 and out.splitlines()[1].startswith("*")

    # Nothing is left behind: the pods and the new password's temporary Secret are deleted.
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("stash-repo-")] == []
    secrets = json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"]
    assert [s["metadata"]["name"] for s in secrets if s["metadata"]["name"].endswith("-new-password")] == []


def test_a_missing_image_is_named(node: LocalCluster, kubectl: Any, namespace: str) -> None:
    kubectl(
        "create", "secret", "generic", "repo-secret", "-n", namespace, "--from-literal=RESTIC_PASSWORD=x-y-z"
    )
    repository = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": namespace},
        "spec": {"backend": {"rest": {"url": "http://127.0.0.1:1/none"}, "storageSecretName": "repo-secret"}},
    }
    kubectl("apply", "-f", "-", input_obj=repository)
    code, _, err = plugin(node, "snapshots", "repo", "-n", namespace, "--image=stashlet/absent:0.0.0")
    assert code == 1
    assert "cannot pull image 'stashlet/absent:0.0.0' (--image)" in err


async def test_key_update_proves_a_session_of_the_running_sidecar_with_the_new_password(
    node: LocalCluster,
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_backend: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    """Seed 003 on the REST server; ``key update`` with the default propagation wait: the kubelet puts the
    new Secret into the running pod's volume, the proving BackupSession runs in the same sidecar after that
    and Succeeds, and only then is the old key removed. A host restic opens the repository with the new
    password only, and the new session's snapshot is there."""
    operator_for(namespace)
    url = f"{rest_backend.pod_url}/{namespace}-rotation"
    kubectl("apply", "-f", "-", input_obj=seed_objects(namespace, {"rest": {"url": url}}))
    get = helpers.get
    await helpers.until(
        lambda: (
            (get(kubectl, "backupconfiguration", CONFIGURATION, "-n", namespace).get("status") or {}).get(
                "phase"
            )
            == "Ready"
        ),
        timeout=60,
        what="Ready",
    )
    [pod_name] = await helpers.rolled_out(kubectl, namespace, APP)
    await backed_up_and_checked(kubectl, helpers, namespace, "before-rotation")
    pod = get(kubectl, "pod", pod_name, "-n", namespace)
    new_file = tmp_path / "new-password"
    new_file.write_text(NEW)

    code, out, err = await asyncio.to_thread(  # the plugin runs its own event loop
        plugin, node, "key", "update", REPOSITORY, "-n", namespace, f"--new-password-file={new_file}"
    )
    assert code == 0, err
    assert [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("step ")] == list(
        keys.STEPS
    )
    sessions = get(kubectl, "backupsessions", "-n", namespace)["items"]
    [proving] = [s for s in sessions if s["metadata"]["name"] != "before-rotation"]
    assert proving["status"]["phase"] == "Succeeded", json.dumps(proving["status"])
    assert f"waiting for BackupSession {namespace}/{proving['metadata']['name']}" in out

    # the session ran in the same pod, after the kubelet had written the new password into its volume
    after = get(kubectl, "pod", pod_name, "-n", namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert node.node is not None
    volumes = (
        node.node.paths.kubelet_root / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~secret"
    )
    [volume] = [v for v in volumes.iterdir() if (v / "RESTIC_PASSWORD").is_file()]
    assert (volume / "RESTIC_PASSWORD").read_text() == NEW
    written = dt.datetime.strptime((volume / "..data").readlink().name[:22], "..%Y_%m_%d_%H_%M_%S.").replace(
        tzinfo=dt.UTC
    )
    created = dt.datetime.fromisoformat(proving["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert written <= created, (written, created)

    host_url = f"{rest_backend.host_url}/{namespace}-rotation"
    assert host_restic(host_url, SEED_PASSWORD, "cat", "config", "--no-lock", check=False).returncode != 0
    listed = json.loads(host_restic(host_url, NEW, "snapshots", "--json", "--no-lock").stdout)
    assert len(listed) == 2
    assert SEED_PASSWORD not in out + err and NEW not in out + err
    secret = get(kubectl, "secret", SECRET, "-n", namespace)
    assert base64.b64decode(secret["data"]["RESTIC_PASSWORD"]).decode() == NEW
