"""The CSI snapshot add-on of the local cluster: a real CSI driver with snapshots on the real node.

``LocalCluster.ensure_csi()`` (:func:`ensure`) installs it once per cluster, on first use; a cluster
that never asks pays nothing. It builds the add-on's images once into the cache
(:mod:`stashlet.localcluster.csiimages`: the pinned external-snapshotter and external-provisioner, and
the node's hostpath driver), loads them into the node's containerd, installs the VolumeSnapshot,
VolumeSnapshotContent and VolumeSnapshotClass CRDs as the pinned external-snapshotter publishes them
(read from the Go module cache, never copied into the repository), then the objects of
:mod:`stashlet.localcluster.csiobjects` with upstream's ClusterRoles (read from the same modules), and
waits until the snapshot controller runs and the kubelet has registered the driver.

Volumes and snapshots live below the node's folder (:attr:`CsiAddon.data_dir`), so the node's teardown
removes them with it; the pods that use them are deleted before the plugin (``cluster.teardown``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from stashlet.localcluster import csiimages, csiobjects, images, tools
from stashlet.localcluster.csiobjects import (
    DRIVER,
    NAMESPACE,
    PLUGIN,
    SNAPSHOT_CLASS,
    SNAPSHOT_CONTROLLER,
    STORAGE_CLASS,
)
from stashlet.localcluster.node import NODE_NAME, NodeUnavailable

if TYPE_CHECKING:
    from stashlet.localcluster.cluster import LocalCluster

SNAPSHOT_CRDS: Final = (
    "snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
    "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "snapshot.storage.k8s.io_volumesnapshots.yaml",
)
"""The CRDs of ``config/crd`` in the snapshot client module; the group-snapshot ones stay out (the
snapshot controller runs without its group-snapshot feature)."""

SNAPSHOT_CLIENT_MODULE: Final = "github.com/kubernetes-csi/external-snapshotter/client/v8"
UNIX_SOCKET_MAX: Final = 107
"""The longest path a unix socket may have (``sun_path`` holds 108 bytes with the final NUL)."""


@dataclass(frozen=True)
class CsiAddon:
    """What a test or a later change needs to know about the installed add-on."""

    driver: str
    """The CSI driver's name (a PersistentVolume's ``spec.csi.driver``)."""
    storage_class: str
    snapshot_class: str
    """The default VolumeSnapshotClass."""
    data_dir: Path
    """Where the driver keeps volumes (``volumes/<id>``) and snapshots (``snapshots/<id>.tar.gz``)."""


def ensure(cluster: LocalCluster, *, timeout: float = 300, log: bool = True) -> CsiAddon:
    """Install the add-on into ``cluster`` unless it already runs there; return what it offers.

    Safe from several processes of one machine (test workers sharing a cluster): a lock in the
    cluster's folder lets one install while the others wait, then find it running.
    """
    if cluster.node is None:
        raise NodeUnavailable(
            f"the CSI add-on needs the real node: {cluster.node_unavailable or 'the cluster has none'}"
        )
    node_paths = cluster.node.paths
    addon = CsiAddon(DRIVER, STORAGE_CLASS, SNAPSHOT_CLASS, node_paths.root / "csi-hostpath")
    with tools.locked(cluster.directory / "csi.lock"):
        if _running(cluster):
            return addon
        kubelet_root = node_paths.kubelet_root
        for socket in (csiobjects.kubelet_socket(kubelet_root), csiobjects.registration_socket(kubelet_root)):
            if len(str(socket)) > UNIX_SOCKET_MAX:
                raise RuntimeError(
                    f"the CSI socket path {socket} is longer than {UNIX_SOCKET_MAX} bytes; "
                    "start the cluster in a folder with a shorter path"
                )
        for binary in ("csi-snapshotter", "csi-provisioner"):
            tools.ensure(binary, log=log)  # before the images' lock, which other builds wait for
        archives = csiimages.build_csi_images(log=log)
        images.load_images(archives, containerd_address=str(node_paths.socket), log=log)
        crds = snapshot_crds()
        files = [arg for crd in crds for arg in ("-f", str(crd))]
        cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)
        objects = csiobjects.objects(
            kubelet_root=kubelet_root, data_dir=addon.data_dir, roles=upstream_roles()
        )
        cluster.kubectl(
            "apply", "-f", "-", input_text=yaml.safe_dump_all([*objects, csiobjects.snapshot_class()])
        )
        _wait(cluster, timeout)
    return addon


def _running(cluster: LocalCluster) -> bool:
    """True when the kubelet lists the driver, the snapshot controller is available and the class exists."""
    checks: tuple[tuple[str, ...], ...] = (
        ("get", "csinode", NODE_NAME, "-o", "jsonpath={.spec.drivers[*].name}"),
        (
            "get",
            "deployment",
            SNAPSHOT_CONTROLLER,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.availableReplicas}",
        ),
        ("get", "daemonset", PLUGIN, "-n", NAMESPACE, "-o", "jsonpath={.status.numberReady}"),
        ("get", "volumesnapshotclass", SNAPSHOT_CLASS, "-o", "name"),
    )
    answers = [cluster.kubectl(*check, check=False) for check in checks]
    if any(answer.returncode != 0 for answer in answers):
        return False
    drivers, available, ready, _ = (answer.stdout.strip() for answer in answers)
    return DRIVER in drivers.split() and available == "1" and ready == "1"


def _wait(cluster: LocalCluster, timeout: float) -> None:
    """Wait for the add-on to run; on time out, say what its pods and the kubelet last said."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _running(cluster):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the CSI add-on did not run within {timeout:.0f}s:\n{diagnostics(cluster)}")


def diagnostics(cluster: LocalCluster) -> str:
    """The add-on's pods, their recent logs and the CSINode: what to read when it does not run."""
    parts = [
        cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout,
        cluster.kubectl("get", "csinode", NODE_NAME, "-o", "yaml", check=False).stdout,
    ]
    for selector in (f"app.kubernetes.io/name={PLUGIN}", f"app.kubernetes.io/name={SNAPSHOT_CONTROLLER}"):
        logs = cluster.kubectl(
            "logs", "-n", NAMESPACE, "-l", selector, "--all-containers", "--prefix", "--tail=40", check=False
        )
        parts.append(logs.stdout + logs.stderr)
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False)
    parts.append("\n".join(events.stdout.splitlines()[-30:]))
    return "\n".join(part.strip() for part in parts if part.strip())


# --- from the pinned modules ------------------------------------------------------------------------


def module_dir(module: str, version: str) -> Path:
    """A module's source in the Go module cache (``go mod download``, once), e.g. for the YAML it ships."""
    go = shutil.which("go")
    if go is None:
        raise tools.ToolError(f"reading {module}@{version} needs 'go' on PATH (the Go module proxy)")
    with tempfile.TemporaryDirectory(prefix="stashlet-go-") as scratch:
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    try:
        info: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        raise tools.ToolError(
            f"go mod download {module}@{version} failed: {info.get('Error') or proc.stderr.strip()}"
        )
    return Path(info["Dir"])


def snapshot_crds() -> list[Path]:
    """The VolumeSnapshot CRDs of the snapshot client module the pinned external-snapshotter is built with."""
    folder = module_dir(SNAPSHOT_CLIENT_MODULE, tools.CSI_SNAPSHOTTER.sub_module_version) / "config" / "crd"
    return [folder / name for name in SNAPSHOT_CRDS]


def upstream_roles() -> dict[str, list[dict[str, Any]]]:
    """The rules of upstream's ClusterRoles for the snapshot controller, csi-snapshotter and
    external-provisioner, from the deploy files of the pinned modules."""
    snapshotter = (
        module_dir(tools.CSI_SNAPSHOTTER.module, tools.CSI_SNAPSHOTTER.version) / "deploy" / "kubernetes"
    )
    provisioner = (
        module_dir(tools.CSI_PROVISIONER.module, tools.CSI_PROVISIONER.version) / "deploy" / "kubernetes"
    )
    files = (
        snapshotter / "snapshot-controller" / "rbac-snapshot-controller.yaml",
        snapshotter / "csi-snapshotter" / "rbac-csi-snapshotter.yaml",
        provisioner / "rbac.yaml",
    )
    return cluster_roles(files, wanted=csiobjects.UPSTREAM_ROLES)


def cluster_roles(files: tuple[Path, ...], *, wanted: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The rules of the ``wanted`` ClusterRoles found in YAML ``files``; raises when one is missing."""
    roles: dict[str, list[dict[str, Any]]] = {}
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterRole":
                name = doc.get("metadata", {}).get("name")
                if name in wanted:
                    roles[name] = doc.get("rules") or []
    if missing := [name for name in wanted if name not in roles]:
        raise tools.ToolError(f"no ClusterRole {', '.join(missing)} in {', '.join(map(str, files))}")
    return roles
