"""The base images the Dockerfiles name, made locally because no registry is reachable here.

``Dockerfile.agent`` and ``Dockerfile.operator`` start ``FROM debian:12-slim``,
``FROM golang:<GO_VERSION>-bookworm`` and ``FROM gcr.io/distroless/python3-debian12:nonroot``. None of
them can be pulled on a machine without a registry, so this module makes look-alikes under those exact
names in a private buildah storage (``<cache>/images/storage``) from Debian packages, which the
configured Debian mirror does serve:

* ``debian:12-slim``: ``debootstrap --variant=minbase bookworm`` from the host's mirror, slimmed the
  way the official image is (no docs, man pages, locales; apt lists removed, dpkg told to keep it so)
  and given the host's ``debian.sources`` so ``apt-get`` works in ``RUN`` steps.
* ``golang:<host major.minor>-bookworm``: that image plus a copy of the host's Go (``go env GOROOT``)
  at ``/usr/local/go``, with ``GOPATH=/go``, ``PATH`` and ``GOTOOLCHAIN=local`` as in the official
  image. It is named after the Go it really holds: the Dockerfile's ``ARG GO_VERSION`` (a floor) is
  overridden with ``--build-arg GO_VERSION=<host major.minor>`` rather than tagging 1.26 as 1.25.
  It has no ``ca-certificates``: Debian's bundle would not help here (outbound HTTPS passes a
  TLS-intercepting proxy that only the host's bundle trusts), so every ``RUN`` sees a throwaway copy of
  the host's bundle instead (see ``images``).
* ``gcr.io/distroless/python3-debian12:nonroot``: only the files of the Debian packages Python 3.11
  needs at run time (``dpkg -L`` of :data:`DISTROLESS_PACKAGES` in a second debootstrap tree, checked
  against ``ldd`` of the interpreter and every ``lib-dynload`` module), the CA bundle, ``passwd`` and
  ``group`` with root, nobody and nonroot (65532), ``/tmp`` 1777, ``USER 65532``; no shell, no coreutils.

Each base carries a content key (of its recipe and inputs) in a second tag,
``localhost/stashlet-base/<name>:<key>``; a base is rebuilt only when that tag is missing. The two
debootstrap trees are cached as tarballs under ``<cache>/images/rootfs``, so a rebuilt base does not
fetch Debian again (and does not silently pick up newer packages).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stashlet.api import versions
from stashlet.localcluster import tools

RECIPE_REVISION: Final = "2"
"""Part of every image's cache key: bump it when a recipe here or in ``images`` changes what it makes."""
ROOTFS_REVISION: Final = "1"
"""Part of the debootstrap trees' key (kept apart, so a recipe change does not fetch Debian again)."""

SUITE: Final = "bookworm"
DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
HOST_SOURCES: Final = Path("/etc/apt/sources.list.d/debian.sources")
HOST_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
"""The only bundle that trusts this machine's TLS-intercepting proxy; builds see a copy of it."""

DEBIAN_IMAGE: Final = "docker.io/library/debian:12-slim"
DISTROLESS_PYTHON_IMAGE: Final = "gcr.io/distroless/python3-debian12:nonroot"

DISTROLESS_PACKAGES: Final = (
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "libssl3",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libuuid1",
    "libcrypt1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libdb5.3",
    # _nis needs these (lib-dynload/_nis links libnsl and libtirpc, which pulls in Kerberos).
    "libnsl2",
    "libtirpc3",
    "libtirpc-common",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libkrb5support0",
    "libkeyutils1",
    "libcom-err2",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
    "python3.11",
    "media-types",
    "ca-certificates",
    "tzdata",
    "netbase",
)
"""The Debian packages whose files make the distroless Python image (Python 3.11 and what it loads)."""

FULL_ROOTFS_INCLUDES: Final = ("python3.11", "ca-certificates", "tzdata", "netbase", "busybox-static")
"""What the second debootstrap tree adds to minbase: the source of the distroless and busybox files."""

_DISTROLESS_DROP: Final = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/locale/",
    "/usr/share/lintian/",
    "/usr/share/bug/",
    "/usr/sbin/update-ca-certificates",
    "/etc/ca-certificates/update.d/",
)
_MERGED_USR: Final = ("bin", "sbin", "lib", "lib64")

NSS_USERS: Final = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
NSS_GROUPS: Final = "root:x:0:\ntty:x:5:\nstaff:x:50:\nnobody:x:65534:\nnonroot:x:65532:\n"

_SLIM_DPKG_EXCLUDES: Final = """\
# The "slim" variant, as in the official debian:*-slim images: keep docs, man pages and locales out.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
_APT_CLEAN: Final = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""  # noqa: E501


class ImageError(tools.ToolError):
    """An image could not be built or loaded; the message names the command and ends with its output."""


def digest(*parts: str | bytes) -> str:
    """A sha256 over ``parts`` (length-prefixed, so ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def images_dir() -> Path:
    """Everything this module and ``images`` make: ``<cache>/images``."""
    return tools.cache_dir() / "images"


def say(log: bool, message: str) -> None:
    """A progress line on stderr, in the style of ``tools``."""
    if log:
        print(f"stashlet: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock: two processes never build images at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    argv: Sequence[str | Path], *, log_file: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a command; return its stdout, or raise :class:`ImageError` with the command and its output's tail.

    With ``log_file`` the output (stdout and stderr) is appended there instead, for long builds, and the
    error names the file.
    """
    args = [str(a) for a in argv]
    try:
        if log_file is None:
            proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
            if proc.returncode != 0:
                raise ImageError(
                    f"{' '.join(args)} failed with exit code {proc.returncode}:\n"
                    f"{_tail(proc.stderr or proc.stdout)}"
                )
            return proc.stdout
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as out:
            code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False, env=env).returncode
    except FileNotFoundError as exc:
        raise ImageError(f"cannot run {args[0]!r}: {exc.strerror}") from None
    if code != 0:
        tail = _tail(log_file.read_text(errors="replace"))
        raise ImageError(f"{' '.join(args)} failed with exit code {code} (full log: {log_file}):\n{tail}")
    return ""


def require_root_and(*programs: str) -> None:
    """Fail clearly unless we are root and every program is on PATH."""
    if os.geteuid() != 0:
        raise ImageError("building images needs root (buildah's own storage, debootstrap, chroot)")
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise ImageError(f"building images needs {', '.join(missing)} on PATH (Debian: apt-get install …)")


class Buildah:
    """buildah with a private storage under the cache, so nothing in /var/lib/containers is used.

    The overlay driver when the kernel has overlayfs (fast: no copy per layer), else vfs. Big temporary
    files go to ``<cache>/images/tmp`` (buildah would use /var/tmp).
    """

    def __init__(self) -> None:
        base = images_dir() / "storage"
        driver = "overlay" if "overlay" in Path("/proc/filesystems").read_text() else "vfs"
        self.tmp = images_dir() / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.argv = [
            "buildah",
            "--root",
            str(base / "root"),
            "--runroot",
            str(base / "run"),
            "--storage-driver",
            driver,
        ]
        self.env = {**os.environ, "TMPDIR": str(self.tmp)}

    def __call__(self, *args: str | Path, log_file: Path | None = None) -> str:
        """Run one buildah command against the private storage."""
        return run([*self.argv, *map(str, args)], log_file=log_file, env=self.env)

    def has_image(self, name: str) -> bool:
        """True when the storage holds an image of that name."""
        argv = [*self.argv, "inspect", "--type", "image", "--format", "{{.FromImageID}}", name]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=self.env)
        return proc.returncode == 0

    def from_scratch_image(self, name: str, *, layers: Iterable[Path], config: Sequence[str]) -> None:
        """Commit ``name`` from scratch: tarball layers (unpacked at /) and ``buildah config`` options."""
        container = self("from", "--quiet", "scratch").strip()
        try:
            for layer in layers:
                self("add", "--quiet", container, layer, "/")
            if config:
                self("config", *config, container)
            self("commit", "--quiet", "--rm", container, name)
        except BaseException:
            subprocess.run([*self.argv, "rm", container], capture_output=True, check=False, env=self.env)
            raise


# --- tarball helpers --------------------------------------------------------------------------------


def tar_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    """Add a directory entry."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
    tar.addfile(info)


def tar_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """Add a root-owned file with the given content."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def tar_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    """Add a symlink."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
    tar.addfile(info)


# --- debootstrap trees ------------------------------------------------------------------------------


def _host_sources() -> str:
    """The apt sources for the images: the host's deb822 ``debian.sources`` when it is bookworm's."""
    if HOST_SOURCES.is_file() and SUITE in (text := HOST_SOURCES.read_text()):
        return text
    return (
        "Types: deb\n"
        f"URIs: {DEFAULT_MIRROR}\n"
        f"Suites: {SUITE} {SUITE}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian-security\n"
        f"Suites: {SUITE}-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _mirror(sources: str) -> str:
    """The first ``URIs:`` of a stanza whose ``Suites:`` has plain ``bookworm`` (debootstrap's mirror)."""
    for stanza in sources.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
        )
        if SUITE in fields.get("Suites", "").split() and (uris := fields.get("URIs", "").split()):
            return uris[0]
    return DEFAULT_MIRROR


@dataclass(frozen=True)
class Rootfs:
    """A debootstrap tree cached as a tarball (numeric owners), keyed by how it was made."""

    name: str
    includes: tuple[str, ...]
    slim: bool

    @property
    def key(self) -> str:
        """Content key: suite, mirror sources, includes and recipe."""
        sources = _host_sources()
        return digest("rootfs", ROOTFS_REVISION, SUITE, sources, ",".join(self.includes), str(self.slim))

    @property
    def tarball(self) -> Path:
        """Where the tree is cached."""
        return images_dir() / "rootfs" / f"{SUITE}-{self.name}-{self.key[:16]}.tar"

    def ensure(self, *, log: bool) -> Path:
        """Return the tarball, running debootstrap first if it is not cached."""
        if self.tarball.is_file():
            return self.tarball
        require_root_and("debootstrap", "tar", "chroot")
        folder = self.tarball.parent
        folder.mkdir(parents=True, exist_ok=True)
        sources = _host_sources()
        mirror = _mirror(sources)
        started = time.monotonic()
        say(log, f"debootstrap {SUITE} ({self.name}) from {mirror} (once) ...")
        work = Path(tempfile.mkdtemp(prefix=f"tmp-{self.name}-", dir=folder))
        try:
            tree = work / "tree"
            debs = images_dir() / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            argv = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}"]
            if self.includes:
                argv.append("--include=" + ",".join(self.includes))
            run([*argv, SUITE, tree, mirror], log_file=work / "debootstrap.log")
            _unmount_under(tree)
            _finish_tree(tree, sources, slim=self.slim)
            partial = work / "rootfs.tar"
            run(["tar", "--numeric-owner", "--one-file-system", "-C", tree, "-cf", partial, "."])
            partial.rename(self.tarball)
        finally:
            remove_tree(work)
        say(log, f"debootstrap {self.name}: {time.monotonic() - started:.0f} s")
        return self.tarball


SLIM_ROOTFS: Final = Rootfs("minbase", (), slim=True)
FULL_ROOTFS: Final = Rootfs("python", FULL_ROOTFS_INCLUDES, slim=False)


def _finish_tree(tree: Path, sources: str, *, slim: bool) -> None:
    """Make a fresh debootstrap tree an image root: apt sources, no caches, lists, logs or host files."""
    (tree / "etc/apt/sources.list").unlink(missing_ok=True)
    (tree / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"):
        for path in tree.glob(pattern):
            if path.is_file() and not path.is_symlink():
                path.unlink()
    for path in (tree / "var/log").rglob("*"):
        if path.is_file():
            path.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):
        (tree / name).unlink(missing_ok=True)
    for child in (tree / "dev").iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    if slim:
        (tree / "etc/dpkg/dpkg.cfg.d/docker").write_text(_SLIM_DPKG_EXCLUDES)
        (tree / "etc/apt/apt.conf.d/docker-clean").write_text(_APT_CLEAN)
        share = tree / "usr/share"
        for sub in ("man", "info", "locale", "groff", "linda", "lintian/overrides"):
            for child in (share / sub).glob("*"):
                remove_tree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for child in (share / "doc").glob("*/*"):
            if child.name != "copyright":
                remove_tree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == prefix[:-1]:
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_under(path: Path) -> None:
    for point in _mounts_under(path):
        subprocess.run(["umount", point], capture_output=True, check=False)


def remove_tree(path: Path) -> None:
    """``rm -rf`` that first unmounts what a failed debootstrap may have left (/proc, /sys) and refuses
    to descend into anything still mounted."""
    if not path.exists() and not path.is_symlink():
        return
    _unmount_under(path)
    if left := _mounts_under(path):
        raise ImageError(f"not removing {path}: still mounted under it: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def extracted(rootfs: Rootfs, *, log: bool) -> Iterator[Path]:
    """A cached debootstrap tree unpacked into a temporary folder (removed afterwards)."""
    tarball = rootfs.ensure(log=log)
    work = Path(tempfile.mkdtemp(prefix=f"tmp-{rootfs.name}-x-", dir=tarball.parent))
    try:
        run(["tar", "--numeric-owner", "-xpf", tarball, "-C", work])
        yield work
    finally:
        remove_tree(work)


# --- the three bases --------------------------------------------------------------------------------


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
            subprocess.run([*buildah.argv, "rmi", tag], capture_output=True, check=False, env=buildah.env)
        subprocess.run([*buildah.argv, "rmi", "--prune"], capture_output=True, check=False, env=buildah.env)
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


def ensure_debian(buildah: Buildah, *, log: bool) -> None:
    """Make sure ``debian:12-slim`` in the private storage is the one of the current recipe."""
    keyed = _keyed("debian", debian_key())
    if not buildah.has_image(keyed):
        tarball = SLIM_ROOTFS.ensure(log=log)
        say(log, f"building base image {DEBIAN_IMAGE} (once) ...")
        started = time.monotonic()
        config = [
            "--cmd",
            '["bash"]',
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        buildah.from_scratch_image(keyed, layers=[tarball], config=config)
        say(log, f"built {DEBIAN_IMAGE} in {time.monotonic() - started:.0f} s")
    buildah("tag", keyed, DEBIAN_IMAGE)


def ensure_golang(buildah: Buildah, go: HostGo, *, log: bool) -> None:
    """Make sure ``golang:<host minor>-bookworm`` holds the host's Go on top of debian:12-slim."""
    ensure_debian(buildah, log=log)
    keyed = _keyed("golang", golang_key(go))
    if not buildah.has_image(keyed):
        say(log, f"building base image {go.image} from the host's {go.version} (once) ...")
        started = time.monotonic()
        gopath = images_dir() / "tmp" / "gopath.tar"
        with tarfile.open(gopath, "w") as tar:
            for name in ("go", "go/bin", "go/src"):
                tar_dir(tar, name, mode=0o1777)
        container = buildah("from", "--pull=never", "--quiet", _keyed("debian", debian_key())).strip()
        try:
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
                "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--workingdir",
                "/go",
                container,
            )
            buildah("commit", "--quiet", "--rm", container, keyed)
            say(log, f"built {go.image} in {time.monotonic() - started:.0f} s")
        except BaseException:
            subprocess.run(
                [*buildah.argv, "rm", container], capture_output=True, check=False, env=buildah.env
            )
            raise
        finally:
            gopath.unlink(missing_ok=True)
    buildah("tag", keyed, go.image)


def ensure_distroless(buildah: Buildah, *, log: bool) -> None:
    """Make sure ``gcr.io/distroless/python3-debian12:nonroot`` is the one of the current recipe."""
    keyed = _keyed("distroless-python3", distroless_key())
    if not buildah.has_image(keyed):
        with extracted(FULL_ROOTFS, log=log) as tree:
            say(log, f"building base image {DISTROLESS_PYTHON_IMAGE} (once) ...")
            started = time.monotonic()
            layer = images_dir() / "tmp" / "distroless.tar"
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
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env",
                    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                ]
                buildah.from_scratch_image(keyed, layers=[layer], config=config)
                say(log, f"built {DISTROLESS_PYTHON_IMAGE} in {time.monotonic() - started:.0f} s")
            finally:
                layer.unlink(missing_ok=True)
    buildah("tag", keyed, DISTROLESS_PYTHON_IMAGE)


def package_files(tree: Path, package: str) -> list[str]:
    """The paths dpkg lists for an installed package (``dpkg -L``, read from its ``.list`` file)."""
    info = tree / "var/lib/dpkg/info"
    for candidate in (info / f"{package}:amd64.list", info / f"{package}.list"):
        if candidate.is_file():
            return [line for line in candidate.read_text().splitlines() if line and line != "/."]
    raise ImageError(f"package {package} is not installed in {tree} (debootstrap --include it)")


def _canonical(tree: Path, path: str) -> str:
    """The path without merged-usr links (``/lib/x`` is ``/usr/lib/x``); refuses other symlinked parents."""
    parts = path.strip("/").split("/")
    if parts[0] in _MERGED_USR and (tree / parts[0]).is_symlink():
        parts = ["usr", *parts]
    parent = tree
    for part in parts[:-1]:
        parent = parent / part
        if parent.is_symlink():
            raise ImageError(f"{path} in {tree} lies below a symlink ({parent}); the recipe needs updating")
    return "/" + "/".join(parts)


def distroless_paths(tree: Path) -> list[str]:
    """Every path of the distroless image that comes from the tree, parents before children."""
    wanted: set[str] = set()
    for package in DISTROLESS_PACKAGES:
        for path in package_files(tree, package):
            if path.startswith(_DISTROLESS_DROP) and not path.endswith("/copyright"):
                continue
            wanted.add(_canonical(tree, path))
    # Made by maintainer scripts, so dpkg does not list them: the CA bundle and its hash links, and the
    # byte code of the standard library (py3compile), which saves every start compiling it again.
    generated = list((tree / "etc/ssl/certs").rglob("*"))
    for directory in [p for p in wanted if p.startswith("/usr/lib/python3")]:
        cache = tree / directory.lstrip("/") / "__pycache__"
        if cache.is_dir() and not cache.is_symlink():
            generated.append(cache)
            generated.extend(cache.iterdir())
    wanted.update("/" + str(p.relative_to(tree)) for p in generated)
    wanted.update({"/etc/os-release", "/usr/lib/os-release", "/etc/debian_version"})
    for path in list(wanted):
        parent = path.rsplit("/", 1)[0]
        while parent:
            wanted.add(parent)
            parent = parent.rsplit("/", 1)[0]
    wanted.update(f"/{link}" for link in _MERGED_USR if (tree / link).is_symlink())
    missing = sorted(
        p for p in wanted if not (tree / p.lstrip("/")).is_symlink() and not (tree / p.lstrip("/")).exists()
    )
    if missing:
        raise ImageError(f"files listed by dpkg are missing from {tree}: {', '.join(missing[:10])}")
    check_shared_libraries(tree, wanted)
    return sorted(wanted)


def check_shared_libraries(tree: Path, wanted: set[str]) -> None:
    """Raise unless every library ``ldd`` finds for python3.11 and its lib-dynload modules is wanted."""
    modules = (tree / "usr/lib/python3.11/lib-dynload").glob("*.so")
    elves = ["/usr/bin/python3.11", *sorted("/" + str(p.relative_to(tree)) for p in modules)]
    output = run(["chroot", tree, "/usr/bin/ldd", *elves])
    needed: set[str] = set()
    for line in output.splitlines():
        fields = line.split()
        if "=>" in fields and len(fields) > fields.index("=>") + 1:
            target = fields[fields.index("=>") + 1]
            if target.startswith("/"):
                needed.add(target)
        elif fields and fields[0].startswith("/") and not fields[0].endswith(":"):
            needed.add(fields[0])
    absent = [library for library in sorted(needed) if not set(_link_chain(tree, library)) <= wanted]
    if absent:
        raise ImageError(f"python3.11 needs libraries outside DISTROLESS_PACKAGES: {', '.join(absent)}")


def _link_chain(tree: Path, path: str) -> list[str]:
    """``path`` and every symlink hop from it to a file, inside ``tree`` (canonical paths)."""
    chain = [_canonical(tree, path)]
    while (tree / chain[-1].lstrip("/")).is_symlink() and len(chain) < 40:
        target = os.readlink(tree / chain[-1].lstrip("/"))
        joined = target if target.startswith("/") else f"{chain[-1].rsplit('/', 1)[0]}/{target}"
        chain.append(_canonical(tree, os.path.normpath(joined)))
    return chain


def write_distroless_layer(tree: Path, layer: Path) -> None:
    """Write the distroless Python image's one layer: the package files plus users, /tmp and python3."""
    paths = distroless_paths(tree)
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            tar.add(tree / path.lstrip("/"), arcname=path.lstrip("/"), recursive=False)
        # /usr/local/share/ca-certificates exists as on any Debian with ca-certificates, and so that the
        # build's mount of the host's CA there leaves no mount point behind in derived images.
        for directory in (
            "/var",
            "/var/lib",
            "/var/lib/dpkg",
            "/home",
            "/usr/local",
            "/usr/local/share",
            "/usr/local/share/ca-certificates",
        ):
            if directory not in paths:
                tar_dir(tar, directory.lstrip("/"))
        tar_file(tar, "etc/passwd", NSS_USERS.encode())
        tar_file(tar, "etc/group", NSS_GROUPS.encode())
        tar_file(tar, "etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
        tar_dir(tar, "tmp", mode=0o1777)
        tar_dir(tar, "root", mode=0o700)
        tar_dir(tar, "home/nonroot", mode=0o700, uid=65532, gid=65532)
        tar_symlink(tar, "usr/bin/python3", "python3.11")
        status = _dpkg_status(tree)
        tar_dir(tar, "var/lib/dpkg/status.d")
        for package in DISTROLESS_PACKAGES:
            if package in status:
                tar_file(tar, f"var/lib/dpkg/status.d/{package}", status[package].encode())


def _dpkg_status(tree: Path) -> dict[str, str]:
    """The dpkg status stanzas by package name (distroless ships them in status.d for scanners)."""
    stanzas: dict[str, str] = {}
    for stanza in (tree / "var/lib/dpkg/status").read_text().split("\n\n"):
        for line in stanza.splitlines():
            if line.startswith("Package: "):
                stanzas[line.removeprefix("Package: ").strip()] = stanza.strip() + "\n"
                break
    return stanzas
