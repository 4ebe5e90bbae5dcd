"""The base images the Dockerfiles name, made locally because no registry is reachable here.

``Dockerfile.agent`` and ``Dockerfile.operator`` start ``FROM debian:12-slim``,
``FROM golang:<GO_VERSION>-bookworm`` and ``FROM gcr.io/distroless/python3-debian12:nonroot``. None of
them can be pulled on a machine without a registry, so this module makes look-alikes under those exact
names in the private buildah storage (:mod:`stashlet.localcluster.buildah`) from Debian packages, which
the configured Debian mirror does serve:

* ``debian:12-slim``: the slim debootstrap tree (``rootfs.SLIM_ROOTFS``) as one layer.
* ``golang:<host major.minor>-bookworm``: that image plus a copy of the host's Go (``go env GOROOT``)
  at ``/usr/local/go``, with ``GOPATH=/go``, ``PATH`` and ``GOTOOLCHAIN=local`` as in the official
  image. It is named after the Go it really holds: the Dockerfile's ``ARG GO_VERSION`` (a floor) is
  overridden with ``--build-arg GO_VERSION=<host major.minor>`` rather than tagging 1.26 as 1.25.
  It has no ``ca-certificates``: Debian's bundle would not help here (outbound HTTPS passes a
  TLS-intercepting proxy that only the host's bundle trusts), so every ``RUN`` sees a throwaway copy of
  the host's bundle instead (see :mod:`stashlet.localcluster.dockerfileimages`).
* ``gcr.io/distroless/python3-debian12:nonroot``: only the files of the Debian packages Python 3.11
  needs at run time, picked from the full debootstrap tree (see :mod:`stashlet.localcluster.distroless`),
  ``USER 65532``; no shell, no coreutils.

Each base carries a content key (of its recipe and inputs) in a second tag,
``localhost/stashlet-base/<name>:<key>``; a base is rebuilt only when that tag is missing, and
:func:`collect_garbage` drops the bases of older recipes.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stashlet.api import versions
from stashlet.localcluster.buildah import (
    SYSTEM_PATH,
    Buildah,
    ImageError,
    digest,
    run,
    say,
    tar_dir,
    tmp_dir,
)
from stashlet.localcluster.distroless import (
    DISTROLESS_PACKAGES,
    NSS_GROUPS,
    NSS_USERS,
    write_distroless_layer,
)
from stashlet.localcluster.rootfs import FULL_ROOTFS, SLIM_ROOTFS, SUITE, extracted

RECIPE_REVISION: Final = "2"
"""Part of every image's cache key: bump it when a recipe here or in the image recipes changes what it
makes."""

DEBIAN_IMAGE: Final = "docker.io/library/debian:12-slim"
DISTROLESS_PYTHON_IMAGE: Final = "gcr.io/distroless/python3-debian12:nonroot"


@dataclass(frozen=True)
class HostGo:
    """The Go toolchain of this host, which the golang base image copies."""

    version: str
    """``go env GOVERSION``, e.g. ``go1.26.8``."""
    goroot: Path

    @property
    def minor(self) -> str:
        """``1.26`` of ``go1.26.8``: the tag of the golang image and the Dockerfile's GO_VERSION."""
        return ".".join(self.version.removeprefix("go").split(".")[:2])

    @property
    def image(self) -> str:
        """The golang image named after the Go it holds."""
        return f"docker.io/library/golang:{self.minor}-{SUITE}"


def host_go() -> HostGo:
    """Ask the host's ``go`` for its version and GOROOT."""
    if shutil.which("go") is None:
        raise ImageError(f"building the agent image needs the host's Go (>= {versions.GO_TOOLCHAIN_MIN})")
    version, goroot = run(["go", "env", "GOVERSION", "GOROOT"]).split()
    return HostGo(version, Path(goroot))


BASE_REPOSITORY: Final = "localhost/stashlet-base"


def _keyed(short: str, key: str) -> str:
    return f"{BASE_REPOSITORY}/{short}:{key[:16]}"


def current_base_tags(go: HostGo) -> set[str]:
    """The keyed tags of the bases the current recipes make."""
    return {
        _keyed("debian", debian_key()),
        _keyed("golang", golang_key(go)),
        _keyed("distroless-python3", distroless_key()),
    }


def collect_garbage(buildah: Buildah, *, keep: set[str]) -> None:
    """Drop what no current image needs from the private storage: bases of older recipes (tags under
    :data:`BASE_REPOSITORY` not in ``keep``) and dangling images (earlier builds and their layer cache).
    Best effort: an image still in use stays."""
    for _ in range(3):
        listing = buildah("images", "--format", "{{.Name}}:{{.Tag}}", "--noheading")
        stale = [t for t in listing.split() if t.startswith(f"{BASE_REPOSITORY}/") and t not in keep]
        for tag in stale:
            buildah.attempt("rmi", tag)
        buildah.attempt("rmi", "--prune")
        if not stale:
            break


def debian_key() -> str:
    """The key of debian:12-slim."""
    return digest("debian", RECIPE_REVISION, SLIM_ROOTFS.key)


def golang_key(go: HostGo) -> str:
    """The key of the golang image: debian's key and the host Go's version and GOROOT."""
    return digest("golang", RECIPE_REVISION, debian_key(), go.version, str(go.goroot))


def distroless_key() -> str:
    """The key of the distroless Python image."""
    return digest(
        "distroless",
        RECIPE_REVISION,
        FULL_ROOTFS.key,
        *DISTROLESS_PACKAGES,
        NSS_USERS,
        NSS_GROUPS,
    )


@contextlib.contextmanager
def _building(image: str, *, log: bool, source: str = "") -> Iterator[None]:
    """Say that a base image is being built and, once it is, how long that took."""
    say(log, f"building base image {image}{source} (once) ...")
    started = time.monotonic()
    yield
    say(log, f"built {image} in {time.monotonic() - started:.0f} s")


def ensure_debian(buildah: Buildah, *, log: bool) -> None:
    """Make sure ``debian:12-slim`` in the private storage is the one of the current recipe."""
    keyed = _keyed("debian", debian_key())
    if not buildah.has_image(keyed):
        tarball = SLIM_ROOTFS.ensure(log=log)
        with _building(DEBIAN_IMAGE, log=log):
            config = ["--cmd", '["bash"]', "--env", f"PATH={SYSTEM_PATH}"]
            buildah.from_scratch_image(keyed, layers=[tarball], config=config)
    buildah("tag", keyed, DEBIAN_IMAGE)


def ensure_golang(buildah: Buildah, go: HostGo, *, log: bool) -> None:
    """Make sure ``golang:<host minor>-bookworm`` holds the host's Go on top of debian:12-slim."""
    ensure_debian(buildah, log=log)
    keyed = _keyed("golang", golang_key(go))
    if not buildah.has_image(keyed):
        with _building(go.image, log=log, source=f" from the host's {go.version}"):
            gopath = tmp_dir() / "gopath.tar"
            with tarfile.open(gopath, "w") as tar:
                for name in ("go", "go/bin", "go/src"):
                    tar_dir(tar, name, mode=0o1777)
            try:
                debian = _keyed("debian", debian_key())
                with buildah.working_container("--pull=never", "--quiet", debian) as container:
                    buildah("copy", "--quiet", container, go.goroot, "/usr/local/go")
                    buildah("add", "--quiet", container, gopath, "/")
                    buildah(
                        "config",
                        "--env",
                        "GOLANG_VERSION=" + go.version.removeprefix("go"),
                        "--env",
                        "GOTOOLCHAIN=local",
                        "--env",
                        "GOPATH=/go",
                        "--env",
                        f"PATH=/go/bin:/usr/local/go/bin:{SYSTEM_PATH}",
                        "--workingdir",
                        "/go",
                        container,
                    )
                    buildah("commit", "--quiet", "--rm", container, keyed)
            finally:
                gopath.unlink(missing_ok=True)
    buildah("tag", keyed, go.image)


def ensure_distroless(buildah: Buildah, *, log: bool) -> None:
    """Make sure ``gcr.io/distroless/python3-debian12:nonroot`` is the one of the current recipe."""
    keyed = _keyed("distroless-python3", distroless_key())
    if not buildah.has_image(keyed):
        with extracted(FULL_ROOTFS, log=log) as tree, _building(DISTROLESS_PYTHON_IMAGE, log=log):
            layer = tmp_dir() / "distroless.tar"
            try:
                write_distroless_layer(tree, layer)
                config = [
                    "--user",
                    "65532",
                    "--workingdir",
                    "/home/nonroot",
                    "--entrypoint",
                    '["/usr/bin/python3.11"]',
                    "--env",
                    f"PATH={SYSTEM_PATH}",
                    "--env",
                    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                ]
                buildah.from_scratch_image(keyed, layers=[layer], config=config)
            finally:
                layer.unlink(missing_ok=True)
    buildah("tag", keyed, DISTROLESS_PYTHON_IMAGE)
