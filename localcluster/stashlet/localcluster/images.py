"""The container images a local real node runs, built here without any registry and loaded into containerd.

:func:`build_images` builds every image of :data:`ALL_IMAGES` once with buildah into a private storage
under the cache and saves each as a docker-archive tarball, ``<cache>/images/archives/<name>-<key>.tar``;
the key is a hash of the image's inputs, so an image is rebuilt only when they change:

* :data:`AGENT_IMAGE` and :data:`OPERATOR_IMAGE` from the repository's ``Dockerfile.agent`` and
  ``Dockerfile.operator`` (:mod:`stashlet.localcluster.dockerfileimages`), over locally made base images
  (:mod:`stashlet.localcluster.baseimages`).
* :data:`PUSHGATEWAY_IMAGE`, :data:`REST_SERVER_IMAGE`, :data:`COREDNS_IMAGE`: the pinned static
  binaries of :mod:`stashlet.localcluster.tools` in ``FROM scratch`` images shaped like upstream's;
  :data:`PAUSE_IMAGE`, containerd's ``sandbox_image``, built with the host's Go; :data:`BUSYBOX_IMAGE`,
  Debian's ``busybox-static`` (:mod:`stashlet.localcluster.imagerecipes`).

This module owns the names, which recipe makes each image, the archives and their reuse.
:func:`load_images` imports archives into containerd's ``k8s.io`` namespace, skipping those it already
holds with the same image config digest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from stashlet.api import versions
from stashlet.localcluster import baseimages, checkout
from stashlet.localcluster.buildah import ImageError, images_dir, require_root_and, run, say
from stashlet.localcluster.dockerfileimages import DockerfileImage
from stashlet.localcluster.imagerecipes import (
    BinaryImage,
    BusyboxImage,
    Context,
    PauseImage,
    Recipe,
    scratch_config,
    slug,
)
from stashlet.localcluster.tools import locked

__all__ = [
    "AGENT_IMAGE",
    "ALL_IMAGES",
    "APP_VERSION",
    "BUSYBOX_IMAGE",
    "COREDNS_IMAGE",
    "OPERATOR_IMAGE",
    "PAUSE_IMAGE",
    "PUSHGATEWAY_IMAGE",
    "REST_SERVER_IMAGE",
    "ImageArchive",
    "ImageError",
    "build_images",
    "image_config",
    "load_images",
]


def _app_version() -> str:
    """The chart's ``appVersion``, the one place the stashlet images' tag is written (the chart's
    ``image.tag`` defaults to it); the installed distribution's version when there is no checkout."""
    try:
        text = (checkout.chart() / "Chart.yaml").read_text()
    except (FileNotFoundError, checkout.CheckoutError):
        return importlib.metadata.version("stashlet")
    match = re.search(r"""^appVersion:\s*["']?([^"'\s]+)["']?\s*$""", text, re.MULTILINE)
    return match.group(1) if match else importlib.metadata.version("stashlet")


APP_VERSION: Final = _app_version()

AGENT_IMAGE: Final = f"docker.io/stashlet/agent:{APP_VERSION}"
"""The sidecar, stash-init and kubedump image (the chart's ``agent.image`` default, and the operator's)."""
OPERATOR_IMAGE: Final = f"docker.io/stashlet/operator:{APP_VERSION}"
PUSHGATEWAY_IMAGE: Final = f"docker.io/prom/pushgateway:{versions.PUSHGATEWAY}"
"""Upstream's tag form (``v1.11.1``), as the chart's ``pushgateway.image`` default."""
REST_SERVER_IMAGE: Final = f"docker.io/restic/rest-server:{versions.RESTIC_REST_SERVER.removeprefix('v')}"
"""Upstream tags rest-server without the ``v`` (``0.14.0``)."""
COREDNS_IMAGE: Final = f"docker.io/coredns/coredns:{versions.COREDNS.removeprefix('v')}"
"""Docker Hub tags CoreDNS without the ``v`` (``1.15.0``)."""
PAUSE_IMAGE: Final = "docker.io/stashlet/pause:3.10"
"""containerd's ``sandbox_image``: our own pause program, so not under registry.k8s.io's name."""
BUSYBOX_IMAGE: Final = "docker.io/library/busybox:latest"

ALL_IMAGES: Final = (
    AGENT_IMAGE,
    OPERATOR_IMAGE,
    PUSHGATEWAY_IMAGE,
    REST_SERVER_IMAGE,
    COREDNS_IMAGE,
    PAUSE_IMAGE,
    BUSYBOX_IMAGE,
)
"""Every image :func:`build_images` makes, in the order it returns them."""

K8S_NAMESPACE: Final = "k8s.io"
"""The containerd namespace the CRI plugin (so the kubelet) uses."""


@dataclass(frozen=True)
class ImageArchive:
    """One built image: its full name and its docker-archive tarball in the cache."""

    name: str
    """Full reference, e.g. ``docker.io/stashlet/agent:0.1.0``; also the archive's RepoTag."""
    path: Path
    key: str
    """Hash of the image's inputs; part of the file name."""
    config_digest: str
    """``sha256:…`` of the image config: the image ID containerd and the kubelet report."""


def build_images(*, log: bool = True, recipes: Sequence[Recipe] | None = None) -> list[ImageArchive]:
    """Build every image of :data:`ALL_IMAGES` (or reuse its cached archive) and return the archives;
    ``recipes`` instead for other images (an add-on's, e.g. :mod:`stashlet.localcluster.csiimages`).

    Needs root, buildah, tar, and for a first build debootstrap, chroot and Go. Holds a file lock, so
    concurrent callers wait for one another instead of building twice.
    """
    require_root_and("buildah", "tar")
    with locked(images_dir() / ".lock"):
        context = Context(log=log)
        archives = [_archive(recipe, context) for recipe in (_RECIPES if recipes is None else recipes)]
        if context.built:
            baseimages.collect_garbage(context.buildah, keep=baseimages.current_base_tags(context.go))
        return archives


def image_config(archive: ImageArchive) -> dict[str, Any]:
    """The ``config`` of an archive's image: ``User``, ``Entrypoint``, ``Cmd``, ``Env``, ``ExposedPorts``."""
    config: dict[str, Any] = _archive_config(archive.path)[1].get("config") or {}
    return config


def load_images(
    archives: Iterable[ImageArchive],
    *,
    containerd_address: str,
    namespace: str = K8S_NAMESPACE,
    log: bool = True,
) -> None:
    """Import archives into containerd (``ctr images import``), skipping images it already holds under
    the same name with the same config digest; check afterwards that each name resolves to its digest."""
    ctr = shutil.which("ctr")
    if ctr is None:
        raise ImageError("loading images needs containerd's ctr on PATH")
    base = [ctr, "--address", containerd_address, "--namespace", namespace]
    archives = list(archives)
    present = _config_digests(base, {a.name for a in archives})
    for archive in archives:
        if present.get(archive.name) == archive.config_digest:
            continue
        say(log, f"loading image {archive.name} into containerd ({namespace}) ...")
        run([*base, "images", "import", str(archive.path)])
    loaded = _config_digests(base, {a.name for a in archives})
    wrong = [a.name for a in archives if loaded.get(a.name) != a.config_digest]
    if wrong:
        raise ImageError(
            f"after ctr images import, containerd does not hold these as built: {', '.join(wrong)}"
        )


# --- which recipe makes which image -----------------------------------------------------------------

_PUSHGATEWAY = BinaryImage(
    name=PUSHGATEWAY_IMAGE,
    binary="pushgateway",
    version=versions.PUSHGATEWAY,
    path="/bin/pushgateway",
    dirs=(("/pushgateway", 0o755, 65534),),
    config=tuple(
        scratch_config(
            entrypoint=("/bin/pushgateway",),
            user="65534",
            workdir="/pushgateway",
            ports=("9091/tcp",),
            description=f"Prometheus Pushgateway {versions.PUSHGATEWAY} built locally by stashlet",
        )
    ),
)
_REST_SERVER = BinaryImage(
    name=REST_SERVER_IMAGE,
    binary="rest-server",
    version=versions.RESTIC_REST_SERVER,
    path="/usr/bin/rest-server",
    dirs=(("/data", 0o755, 0),),
    config=tuple(
        scratch_config(
            entrypoint=("/usr/bin/rest-server",),
            # A local test server: the repository under /data, no authentication unless args say so.
            cmd=("--path", "/data", "--no-auth"),
            ports=("8000/tcp",),
            volumes=("/data",),
            description=f"restic rest-server {versions.RESTIC_REST_SERVER} built locally by stashlet",
        )
    ),
)
_COREDNS = BinaryImage(
    name=COREDNS_IMAGE,
    binary="coredns",
    version=versions.COREDNS,
    path="/coredns",
    config=tuple(
        scratch_config(
            entrypoint=("/coredns",),
            ports=("53/tcp", "53/udp"),
            description=f"CoreDNS {versions.COREDNS} built locally by stashlet (runs as root: binds :53)",
        )
    ),
)


_RECIPES: Final[tuple[Recipe, ...]] = (
    DockerfileImage(AGENT_IMAGE, "Dockerfile.agent", uses_golang=True),
    DockerfileImage(OPERATOR_IMAGE, "Dockerfile.operator", uses_golang=False),
    _PUSHGATEWAY,
    _REST_SERVER,
    _COREDNS,
    PauseImage(PAUSE_IMAGE),
    BusyboxImage(BUSYBOX_IMAGE),
)


# --- archives ---------------------------------------------------------------------------------------


def _archive(recipe: Recipe, context: Context) -> ImageArchive:
    key = recipe.key(context)
    stem = slug(recipe.name)
    folder = images_dir() / "archives"
    path = folder / f"{stem}-{key[:16]}.tar"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        data = json.loads(meta.read_text())
        return ImageArchive(recipe.name, path, key, data["config_digest"])
    folder.mkdir(parents=True, exist_ok=True)
    log_file = images_dir() / "logs" / f"{stem}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    say(context.log, f"building image {recipe.name} (once; log: {log_file}) ...")
    started = time.monotonic()
    context.built = True
    if (built_key := recipe.build(context, log_file)) is not None and built_key != key:
        key, path = built_key, folder / f"{stem}-{built_key[:16]}.tar"
        meta = path.with_suffix(".json")
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    context.buildah("push", "--quiet", recipe.name, f"docker-archive:{partial}:{recipe.name}")
    config_digest = _archive_config(partial)[0]
    meta.write_text(json.dumps({"name": recipe.name, "key": key, "config_digest": config_digest}, indent=2))
    partial.rename(path)
    for stale in folder.glob(f"{stem}-*"):
        if stale.name not in (path.name, meta.name) and re.fullmatch(
            rf"{re.escape(stem)}-[0-9a-f]{{16}}\.\w+", stale.name
        ):
            stale.unlink()
    seconds = time.monotonic() - started
    say(context.log, f"built {recipe.name} in {seconds:.0f} s ({path.stat().st_size / 1e6:.0f} MB archive)")
    return ImageArchive(recipe.name, path, key, config_digest)


def _archive_config(path: Path) -> tuple[str, dict[str, Any]]:
    """The config digest and config of a single-image docker archive."""
    try:
        with tarfile.open(path) as tar:
            manifest = json.load(_member(tar, "manifest.json"))
            raw = _member(tar, manifest[0]["Config"]).read()
    except (OSError, tarfile.TarError, KeyError, IndexError, ValueError) as exc:
        raise ImageError(f"{path} is not a readable docker archive: {exc}") from None
    config: dict[str, Any] = json.loads(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), config


def _member(tar: tarfile.TarFile, name: str) -> Any:
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle


# --- containerd -------------------------------------------------------------------------------------


def _config_digests(base: list[str], names: set[str]) -> dict[str, str]:
    """The config digest of each of ``names`` that containerd holds (``ctr images ls`` + the manifest)."""
    found: dict[str, str] = {}
    listing = run([*base, "images", "ls"]).splitlines()[1:]
    for line in listing:
        fields = line.split()
        if len(fields) < 3 or fields[0] not in names:
            continue
        manifest = json.loads(run([*base, "content", "get", fields[2]]))
        config = manifest.get("config", {}).get("digest")
        if isinstance(config, str):
            found[fields[0]] = config
    return found
