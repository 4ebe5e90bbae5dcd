"""The `stashlet-cluster` command: a real control plane brought up and down, and its clear errors.

The session's own cluster holds this machine's one real node, so the up/down cycles here run the
control plane alone (``--no-node``); the node's own checks (one node per machine, no root) are below.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from stashlet.localcluster import tools
from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.node import BRIDGE
from stashlet.localcluster.processes import port_open

pytestmark = pytest.mark.cluster


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stashlet.localcluster.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


def test_up_and_down_twice_leaks_nothing(tmp_path: Path) -> None:
    """Two up/down cycles in one folder: each serves the API and CRDs, and down leaves no process or port."""
    directory = tmp_path / "cluster"
    for _ in range(2):
        up = cli("--dir", str(directory), "up", "--no-node")
        assert up.returncode == 0, up.stderr
        state = json.loads((directory / "state.json").read_text())
        assert set(state["pids"]) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        crds = cli("--dir", str(directory), "kubectl", "get", "crd", "-o", "name")
        assert crds.returncode == 0, crds.stderr
        assert (
            "customresourcedefinition.apiextensions.k8s.io/backupsessions.stash.appscode.com" in crds.stdout
        )
        env = cli("--dir", str(directory), "env")
        assert f"export KUBECONFIG={directory}/kubeconfig" in env.stdout
        down = cli("--dir", str(directory), "down")
        assert down.returncode == 0, down.stderr
        assert not any(_alive(pid) for pid in state["pids"].values())
        ports = state["ports"]
        assert not any(port_open(port) for port in ports.values())
        assert not directory.exists()


def test_up_reports_a_taken_port(tmp_path: Path) -> None:
    """Asking for a port something else listens on fails at once and names the port and the server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        up = cli("--dir", str(tmp_path / "c"), "up", "--no-node", "--port", str(port))
    assert up.returncode == 1
    assert f"port {port} for kube-apiserver on 127.0.0.1 is already in use" in up.stderr
    assert not (tmp_path / "c" / "state.json").exists()


def test_up_reports_a_missing_binary(tmp_path: Path) -> None:
    """KUBEBUILDER_ASSETS without kube-apiserver: a clear error naming the folder and the binary."""
    assets = tmp_path / "assets"
    assets.mkdir()
    os.symlink(tools.ensure("etcd"), assets / "etcd")
    up = cli(
        "--dir", str(tmp_path / "c"), "up", "--no-node", env={**os.environ, "KUBEBUILDER_ASSETS": str(assets)}
    )
    assert up.returncode == 1
    assert f"KUBEBUILDER_ASSETS={assets} has no executable 'kube-apiserver'" in up.stderr


def test_kubebuilder_assets_are_used_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Binaries in KUBEBUILDER_ASSETS win over the cache; kube-controller-manager falls back to the cache."""
    assets = tmp_path / "assets"
    assets.mkdir()
    for binary in ("etcd", "kube-apiserver", "kubectl"):
        os.symlink(tools.ensure(binary), assets / binary)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert tools.find("kube-apiserver") == assets / "kube-apiserver"
    assert (
        tools.find("kube-controller-manager") == tools.tool_dir(tools.KUBERNETES) / "kube-controller-manager"
    )


def test_down_without_a_cluster_says_so(tmp_path: Path) -> None:
    """`down` on a folder with no cluster changes nothing and says there was none."""
    down = cli("--dir", str(tmp_path / "none"), "down")
    assert down.returncode == 0
    assert "no cluster" in down.stderr


def test_a_second_node_is_refused_in_one_line_and_nothing_is_set_up(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """While the session's node runs, `up` of another cluster with a node fails at once with one line
    naming the running node and what to do, and leaves no folder, process or interface behind."""
    if local_cluster.node is None:
        pytest.fail(f"this check needs the session's real node: {local_cluster.node_unavailable}")
    links_before = _links_but_pods()
    up = cli("--dir", str(tmp_path / "second"), "up")
    assert up.returncode == 1
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1, up.stderr
    assert "a real node already runs on this machine" in lines[0]
    assert str(local_cluster.directory) in lines[0]
    assert "stashlet-cluster down" in lines[0]
    assert not (tmp_path / "second").exists()
    assert _links_but_pods() == links_before


def _links_but_pods() -> list[str]:
    """The host's network interfaces, less the session node's pod interfaces (tests running beside this
    one start and end pods, each with its own veth on the node's bridge)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line for line in links.splitlines() if f" master {BRIDGE} " not in line]


def test_without_root_the_node_says_what_is_missing_and_what_still_runs() -> None:
    """As an unprivileged user, `up` says in one line that a real node needs root and that the control
    plane alone still runs, instead of a stack trace; nothing is created."""
    tmp_path = Path(tempfile.mkdtemp(prefix="stashlet-nonroot-"))
    tmp_path.chmod(0o777)  # the unprivileged user may look into it
    env = {**os.environ, "STASHLET_CACHE": str(tmp_path / "cache")}
    up = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "stashlet.localcluster.cli", "--dir", str(tmp_path / "c"), "up"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert up.returncode == 1, up.stderr
    assert up.stderr.strip().splitlines() == [
        "stashlet-cluster: a real node needs root (containerd, kubelet, iptables); "
        "the control plane alone still runs: `stashlet-cluster up --no-node`"
    ]
    assert not (tmp_path / "c").exists()
    shutil.rmtree(tmp_path)


def test_the_node_never_pulls_an_image_from_outside(local_cluster: LocalCluster) -> None:
    """The node holds only the images built here: pulling any other fails at once against a loopback
    address where nothing listens, so no registry outside this machine is ever asked."""
    if local_cluster.node is None:
        pytest.fail(f"this check needs the session's real node: {local_cluster.node_unavailable}")
    crictl = tools.ensure("crictl")
    endpoint = f"--runtime-endpoint=unix://{local_cluster.node.paths.socket}"
    pulled = subprocess.run(
        [str(crictl), endpoint, "pull", "docker.io/library/nginx:1.27"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pulled.returncode != 0
    assert "127.0.0.1:9" in pulled.stderr, pulled.stderr
