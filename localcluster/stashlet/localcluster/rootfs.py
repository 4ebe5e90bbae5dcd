"""The two Debian bookworm trees the base images are made from, made with debootstrap and cached as tarballs.

* :data:`SLIM_ROOTFS`: ``debootstrap --variant=minbase`` from the host's mirror, slimmed the way the
  official ``debian:*-slim`` image is (no docs, man pages, locales; apt lists removed, dpkg told to keep
  it so) and given the host's ``debian.sources`` so ``apt-get`` works in ``RUN`` steps: the root of
  ``debian:12-slim`` (see :mod:`stashlet.localcluster.baseimages`).
* :data:`FULL_ROOTFS`: minbase plus :data:`FULL_ROOTFS_INCLUDES`, never an image itself but the source
  of the distroless Python files (:mod:`stashlet.localcluster.distroless`) and of busybox.

Each tree is a tarball (numeric owners) under ``<cache>/images/rootfs`` named after a key of the suite,
the apt sources, the includes and :data:`ROOTFS_REVISION`, so a rebuilt image does not fetch Debian
again (and does not silently pick up newer packages). :func:`extracted` unpacks one for a while;
:func:`remove_tree` removes such a folder safely (nothing still mounted below it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stashlet.localcluster.buildah import ImageError, digest, images_dir, require_root_and, run, say

ROOTFS_REVISION: Final = "1"
"""Part of the debootstrap trees' key (kept apart, so a recipe change does not fetch Debian again)."""

SUITE: Final = "bookworm"
DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
HOST_SOURCES: Final = Path("/etc/apt/sources.list.d/debian.sources")

FULL_ROOTFS_INCLUDES: Final = ("python3.11", "ca-certificates", "tzdata", "netbase", "busybox-static")
"""What the second debootstrap tree adds to minbase: the source of the distroless and busybox files."""

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
        doomed = [
            c
            for sub in ("man", "info", "locale", "groff", "linda", "lintian/overrides")
            for c in (share / sub).glob("*")
        ]
        # A package's doc folder may be a symlink to another's (libstdc++6 -> gcc-14-base): its files are
        # that folder's, removed once through it.
        doomed += [
            c
            for folder in (share / "doc").iterdir()
            if folder.is_dir() and not folder.is_symlink()
            for c in folder.iterdir()
            if c.name != "copyright"
        ]
        for child in doomed:
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            else:
                child.unlink()


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
