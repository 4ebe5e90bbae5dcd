"""``kubectl get snapshots`` on the real node: the chart's Snapshot API (``snapshotsApi.enabled``) runs
from stashlet's own agent image in its Deployment, behind the APIService with the chart's CA; the API
server reaches it through its Service's endpoints, and it reads a Repository on the REST server pod
with restic, its Secret through its own account."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.conftest import CHART
from e2e.rest_repository import rest_storage
from e2e.test_kubectl_stash import PASSWORD, host_restic, init_when_reachable
from tests.polling import wait_until

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

APISERVICE = "v1alpha1.repositories.stash.appscode.com"


def _available(kubectl: Any) -> bool:
    shown = kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
    if shown.returncode != 0:
        return False
    conditions = json.loads(shown.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def _server_rss_kib() -> list[int]:
    """The resident memory of each snapshots API server process on this host (the node's pods run here)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
            if b"stashlet.agent.snapshots_api" in argv and b"--secure-port=8443" in argv:
                rss = re.search(r"VmRSS:\s+(\d+) kB", (proc / "status").read_text())
                found += [int(rss.group(1))] if rss else []
        except OSError:
            continue
    return found


def test_kubectl_get_snapshots_through_the_charts_server(
    node: LocalCluster, kubectl: Any, namespace: str, rest_backend: Any, tmp_path: Path
) -> None:
    helm = str(tools.ensure("helm"))
    release = f"stashlet-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    installed = subprocess.run(
        [
            helm,
            f"--kubeconfig={node.kubeconfig}",
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--skip-crds",
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            "snapshotsApi.enabled=true",
            "--set",
            "snapshotsApi.logLevel=debug",
            "--wait",
            "--timeout=180s",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    try:
        server = f"{release}-snapshots-api"
        wait_until(
            lambda: _available(kubectl),
            what=f"APIService {APISERVICE} Available",
            timeout=90,
            log=lambda: (
                kubectl("get", "apiservice", APISERVICE, "-o", "yaml", check=False).stdout
                + kubectl("logs", "-n", namespace, f"deployment/{server}", check=False).stdout
            ),
        )
        print(f"installed and Available in {time.monotonic() - began:.1f}s")
        storage = rest_storage(
            namespace,
            f"{rest_backend.pod_url}/{namespace}-snapshots",
            PASSWORD,
            name="repo",
            secret="repo-secret",
        )
        kubectl("apply", "-f", "-", input_obj=storage)
        host_url = f"{rest_backend.host_url}/{namespace}-snapshots"
        init_when_reachable(host_url)
        data = tmp_path / "data"
        data.mkdir()
        (data / "file.txt").write_text("hello\n")
        host_restic(host_url, PASSWORD, "backup", "--host=app-0", str(data))
        [snapshot] = json.loads(host_restic(host_url, PASSWORD, "snapshots", "--json", "--no-lock").stdout)

        listed = kubectl("get", "snapshots", "-n", namespace, "-l", "repository=repo")
        header, row = listed.stdout.strip().splitlines()
        assert header.split() == ["NAME", "ID", "REPOSITORY", "HOSTNAME", "CREATED", "AT"]
        assert row.split()[:4] == [f"repo-{snapshot['short_id']}", snapshot["short_id"], "repo", "app-0"]
        got = yaml.safe_load(
            kubectl("get", "snapshot", f"repo-{snapshot['short_id']}", "-n", namespace, "-o", "yaml").stdout
        )
        assert got["metadata"]["uid"] == snapshot["id"]
        assert got["status"]["paths"] == [str(data)]
        assert got["status"]["tree"] == snapshot["tree"]
        logs = kubectl("logs", "-n", namespace, f"deployment/{server}").stdout
        assert "snapshots read" in logs
        assert PASSWORD not in logs
        [rss] = _server_rss_kib()
        print(f"snapshots API server after the requests: {rss / 1024:.1f} MiB resident")
        assert rss < 128 * 1024
    finally:
        subprocess.run(
            [helm, f"--kubeconfig={node.kubeconfig}", "uninstall", release, "-n", namespace, "--wait"],
            capture_output=True,
            timeout=120,
            check=False,
        )
