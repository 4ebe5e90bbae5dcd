"""How an image is made: the recipe interface, and the recipes of the small images made from scratch.

A :class:`Recipe` has a ``name`` (the image's full reference), a :meth:`~Recipe.key` (a hash of
everything the image is made of, which names its cached archive) and a :meth:`~Recipe.build` that
commits the image into the private buildah storage; recipes share a :class:`Context` during one
``images.build_images`` call. The recipes here make ``FROM scratch`` images shaped like upstream's:

* :class:`BinaryImage`: one pinned static binary of :mod:`stashlet.localcluster.tools` (Pushgateway,
  rest-server, CoreDNS). Key: the binary's version and the image's layout and config.
* :class:`PauseImage`: a 20-line static Go program (waits for SIGTERM/SIGINT, reaps children) for
  containerd's ``sandbox_image``, built with the host's Go.
* :class:`BusyboxImage`: Debian's ``busybox-static`` with its applet links in ``/bin``.

The agent and operator images come from the repository's Dockerfiles instead
(:mod:`stashlet.localcluster.dockerfileimages`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final

from stashlet.localcluster import baseimages, tools
from stashlet.localcluster.baseimages import RECIPE_REVISION, HostGo
from stashlet.localcluster.buildah import (
    SYSTEM_PATH,
    Buildah,
    digest,
    run,
    tar_dir,
    tar_executable,
    tar_file,
    tar_symlink,
    tmp_dir,
)
from stashlet.localcluster.distroless import NSS_USERS
from stashlet.localcluster.rootfs import FULL_ROOTFS, extracted


@dataclass
class Context:
    """What recipes share during one ``images.build_images`` call."""

    log: bool
    built: bool = False
    """True once this call built something (so the storage may hold leftovers)."""
    _buildah: Buildah | None = field(default=None, init=False)

    @property
    def buildah(self) -> Buildah:
        """The private buildah storage, made ready on first use (a call that only reuses archives
        never needs it)."""
        if self._buildah is None:
            self._buildah = Buildah()
        return self._buildah

    @cached_property
    def go(self) -> HostGo:
        """The host's Go, asked once (and only when a key or build needs it)."""
        return baseimages.host_go()


class Recipe(ABC):
    """How one image is made."""

    name: str
    """The image's full reference, e.g. ``docker.io/stashlet/agent:0.1.0``."""

    @abstractmethod
    def key(self, context: Context) -> str:
        """Hash of everything the image is made of."""

    @abstractmethod
    def build(self, context: Context, log_file: Path) -> str | None:
        """Commit the image under ``self.name`` into the private storage; return the key of what was
        built when it may differ from :meth:`key`'s (inputs that changed meanwhile)."""


def slug(name: str) -> str:
    """An image name as a file name: ``docker.io/stashlet/agent:0.1.0`` is ``stashlet-agent-0.1.0``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.removeprefix("docker.io/")).strip("-")


# --- from-scratch images ----------------------------------------------------------------------------


def scratch_config(
    *,
    entrypoint: tuple[str, ...],
    cmd: tuple[str, ...] = (),
    user: str = "",
    workdir: str = "",
    ports: tuple[str, ...] = (),
    volumes: tuple[str, ...] = (),
    description: str,
) -> list[str]:
    """``buildah config`` options for a from-scratch image."""
    options = ["--entrypoint", json.dumps(list(entrypoint))]
    if cmd:
        options += ["--cmd", json.dumps(list(cmd))]
    options += ["--env", f"PATH={SYSTEM_PATH}"]
    if user:
        options += ["--user", user]
    if workdir:
        options += ["--workingdir", workdir]
    for port in ports:
        options += ["--port", port]
    for volume in volumes:
        options += ["--volume", volume]
    options += ["--label", f"org.opencontainers.image.description={description}"]
    return options


_SCRATCH_GROUP: Final = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"


def scratch_layout(tar: tarfile.TarFile) -> None:
    """What every scratch image here has: /etc/passwd and /etc/group, /tmp."""
    tar_dir(tar, "etc")
    tar_file(tar, "etc/passwd", NSS_USERS.encode())
    tar_file(tar, "etc/group", _SCRATCH_GROUP.encode())
    tar_dir(tar, "tmp", mode=0o1777)


@dataclass(frozen=True)
class BinaryImage(Recipe):
    """A pinned static binary of :mod:`stashlet.localcluster.tools` alone in a scratch image."""

    name: str
    binary: str
    version: str
    path: str
    """Where the binary goes in the image."""
    config: tuple[str, ...]
    dirs: tuple[tuple[str, int, int], ...] = ()
    """Extra folders: (path, mode, owner uid/gid)."""

    def key(self, context: Context) -> str:
        """The binary's version, the image's layout and its config."""
        return digest(
            "binary",
            RECIPE_REVISION,
            self.name,
            self.binary,
            self.version,
            self.path,
            *self.config,
            repr(self.dirs),
        )

    def build(self, context: Context, log_file: Path) -> None:
        """One layer: the scratch layout, the binary (built into the tools cache if need be), the folders."""
        source = tools.ensure(self.binary, log=context.log)
        layer = tmp_dir() / f"{slug(self.name)}.tar"
        try:
            with tarfile.open(layer, "w") as tar:
                scratch_layout(tar)
                parent = ""
                for part in self.path.strip("/").split("/")[:-1]:
                    parent = f"{parent}/{part}".lstrip("/")
                    tar_dir(tar, parent)
                tar_executable(tar, source, self.path.lstrip("/"))
                for path, mode, owner in self.dirs:
                    tar_dir(tar, path.lstrip("/"), mode=mode, uid=owner, gid=owner)
            context.buildah.from_scratch_image(self.name, layers=[layer], config=self.config)
        finally:
            layer.unlink(missing_ok=True)


# --- pause ------------------------------------------------------------------------------------------

PAUSE_SOURCE: Final = """\
// The sandbox ("pause") container: holds the pod's namespaces, reaps orphans, exits on SIGTERM/SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
"""


@dataclass(frozen=True)
class PauseImage(Recipe):
    """:data:`PAUSE_SOURCE` built statically with the host's Go, alone in a scratch image."""

    name: str

    def key(self, context: Context) -> str:
        """The program's source and the host Go's version."""
        return digest("pause", RECIPE_REVISION, PAUSE_SOURCE, context.go.version)

    def build(self, context: Context, log_file: Path) -> None:
        """``go build`` in a throwaway module, then one layer with ``/pause``."""
        work = Path(tempfile.mkdtemp(prefix="pause-", dir=tmp_dir()))
        try:
            (work / "go.mod").write_text("module stashlet.local/pause\n\ngo 1.22\n")
            (work / "main.go").write_text(PAUSE_SOURCE)
            env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
            out = work / "pause"
            run(["go", "-C", str(work), "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."], env=env)
            layer = work / "layer.tar"
            with tarfile.open(layer, "w") as tar:
                tar_executable(tar, out, "pause")
            config = scratch_config(
                entrypoint=("/pause",),
                user="65535:65535",
                description="pause (sandbox) program of stashlet's local node, built with the host's Go",
            )
            context.buildah.from_scratch_image(self.name, layers=[layer], config=config)
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --- busybox ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BusyboxImage(Recipe):
    """Debian's ``busybox-static`` from the full debootstrap tree, with its applet links in ``/bin``."""

    name: str

    def key(self, context: Context) -> str:
        """The full debootstrap tree's key and the users."""
        return digest("busybox", RECIPE_REVISION, FULL_ROOTFS.key, NSS_USERS)

    def build(self, context: Context, log_file: Path) -> None:
        """One layer: the scratch layout, ``/bin/busybox`` and a symlink per applet."""
        layer = tmp_dir() / "busybox.tar"
        try:
            with extracted(FULL_ROOTFS, log=context.log) as tree:
                binary = tree / "usr/bin/busybox"
                applets = run([str(binary), "--list"]).split()
                version = run([str(binary)]).splitlines()[0]
                with tarfile.open(layer, "w") as tar:
                    scratch_layout(tar)
                    for folder, mode in (("bin", 0o755), ("root", 0o700), ("home", 0o755), ("var", 0o755)):
                        tar_dir(tar, folder, mode=mode)
                    tar_executable(tar, binary, "bin/busybox")
                    for applet in applets:
                        if applet != "busybox" and "/" not in applet:
                            tar_symlink(tar, f"bin/{applet}", "busybox")
            config = scratch_config(
                entrypoint=(),
                cmd=("sh",),
                description=f"Debian busybox-static ({version}) built locally by stashlet",
            )
            context.buildah.from_scratch_image(self.name, layers=[layer], config=config)
        finally:
            layer.unlink(missing_ok=True)
