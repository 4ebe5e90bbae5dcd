"""The in-cluster objects of the CSI snapshot add-on (:mod:`stashlet.localcluster.csi`); pure builders.

In ``kube-system``: the snapshot controller (a Deployment of one, no leader election), and the CSI
plugin as a DaemonSet on the node: the driver (privileged; the kubelet's ``pods`` folder mounted at the
same path with Bidirectional propagation, so its bind mounts reach the kubelet) beside the
external-provisioner and csi-snapshotter sidecars, which reach it through ``/csi/csi.sock``. The kubelet
finds the driver through the registration socket it serves in the kubelet's ``plugins_registry``.
Cluster-wide: the :data:`DRIVER` CSIDriver, the StorageClass :data:`STORAGE_CLASS` and the default
VolumeSnapshotClass :data:`SNAPSHOT_CLASS`. The ClusterRoles are upstream's, read from the pinned
modules by the caller (``roles``); this module binds them to the add-on's service accounts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from stashlet.localcluster import csiimages

NAMESPACE: Final = "kube-system"
DRIVER: Final = "hostpath.csi.stashlet.local"
"""The CSI driver's name (the provisioner of :data:`STORAGE_CLASS`, the driver of :data:`SNAPSHOT_CLASS`)."""
STORAGE_CLASS: Final = "csi-hostpath-sc"
SNAPSHOT_CLASS: Final = "csi-hostpath-snapclass"
PLUGIN: Final = "csi-hostpathplugin"
"""The DaemonSet of the driver and its sidecars, and its service account's stem."""
SNAPSHOT_CONTROLLER: Final = "snapshot-controller"
PLUGIN_SOCKET_DIR: Final = "csi-hostpath"
"""The driver's folder under the kubelet's ``plugins``: short, as unix socket paths are at most 107 bytes."""
REGISTRATION_SOCKET: Final = "csi-hostpath-reg.sock"

PROVISIONER_ROLE: Final = "external-provisioner-runner"
SNAPSHOTTER_ROLE: Final = "external-snapshotter-runner"
SNAPSHOT_CONTROLLER_ROLE: Final = "snapshot-controller-runner"
UPSTREAM_ROLES: Final = (PROVISIONER_ROLE, SNAPSHOTTER_ROLE, SNAPSHOT_CONTROLLER_ROLE)
"""The ClusterRoles of upstream's RBAC files that the add-on binds (``roles`` maps each to its rules)."""

_SIDECAR_TIMEOUT: Final = "--timeout=60s"
"""How long a sidecar waits for one CSI call (default 10 s): a snapshot is a tarball of the volume."""


def kubelet_socket(kubelet_root: Path) -> Path:
    """The driver's CSI socket as the kubelet dials it."""
    return kubelet_root / "plugins" / PLUGIN_SOCKET_DIR / "csi.sock"


def registration_socket(kubelet_root: Path) -> Path:
    """The registration socket the kubelet's plugin watcher finds."""
    return kubelet_root / "plugins_registry" / REGISTRATION_SOCKET


def objects(
    *, kubelet_root: Path, data_dir: Path, roles: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every object of the add-on but the CRDs, in an order ``kubectl apply`` takes."""
    missing = [name for name in UPSTREAM_ROLES if name not in roles]
    if missing:
        raise ValueError(f"no rules for the ClusterRoles {', '.join(missing)}")
    plugin_account = f"{PLUGIN}-sa"
    return [
        _service_account(SNAPSHOT_CONTROLLER),
        _service_account(plugin_account),
        *[_cluster_role(name, roles[name]) for name in UPSTREAM_ROLES],
        _binding(SNAPSHOT_CONTROLLER_ROLE, SNAPSHOT_CONTROLLER),
        _binding(PROVISIONER_ROLE, plugin_account),
        _binding(SNAPSHOTTER_ROLE, plugin_account),
        csi_driver(),
        storage_class(),
        snapshot_controller(),
        plugin(kubelet_root=kubelet_root, data_dir=data_dir, service_account=plugin_account),
    ]


def snapshot_class() -> dict[str, Any]:
    """The default VolumeSnapshotClass of :data:`DRIVER` (applied once its CRD is served)."""
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": SNAPSHOT_CLASS,
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
        },
        "driver": DRIVER,
        "deletionPolicy": "Delete",
    }


def csi_driver() -> dict[str, Any]:
    """No attach step (the volume is a folder of this node); persistent volumes only."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": DRIVER},
        "spec": {
            "attachRequired": False,
            "podInfoOnMount": False,
            "volumeLifecycleModes": ["Persistent"],
            "fsGroupPolicy": "File",
        },
    }


def storage_class() -> dict[str, Any]:
    """Claims of :data:`STORAGE_CLASS` are created at once by the driver (one node: no topology)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": DRIVER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def snapshot_controller() -> dict[str, Any]:
    """The snapshot controller: binds VolumeSnapshots to contents that the csi-snapshotter fills."""
    labels = {"app.kubernetes.io/name": SNAPSHOT_CONTROLLER}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SNAPSHOT_CONTROLLER, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": SNAPSHOT_CONTROLLER,
                    "priorityClassName": "system-cluster-critical",
                    "containers": [
                        {
                            "name": SNAPSHOT_CONTROLLER,
                            "image": csiimages.SNAPSHOT_CONTROLLER_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["--v=2", "--leader-election=false"],
                        }
                    ],
                },
            },
        },
    }


def plugin(*, kubelet_root: Path, data_dir: Path, service_account: str) -> dict[str, Any]:
    """The driver and its controller sidecars, one pod on the node."""
    labels = {"app.kubernetes.io/name": PLUGIN}
    socket_mount = {"name": "socket-dir", "mountPath": "/csi"}
    pods = str(kubelet_root / "pods")
    driver = {
        "name": "hostpath",
        "image": csiimages.HOSTPATH_IMAGE,
        "imagePullPolicy": "Never",
        "args": [
            f"--drivername={DRIVER}",
            "--nodeid=$(KUBE_NODE_NAME)",
            "--endpoint=/csi/csi.sock",
            "--datadir=/csi-data-dir",
            f"--registration-socket=/registration/{REGISTRATION_SOCKET}",
            f"--kubelet-endpoint={kubelet_socket(kubelet_root)}",
        ],
        "env": [{"name": "KUBE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            socket_mount,
            {"name": "registration-dir", "mountPath": "/registration"},
            {"name": "mountpoint-dir", "mountPath": pods, "mountPropagation": "Bidirectional"},
            {"name": "csi-data-dir", "mountPath": "/csi-data-dir"},
        ],
    }
    sidecars = [
        {
            "name": name,
            "image": image,
            "imagePullPolicy": "Never",
            "args": ["--v=2", "--csi-address=/csi/csi.sock", "--leader-election=false", _SIDECAR_TIMEOUT],
            "volumeMounts": [socket_mount],
        }
        for name, image in (
            ("csi-provisioner", csiimages.PROVISIONER_IMAGE),
            ("csi-snapshotter", csiimages.SNAPSHOTTER_IMAGE),
        )
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": PLUGIN, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": service_account,
                    "priorityClassName": "system-node-critical",
                    "containers": [driver, *sidecars],
                    "volumes": [
                        _host_path("socket-dir", kubelet_socket(kubelet_root).parent, "DirectoryOrCreate"),
                        _host_path("registration-dir", kubelet_root / "plugins_registry", "Directory"),
                        _host_path("mountpoint-dir", Path(pods), "DirectoryOrCreate"),
                        _host_path("csi-data-dir", data_dir, "DirectoryOrCreate"),
                    ],
                },
            },
        },
    }


def _host_path(name: str, path: Path, kind: str) -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": str(path), "type": kind}}


def _service_account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}}


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    }


def _binding(role: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{service_account}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
    }
