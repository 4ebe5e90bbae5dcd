"""A control plane of a test's own whose BackupSession CRD has no ``selectableFields`` (as a cluster older
than 1.30, or a CRD applied by an older chart, serves it): the API server refuses a field selector on
``spec.invoker``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stashlet.localcluster.cluster import LocalCluster
from stashlet.localcluster.controlplane import ControlPlane

CRDS = Path(__file__).resolve().parents[3] / "charts" / "stashlet" / "crds"


def without_selectable_fields(crds: Path, into: Path) -> Path:
    """A copy of the chart's CRDs at ``into`` with every ``selectableFields`` removed."""
    shutil.copytree(crds, into)
    for path in into.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            version.pop("selectableFields", None)
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return into


@pytest.fixture
def plane_without_selectable_fields(tmp_path: Path) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver (no controllers, no node) with the CRDs minus ``selectableFields``."""
    cluster = LocalCluster(tmp_path / "plane", node=False, controller_manager=False)
    cluster.up(crds=without_selectable_fields(CRDS, tmp_path / "crds"))
    try:
        yield cluster.plane
    finally:
        cluster.down()
