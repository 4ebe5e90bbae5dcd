"""The images of the CSI snapshot add-on (:mod:`stashlet.localcluster.csi`), built only when it is asked for.

* :data:`SNAPSHOTTER_IMAGE`, :data:`SNAPSHOT_CONTROLLER_IMAGE`, :data:`PROVISIONER_IMAGE`: the pinned
  binaries of :data:`~stashlet.localcluster.tools.CSI_SNAPSHOTTER` and
  :data:`~stashlet.localcluster.tools.CSI_PROVISIONER`, each alone in a ``FROM scratch`` image under
  upstream's name (upstream's are distroless/static with the binary at ``/``).
* :data:`HOSTPATH_IMAGE`: the local node's CSI driver, ``csidriver/main.go`` beside this module, built
  with the host's Go against pinned modules of the Go module proxy (:class:`HostpathDriverImage`). The
  kubernetes-csi hostpath driver and node-driver-registrar are what it stands in for: the module proxy
  reachable here refuses both (``403 Forbidden``, every version), so this driver does their part for
  one node: volumes as host folders, snapshots as tarballs of them, and the kubelet's plugin
  registration.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stashlet.api import versions
from stashlet.localcluster import images, tools
from stashlet.localcluster.baseimages import RECIPE_REVISION
from stashlet.localcluster.buildah import digest, run, tar_executable, tmp_dir
from stashlet.localcluster.imagerecipes import (
    BinaryImage,
    Context,
    Recipe,
    scratch_config,
    scratch_layout,
)

DRIVER_SOURCE: Final = Path(__file__).with_name("csidriver") / "main.go"
DRIVER_VERSION: Final = "0.1.0"
"""The driver's own version (its image tag, and what GetPluginInfo reports)."""
DRIVER_MODULES: Final = (
    ("github.com/container-storage-interface/spec", "v1.12.0"),
    ("google.golang.org/grpc", "v1.72.2"),
    ("google.golang.org/protobuf", "v1.36.8"),
    ("k8s.io/kubelet", versions.KUBERNETES_STAGING),
)
"""What the driver is built against: the CSI spec of the pinned sidecars, the kubelet's plugin
registration API of the cluster's Kubernetes, and the gRPC and protobuf that ``k8s.io/kubelet`` takes."""

SNAPSHOTTER_IMAGE: Final = f"registry.k8s.io/sig-storage/csi-snapshotter:{tools.CSI_SNAPSHOTTER_VERSION}"
SNAPSHOT_CONTROLLER_IMAGE: Final = (
    f"registry.k8s.io/sig-storage/snapshot-controller:{tools.CSI_SNAPSHOTTER_VERSION}"
)
PROVISIONER_IMAGE: Final = f"registry.k8s.io/sig-storage/csi-provisioner:{tools.CSI_PROVISIONER_VERSION}"
HOSTPATH_IMAGE: Final = f"docker.io/stashlet/csi-hostpath:{DRIVER_VERSION}"

CSI_IMAGES: Final = (SNAPSHOTTER_IMAGE, SNAPSHOT_CONTROLLER_IMAGE, PROVISIONER_IMAGE, HOSTPATH_IMAGE)
"""Every image :func:`build_csi_images` makes, in the order it returns them."""


def _upstream_binary(name: str, binary: str, version: str, what: str) -> BinaryImage:
    return BinaryImage(
        name=name,
        binary=binary,
        version=version,
        path=f"/{binary}",
        config=tuple(
            scratch_config(
                entrypoint=(f"/{binary}",),
                description=f"{what} {version} built locally by stashlet",
            )
        ),
    )


def driver_go_mod() -> str:
    """The throwaway module the driver is built in: its pinned requirements (``go mod tidy`` adds the
    indirect ones, chosen by minimal version selection from these)."""
    requires = "\n".join(f"\t{module} {version}" for module, version in DRIVER_MODULES)
    return f"module stashlet.local/csi-hostpath\n\ngo 1.25\n\nrequire (\n{requires}\n)\n"


def build_driver(work: Path, log_file: Path) -> Path:
    """Build ``csidriver/main.go`` statically in the empty folder ``work``; the binary's path."""
    (work / "go.mod").write_text(driver_go_mod())
    shutil.copyfile(DRIVER_SOURCE, work / "main.go")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
    out = work / "csi-hostpath"
    run(["go", "-C", str(work), "mod", "tidy"], env=env, log_file=log_file)
    ldflags = f"-s -w -X main.version={DRIVER_VERSION}"
    run(
        ["go", "-C", str(work), "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(out), "."],
        env=env,
        log_file=log_file,
    )
    return out


@dataclass(frozen=True)
class HostpathDriverImage(Recipe):
    """``csidriver/main.go`` built statically with the host's Go, alone in a scratch image (it runs as
    root in a privileged container: it bind-mounts volumes into pods)."""

    name: str

    def key(self, context: Context) -> str:
        """The driver's source, its pinned modules and the host Go's version."""
        return digest(
            "csi-hostpath",
            RECIPE_REVISION,
            DRIVER_VERSION,
            DRIVER_SOURCE.read_bytes(),
            driver_go_mod(),
            context.go.version,
        )

    def build(self, context: Context, log_file: Path) -> None:
        """``go mod tidy`` and ``go build`` in a throwaway module, then one layer with ``/csi-hostpath``."""
        work = Path(tempfile.mkdtemp(prefix="csi-hostpath-", dir=tmp_dir()))
        try:
            out = build_driver(work, log_file)
            layer = work / "layer.tar"
            with tarfile.open(layer, "w") as tar:
                scratch_layout(tar)
                tar_executable(tar, out, "csi-hostpath")
            config = scratch_config(
                entrypoint=("/csi-hostpath",),
                description=f"stashlet's CSI hostpath driver {DRIVER_VERSION} for its local node",
            )
            context.buildah.from_scratch_image(self.name, layers=[layer], config=config)
        finally:
            shutil.rmtree(work, ignore_errors=True)


_RECIPES: Final[tuple[Recipe, ...]] = (
    _upstream_binary(
        SNAPSHOTTER_IMAGE, "csi-snapshotter", tools.CSI_SNAPSHOTTER_VERSION, "external-snapshotter sidecar"
    ),
    _upstream_binary(
        SNAPSHOT_CONTROLLER_IMAGE, "snapshot-controller", tools.CSI_SNAPSHOTTER_VERSION, "snapshot-controller"
    ),
    _upstream_binary(
        PROVISIONER_IMAGE, "csi-provisioner", tools.CSI_PROVISIONER_VERSION, "external-provisioner"
    ),
    HostpathDriverImage(HOSTPATH_IMAGE),
)


def build_csi_images(*, log: bool = True) -> list[images.ImageArchive]:
    """Build the add-on's images (or reuse their cached archives); the pinned tools are built first
    when missing (see :func:`stashlet.localcluster.images.build_images`)."""
    return images.build_images(log=log, recipes=_RECIPES)
