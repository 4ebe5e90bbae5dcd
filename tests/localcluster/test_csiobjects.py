"""The CSI add-on's objects and pins, as built before anything runs (no cluster, no network)."""

from pathlib import Path
from typing import Any

import pytest

from stashlet.api import versions
from stashlet.localcluster import csi, csiimages, csiobjects, tools

KUBELET_ROOT = Path("/tmp/c/node/kubelet")
DATA_DIR = Path("/tmp/c/node/csi-hostpath")
ROLES = {
    name: [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    for name in csiobjects.UPSTREAM_ROLES
}


def built() -> list[dict[str, Any]]:
    return csiobjects.objects(kubelet_root=KUBELET_ROOT, data_dir=DATA_DIR, roles=ROLES)


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in built() if o["kind"] == kind]


def test_the_driver_reaches_the_kubelet_at_this_nodes_root_dir() -> None:
    """The driver mounts the kubelet's ``pods`` folder of this node at the same path with Bidirectional
    propagation (its bind mounts must reach the kubelet), tells the kubelet its socket's host path, and
    serves its registration socket in the kubelet's ``plugins_registry``."""
    [daemonset] = by_kind("DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    driver = spec["containers"][0]
    mounts = {m["name"]: m for m in driver["volumeMounts"]}
    assert volumes["mountpoint-dir"] == str(KUBELET_ROOT / "pods")
    assert mounts["mountpoint-dir"]["mountPath"] == str(KUBELET_ROOT / "pods")
    assert mounts["mountpoint-dir"]["mountPropagation"] == "Bidirectional"
    assert driver["securityContext"] == {"privileged": True}
    assert f"--kubelet-endpoint={KUBELET_ROOT}/plugins/csi-hostpath/csi.sock" in driver["args"]
    assert volumes["socket-dir"] == str(csiobjects.kubelet_socket(KUBELET_ROOT).parent)
    assert volumes["registration-dir"] == str(KUBELET_ROOT / "plugins_registry")
    assert csiobjects.registration_socket(KUBELET_ROOT).parent == KUBELET_ROOT / "plugins_registry"
    assert volumes["csi-data-dir"] == str(DATA_DIR)


def test_only_the_driver_is_privileged_and_every_image_is_one_built_here() -> None:
    """The sidecars and the snapshot controller run unprivileged; every container runs an image of the
    add-on, never pulled."""
    containers = [
        c
        for o in built()
        if o["kind"] in ("DaemonSet", "Deployment")
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert {c["name"] for c in containers} == {
        "hostpath",
        "csi-provisioner",
        "csi-snapshotter",
        "snapshot-controller",
    }
    assert [c["name"] for c in containers if "securityContext" in c] == ["hostpath"]
    assert {c["image"] for c in containers} == set(csiimages.CSI_IMAGES)
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}


def test_classes_name_the_driver_and_upstream_roles_are_bound_to_the_addon_accounts() -> None:
    """The StorageClass provisions with the driver, the default VolumeSnapshotClass snapshots with it;
    each of upstream's ClusterRoles is created as given and bound to a service account of the add-on."""
    [storage_class] = by_kind("StorageClass")
    [driver] = by_kind("CSIDriver")
    snapshot_class = csiobjects.snapshot_class()
    assert storage_class["metadata"]["name"] == "csi-hostpath-sc"
    assert snapshot_class["metadata"]["name"] == "csi-hostpath-snapclass"
    assert storage_class["provisioner"] == snapshot_class["driver"] == driver["metadata"]["name"]
    assert driver["spec"]["attachRequired"] is False
    assert (
        snapshot_class["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"
    )
    roles = {r["metadata"]["name"]: r["rules"] for r in by_kind("ClusterRole")}
    assert roles == ROLES
    accounts = {a["metadata"]["name"] for a in by_kind("ServiceAccount")}
    bindings = by_kind("ClusterRoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == set(csiobjects.UPSTREAM_ROLES)
    for binding in bindings:
        [subject] = binding["subjects"]
        assert subject["name"] in accounts
        assert subject["namespace"] == csiobjects.NAMESPACE


def test_objects_refuse_to_be_built_without_upstream_rules() -> None:
    """A missing upstream ClusterRole is an error, not an add-on without rights."""
    with pytest.raises(ValueError, match=csiobjects.SNAPSHOTTER_ROLE):
        csiobjects.objects(
            kubelet_root=KUBELET_ROOT,
            data_dir=DATA_DIR,
            roles={k: v for k, v in ROLES.items() if k != csiobjects.SNAPSHOTTER_ROLE},
        )


def test_cluster_roles_are_read_from_upstream_yaml(tmp_path: Path) -> None:
    """The rules of the wanted ClusterRoles are taken from multi-document files; others are ignored, and a
    missing one names itself."""
    path = tmp_path / "rbac.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n---\n"
        "kind: ClusterRole\nmetadata: {name: wanted}\n"
        "rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n"
        "---\nkind: ClusterRole\nmetadata: {name: other}\nrules: []\n"
    )
    assert csi.cluster_roles((path,), wanted=("wanted",)) == {
        "wanted": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    }
    with pytest.raises(tools.ToolError, match="absent"):
        csi.cluster_roles((path,), wanted=("wanted", "absent"))


def test_the_addon_tools_are_pinned_apart_from_the_default_install() -> None:
    """The sidecars, the snapshot controller and the conformance suite are known binaries, built only when
    asked for (not by a plain ``install-tools``); the driver builds against the cluster's Kubernetes
    staging version."""
    addon = {b for tool in tools.ADDON_TOOLS for b in tool.binaries}
    assert addon == {"csi-snapshotter", "snapshot-controller", "csi-provisioner", "csi-sanity"}
    assert addon <= set(tools.BY_BINARY)
    assert not addon & {b for tool in tools.ALL_TOOLS for b in tool.binaries}
    assert f"\tk8s.io/kubelet {versions.KUBERNETES_STAGING}\n" in csiimages.driver_go_mod()
    assert csiimages.DRIVER_SOURCE.is_file()
