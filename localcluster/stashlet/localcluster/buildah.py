"""The machinery every image build here shares: buildah on a private storage, and its small helpers.

* :class:`Buildah` runs buildah against its own storage under the cache (``<cache>/images/storage``),
  never the host's, with big temporary files in ``<cache>/images/tmp``.
* :func:`run` runs any command and turns a failure into :class:`ImageError` carrying the command and the
  tail of its output; :func:`require_root_and` checks the preconditions up front.
* :func:`locked` serializes builds between processes; :func:`digest` makes the cache keys;
  :func:`images_dir` is where everything lives (:func:`tmp_dir` the temporary files); :func:`say`
  prints progress.
* ``tar_*`` write the entries of hand-made image layers (root-owned, mtime 0).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from stashlet.localcluster import tools

SYSTEM_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` of every image made here (as Debian's and upstream's images set it)."""


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
    """Everything the image modules make: ``<cache>/images``."""
    return tools.cache_dir() / "images"


def tmp_dir() -> Path:
    """Where builds put big temporary files: ``<cache>/images/tmp``, made when missing."""
    folder = images_dir() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def say(log: bool, message: str) -> None:
    """A progress line on stderr, in the style of ``tools``."""
    if log:
        print(f"stashlet: {message}", file=sys.stderr, flush=True)


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
    """buildah with a private storage under the cache (``<cache>/images/storage``), not the host's.

    The overlay driver when the kernel has overlayfs (fast: no copy per layer), else vfs. Big temporary
    files go to ``<cache>/images/tmp`` (buildah would use /var/tmp). One global trace remains:
    containers/image keeps its small blob-info cache in ``/var/lib/containers/cache`` for root, and
    buildah offers no option to move it.
    """

    def __init__(self) -> None:
        base = images_dir() / "storage"
        driver = "overlay" if "overlay" in Path("/proc/filesystems").read_text() else "vfs"
        self.tmp = tmp_dir()
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

    def attempt(self, *args: str | Path) -> bool:
        """Run one buildah command whose failure is no error (its output is dropped); True if it worked."""
        argv = [*self.argv, *map(str, args)]
        return subprocess.run(argv, capture_output=True, check=False, env=self.env).returncode == 0

    def has_image(self, name: str) -> bool:
        """True when the storage holds an image of that name."""
        return self.attempt("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)

    @contextlib.contextmanager
    def working_container(self, *from_args: str) -> Iterator[str]:
        """A working container (``buildah from <from_args>``), removed if the block fails; the block
        ends by committing it with ``--rm``."""
        container = self("from", *from_args).strip()
        try:
            yield container
        except BaseException:
            self.attempt("rm", container)
            raise

    def from_scratch_image(self, name: str, *, layers: Iterable[Path], config: Sequence[str]) -> None:
        """Commit ``name`` from scratch: tarball layers (unpacked at /) and ``buildah config`` options."""
        with self.working_container("--quiet", "scratch") as container:
            for layer in layers:
                self("add", "--quiet", container, layer, "/")
            if config:
                self("config", *config, container)
            self("commit", "--quiet", "--rm", container, name)


# --- layer tarballs ---------------------------------------------------------------------------------


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


def tar_executable(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    """Add a host file as a root-owned executable (mode 755, its own mtime)."""
    info = tar.gettarinfo(str(source), arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755
    with source.open("rb") as handle:
        tar.addfile(info, handle)
