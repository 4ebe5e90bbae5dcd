"""The container images a local real node runs, built here without any registry and loaded into containerd.

:func:`build_images` builds every image once with buildah into a private storage under the cache and
saves each as a docker-archive tarball, ``<cache>/images/archives/<name>-<key>.tar``; the key is a hash
of the image's inputs, so an image is rebuilt only when they change:

* :data:`AGENT_IMAGE` and :data:`OPERATOR_IMAGE` from the repository's ``Dockerfile.agent`` and
  ``Dockerfile.operator`` (``buildah bud --pull=never``), over locally made base images
  (see :mod:`stashlet.localcluster.baseimages`). Key: the Dockerfile, ``pyproject.toml``, ``README.md``,
  every file under ``agent/`` and ``operator/`` that git tracks or does not ignore, the build arguments
  and the base images' keys. The build context holds exactly those files.
* :data:`PUSHGATEWAY_IMAGE`, :data:`REST_SERVER_IMAGE`, :data:`COREDNS_IMAGE`: the pinned static
  binaries of :mod:`stashlet.localcluster.tools` in ``FROM scratch`` images shaped like upstream's.
  Key: the binary's version.
* :data:`PAUSE_IMAGE`: a 20-line static Go program (waits for SIGTERM/SIGINT, reaps children) for
  containerd's ``sandbox_image``, built with the host's Go.
* :data:`BUSYBOX_IMAGE`: Debian's ``busybox-static`` with its applet links in ``/bin``.

``RUN`` steps use ``--isolation chroot`` and the host network. apt reaches the Debian mirror over plain
http; pip (Debian's pip reads ``/etc/ssl/certs/ca-certificates.crt``) and go reach PyPI and the module
proxy through this machine's TLS-intercepting proxy, which only the host's CA bundle trusts, so every
``RUN`` sees throwaway copies of that bundle (see ``_Dockerfile._bud_options``). The host's Go caches
are *not* mounted: buildah leaves every mount point that did not exist behind as an empty folder in the
committed layer, and the final, distroless stage would then ship ``/go/pkg/mod``; restic is downloaded
and built inside the golang stage instead, once, and ``--layers`` keeps that stage for later builds.

:func:`load_images` imports archives into containerd's ``k8s.io`` namespace, skipping those it already
holds with the same image config digest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from stashlet.api import versions
from stashlet.localcluster import baseimages, tools
from stashlet.localcluster.baseimages import (
    FULL_ROOTFS,
    NSS_USERS,
    RECIPE_REVISION,
    Buildah,
    HostGo,
    ImageError,
    digest,
    images_dir,
    say,
    tar_dir,
    tar_file,
    tar_symlink,
)

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

CHECKOUT: Final = Path(__file__).resolve().parents[3]
CHART: Final = CHECKOUT / "charts" / "stashlet" / "Chart.yaml"


def _app_version() -> str:
    """The chart's ``appVersion``, the one place the stashlet images' tag is written (the chart's
    ``image.tag`` defaults to it); the installed distribution's version when there is no checkout."""
    try:
        text = CHART.read_text()
    except FileNotFoundError:
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


def build_images(*, log: bool = True) -> list[ImageArchive]:
    """Build every image of :data:`ALL_IMAGES` (or reuse its cached archive) and return the archives.

    Needs root, buildah, tar, and for a first build debootstrap, chroot and Go. Holds a file lock, so
    concurrent callers wait for one another instead of building twice.
    """
    baseimages.require_root_and("buildah", "tar")
    with baseimages.locked(images_dir() / ".lock"):
        context = _Context(log=log)
        archives = [_archive(recipe, context) for recipe in _RECIPES]
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
        baseimages.run([*base, "images", "import", str(archive.path)])
    loaded = _config_digests(base, {a.name for a in archives})
    wrong = [a.name for a in archives if loaded.get(a.name) != a.config_digest]
    if wrong:
        raise ImageError(
            f"after ctr images import, containerd does not hold these as built: {', '.join(wrong)}"
        )


# --- building ---------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What recipes share during one :func:`build_images` call."""

    log: bool
    built: bool = False
    """True once this call built something (so the storage may hold leftovers)."""
    _buildah: Buildah | None = field(default=None, init=False)

    @property
    def buildah(self) -> Buildah:
        if self._buildah is None:
            self._buildah = Buildah()
        return self._buildah

    @cached_property
    def go(self) -> HostGo:
        return baseimages.host_go()


class _Recipe(ABC):
    name: str

    @abstractmethod
    def key(self, context: _Context) -> str:
        """Hash of everything the image is made of."""

    @abstractmethod
    def build(self, context: _Context, log_file: Path) -> None:
        """Commit the image under ``self.name`` into the private storage."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.removeprefix("docker.io/")).strip("-")


def _archive(recipe: _Recipe, context: _Context) -> ImageArchive:
    key = recipe.key(context)
    slug = _slug(recipe.name)
    folder = images_dir() / "archives"
    path = folder / f"{slug}-{key[:16]}.tar"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        data = json.loads(meta.read_text())
        return ImageArchive(recipe.name, path, key, data["config_digest"])
    folder.mkdir(parents=True, exist_ok=True)
    log_file = images_dir() / "logs" / f"{slug}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    say(context.log, f"building image {recipe.name} (once; log: {log_file}) ...")
    started = time.monotonic()
    context.built = True
    recipe.build(context, log_file)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    context.buildah("push", "--quiet", recipe.name, f"docker-archive:{partial}:{recipe.name}")
    config_digest = _archive_config(partial)[0]
    meta.write_text(json.dumps({"name": recipe.name, "key": key, "config_digest": config_digest}, indent=2))
    partial.rename(path)
    for stale in folder.glob(f"{slug}-*"):
        if stale.name not in (path.name, meta.name) and re.fullmatch(
            rf"{re.escape(slug)}-[0-9a-f]{{16}}\.\w+", stale.name
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


def _scratch_config(
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
    options += ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
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


# --- agent and operator: the repository's Dockerfiles -----------------------------------------------


def _source_files() -> list[str]:
    """Files under agent/ and operator/ that git tracks or does not ignore (relative, sorted)."""
    found: list[str] = []
    if (CHECKOUT / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(
            [
                "git",
                "-C",
                str(CHECKOUT),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                "agent",
                "operator",
            ],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            found = [p for p in proc.stdout.decode().split("\0") if p]
    if not found:
        for top in ("agent", "operator"):
            for path in (CHECKOUT / top).rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                    found.append(str(path.relative_to(CHECKOUT)))
    return sorted({p for p in found if (CHECKOUT / p).is_file() and "__pycache__" not in Path(p).parts})


@dataclass(frozen=True)
class _Dockerfile(_Recipe):
    name: str
    dockerfile: str
    uses_golang: bool

    def _build_args(self, context: _Context) -> list[str]:
        if not self.uses_golang:
            return []
        return [f"GO_VERSION={context.go.minor}", f"RESTIC_VERSION={versions.RESTIC}"]

    def key(self, context: _Context) -> str:
        files = ["pyproject.toml", "README.md", *_source_files()]
        parts: list[str | bytes] = [
            "dockerfile",
            RECIPE_REVISION,
            self.name,
            (CHECKOUT / self.dockerfile).read_bytes(),
        ]
        for name in files:
            parts += [name, hashlib.sha256((CHECKOUT / name).read_bytes()).hexdigest()]
        parts += [*self._build_args(context), baseimages.debian_key(), baseimages.distroless_key()]
        if self.uses_golang:
            parts.append(baseimages.golang_key(context.go))
        return digest(*parts)

    def build(self, context: _Context, log_file: Path) -> None:
        if not (CHECKOUT / self.dockerfile).is_file():
            raise ImageError(
                f"{self.name} is built from {self.dockerfile} of a source checkout; none at {CHECKOUT}"
            )
        buildah = context.buildah
        baseimages.ensure_debian(buildah, log=context.log)
        baseimages.ensure_distroless(buildah, log=context.log)
        if self.uses_golang:
            baseimages.ensure_golang(buildah, context.go, log=context.log)
        if not baseimages.HOST_CA_BUNDLE.is_file():
            raise ImageError(f"building {self.name} needs the host's CA bundle {baseimages.HOST_CA_BUNDLE}")
        work = Path(tempfile.mkdtemp(prefix=f"context-{_slug(self.name)}-", dir=images_dir() / "tmp"))
        try:
            context_dir = work / "context"
            context_dir.mkdir()
            shutil.copy2(CHECKOUT / self.dockerfile, context_dir / "Dockerfile")
            for name in ["pyproject.toml", "README.md", *_source_files()]:
                (context_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(CHECKOUT / name, context_dir / name)
            options = self._bud_options(context, work)
            # Tag each named stage first (cheap with --layers: the full build reuses them), so pruning
            # dangling images later keeps the slow stages' cache (restic's build, apt's Python).
            text = (CHECKOUT / self.dockerfile).read_text()
            for stage in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, re.MULTILINE | re.IGNORECASE):
                tag = f"localhost/stashlet-cache/{_slug(self.name)}-{stage.lower()}"
                buildah(*options, "--target", stage, "--tag", tag, context_dir, log_file=log_file)
            buildah(*options, "--tag", self.name, context_dir, log_file=log_file)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _bud_options(self, context: _Context, work: Path) -> list[str | Path]:
        """``buildah bud`` options: local bases only, chroot isolation, the host network, the host's CAs.

        Two copies of the host's CA bundle, both throwaway: ``/etc/ssl/certs`` (writable, for go and
        for pip, and because apt's ``ca-certificates`` postinst rewrites it when the build stage
        installs Python) and ``/usr/local/share/ca-certificates/stashlet-host-bundle.crt`` (so that
        rewrite keeps the proxy's CA). Both targets exist in the distroless base, so its smoke-test
        ``RUN`` leaves no mount point behind.
        """
        certs, local = work / "etc-ssl-certs", work / "local-ca-certificates"
        for folder, name in ((certs, "ca-certificates.crt"), (local, "stashlet-host-bundle.crt")):
            folder.mkdir()
            shutil.copyfile(baseimages.HOST_CA_BUNDLE, folder / name)
        options: list[str | Path] = [
            "bud",
            "--pull=never",
            "--layers",
            "--force-rm",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--volume",
            f"{certs}:/etc/ssl/certs",
            "--volume",
            f"{local}:/usr/local/share/ca-certificates:ro",
            "--file",
            work / "context" / "Dockerfile",
        ]
        for arg in self._build_args(context):
            options += ["--build-arg", arg]
        return options


# --- pinned binaries in scratch images --------------------------------------------------------------


_SCRATCH_GROUP: Final = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"


def _base_layout(tar: tarfile.TarFile) -> None:
    """What every scratch image here has: /etc/passwd and /etc/group, /tmp."""
    tar_dir(tar, "etc")
    tar_file(tar, "etc/passwd", NSS_USERS.encode())
    tar_file(tar, "etc/group", _SCRATCH_GROUP.encode())
    tar_dir(tar, "tmp", mode=0o1777)


def _add_binary(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(source), arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755
    with source.open("rb") as handle:
        tar.addfile(info, handle)


@dataclass(frozen=True)
class _Binary(_Recipe):
    name: str
    binary: str
    version: str
    path: str
    """Where the binary goes in the image."""
    config: tuple[str, ...]
    dirs: tuple[tuple[str, int, int], ...] = ()
    """Extra folders: (path, mode, owner uid/gid)."""

    def key(self, context: _Context) -> str:
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

    def build(self, context: _Context, log_file: Path) -> None:
        source = tools.ensure(self.binary, log=context.log)
        layer = images_dir() / "tmp" / f"{_slug(self.name)}.tar"
        try:
            with tarfile.open(layer, "w") as tar:
                _base_layout(tar)
                parent = ""
                for part in self.path.strip("/").split("/")[:-1]:
                    parent = f"{parent}/{part}".lstrip("/")
                    tar_dir(tar, parent)
                _add_binary(tar, source, self.path.lstrip("/"))
                for path, mode, owner in self.dirs:
                    tar_dir(tar, path.lstrip("/"), mode=mode, uid=owner, gid=owner)
            context.buildah.from_scratch_image(self.name, layers=[layer], config=self.config)
        finally:
            layer.unlink(missing_ok=True)


_PUSHGATEWAY = _Binary(
    name=PUSHGATEWAY_IMAGE,
    binary="pushgateway",
    version=versions.PUSHGATEWAY,
    path="/bin/pushgateway",
    dirs=(("/pushgateway", 0o755, 65534),),
    config=tuple(
        _scratch_config(
            entrypoint=("/bin/pushgateway",),
            user="65534",
            workdir="/pushgateway",
            ports=("9091/tcp",),
            description=f"Prometheus Pushgateway {versions.PUSHGATEWAY} built locally by stashlet",
        )
    ),
)
_REST_SERVER = _Binary(
    name=REST_SERVER_IMAGE,
    binary="rest-server",
    version=versions.RESTIC_REST_SERVER,
    path="/usr/bin/rest-server",
    dirs=(("/data", 0o755, 0),),
    config=tuple(
        _scratch_config(
            entrypoint=("/usr/bin/rest-server",),
            # A local test server: the repository under /data, no authentication unless args say so.
            cmd=("--path", "/data", "--no-auth"),
            ports=("8000/tcp",),
            volumes=("/data",),
            description=f"restic rest-server {versions.RESTIC_REST_SERVER} built locally by stashlet",
        )
    ),
)
_COREDNS = _Binary(
    name=COREDNS_IMAGE,
    binary="coredns",
    version=versions.COREDNS,
    path="/coredns",
    config=tuple(
        _scratch_config(
            entrypoint=("/coredns",),
            ports=("53/tcp", "53/udp"),
            description=f"CoreDNS {versions.COREDNS} built locally by stashlet (runs as root: binds :53)",
        )
    ),
)


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
class _Pause(_Recipe):
    name: str = PAUSE_IMAGE

    def key(self, context: _Context) -> str:
        return digest("pause", RECIPE_REVISION, PAUSE_SOURCE, context.go.version)

    def build(self, context: _Context, log_file: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="pause-", dir=images_dir() / "tmp"))
        try:
            (work / "go.mod").write_text("module stashlet.local/pause\n\ngo 1.22\n")
            (work / "main.go").write_text(PAUSE_SOURCE)
            env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
            out = work / "pause"
            baseimages.run(
                ["go", "-C", str(work), "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."], env=env
            )
            layer = work / "layer.tar"
            with tarfile.open(layer, "w") as tar:
                _add_binary(tar, out, "pause")
            config = _scratch_config(
                entrypoint=("/pause",),
                user="65535:65535",
                description="pause (sandbox) program of stashlet's local node, built with the host's Go",
            )
            context.buildah.from_scratch_image(self.name, layers=[layer], config=config)
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --- busybox ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Busybox(_Recipe):
    name: str = BUSYBOX_IMAGE

    def key(self, context: _Context) -> str:
        return digest("busybox", RECIPE_REVISION, FULL_ROOTFS.key, NSS_USERS)

    def build(self, context: _Context, log_file: Path) -> None:
        layer = images_dir() / "tmp" / "busybox.tar"
        try:
            with baseimages.extracted(FULL_ROOTFS, log=context.log) as tree:
                binary = tree / "usr/bin/busybox"
                applets = baseimages.run([str(binary), "--list"]).split()
                version = baseimages.run([str(binary)]).splitlines()[0]
                with tarfile.open(layer, "w") as tar:
                    _base_layout(tar)
                    for folder, mode in (("bin", 0o755), ("root", 0o700), ("home", 0o755), ("var", 0o755)):
                        tar_dir(tar, folder, mode=mode)
                    _add_binary(tar, binary, "bin/busybox")
                    for applet in applets:
                        if applet != "busybox" and "/" not in applet:
                            tar_symlink(tar, f"bin/{applet}", "busybox")
            config = _scratch_config(
                entrypoint=(),
                cmd=("sh",),
                description=f"Debian busybox-static ({version}) built locally by stashlet",
            )
            context.buildah.from_scratch_image(self.name, layers=[layer], config=config)
        finally:
            layer.unlink(missing_ok=True)


_RECIPES: Final[tuple[_Recipe, ...]] = (
    _Dockerfile(AGENT_IMAGE, "Dockerfile.agent", uses_golang=True),
    _Dockerfile(OPERATOR_IMAGE, "Dockerfile.operator", uses_golang=False),
    _PUSHGATEWAY,
    _REST_SERVER,
    _COREDNS,
    _Pause(),
    _Busybox(),
)


# --- containerd -------------------------------------------------------------------------------------


def _config_digests(base: list[str], names: set[str]) -> dict[str, str]:
    """The config digest of each of ``names`` that containerd holds (``ctr images ls`` + the manifest)."""
    found: dict[str, str] = {}
    listing = baseimages.run([*base, "images", "ls"]).splitlines()[1:]
    for line in listing:
        fields = line.split()
        if len(fields) < 3 or fields[0] not in names:
            continue
        manifest = json.loads(baseimages.run([*base, "content", "get", fields[2]]))
        config = manifest.get("config", {}).get("digest")
        if isinstance(config, str):
            found[fields[0]] = config
    return found
