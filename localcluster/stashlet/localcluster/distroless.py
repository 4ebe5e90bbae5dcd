"""What goes into the distroless Python base image: the files of its Debian packages, nothing else.

:func:`write_distroless_layer` writes the image's one layer from an extracted ``rootfs.FULL_ROOTFS``
tree: the files ``dpkg -L`` lists for :data:`DISTROLESS_PACKAGES` (less docs and the CA-update hooks)
and what their maintainer scripts made (the CA bundle, the standard library's byte code), checked
against ``ldd`` of the interpreter and every ``lib-dynload`` module; then ``passwd`` and ``group`` with
root, nobody and nonroot (65532) (:data:`NSS_USERS`, :data:`NSS_GROUPS`; the scratch images share the
users), ``/tmp`` 1777, ``/usr/bin/python3`` and the packages' dpkg status stanzas in ``status.d`` as
upstream ships them. No shell, no coreutils.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Final

from stashlet.localcluster.buildah import ImageError, run, tar_dir, tar_file, tar_symlink

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
