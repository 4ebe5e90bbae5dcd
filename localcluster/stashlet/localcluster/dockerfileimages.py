"""The agent and operator images, built with ``buildah bud`` from the repository's Dockerfiles.

:class:`DockerfileImage` builds ``Dockerfile.agent`` or ``Dockerfile.operator`` (``--pull=never``) over
the locally made base images (:mod:`stashlet.localcluster.baseimages`). Key: the Dockerfile,
every file below the paths its ``COPY`` lines take from the context (so the agent's image changes with
``agent/`` alone) that git tracks or does not ignore, the build arguments and the base images' keys.
The build context holds exactly those files,
and the archive is named after the key of the copies really built (the checkout may change meanwhile).

``RUN`` steps use ``--isolation chroot`` and the host network. apt reaches the Debian mirror over plain
http; pip (Debian's pip reads ``/etc/ssl/certs/ca-certificates.crt``) and go reach PyPI and the module
proxy through this machine's TLS-intercepting proxy, which only the host's CA bundle trusts, so every
``RUN`` sees throwaway copies of that bundle (see :meth:`DockerfileImage._bud_options`). The host's Go
caches are *not* mounted: buildah leaves every mount point that did not exist behind as an empty folder
in the committed layer, and the final, distroless stage would then ship ``/go/pkg/mod``; restic is
downloaded and built inside the golang stage instead, once, and ``--layers`` keeps that stage for later
builds.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stashlet.api import versions
from stashlet.localcluster import baseimages, checkout
from stashlet.localcluster.baseimages import RECIPE_REVISION
from stashlet.localcluster.buildah import ImageError, digest, tmp_dir
from stashlet.localcluster.imagerecipes import Context, Recipe, slug

"""The source checkout this module lies in (its Dockerfiles, sources and chart)."""
HOST_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
"""The only bundle that trusts this machine's TLS-intercepting proxy; builds see a copy of it."""


def copied_sources(dockerfile_text: str) -> list[str]:
    """The checkout paths a Dockerfile's ``COPY`` lines take from the build context (not ``--from``)."""
    sources: list[str] = []
    for line in dockerfile_text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [w.removesuffix("/").removeprefix("./") for w in words[1:-1] if not w.startswith("--")]
    return sources


def context_files(dockerfile_text: str) -> list[str]:
    """Files below the Dockerfile's ``COPY`` sources that git tracks or does not ignore (sorted)."""
    sources = copied_sources(dockerfile_text)
    root = checkout.root()
    found: list[str] = []
    if (root / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                *sources,
            ],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            found = [p for p in proc.stdout.decode().split("\0") if p]
    if not found:
        for source in sources:
            top = root / source
            paths = [top] if top.is_file() else list(top.rglob("*"))
            found += [str(p.relative_to(root)) for p in paths if p.is_file()]
    return sorted(
        {
            p
            for p in found
            if (root / p).is_file() and "__pycache__" not in Path(p).parts and not p.endswith(".pyc")
        }
    )


@dataclass(frozen=True)
class DockerfileImage(Recipe):
    """An image built from one of the repository's Dockerfiles over the local base images."""

    name: str
    dockerfile: str
    """The Dockerfile's path in the checkout."""
    uses_golang: bool
    """True when it has a golang stage (which gets the host's Go and restic's version as build args)."""

    def _build_args(self, context: Context) -> list[str]:
        if not self.uses_golang:
            return []
        return [f"GO_VERSION={context.go.minor}", f"RESTIC_VERSION={versions.RESTIC}"]

    def key(self, context: Context) -> str:
        """The Dockerfile, the context's files, the build arguments and the base images' keys."""
        files = context_files((checkout.root() / self.dockerfile).read_text())
        return self._key(context, checkout.root(), self.dockerfile, files)

    def _key(self, context: Context, root: Path, dockerfile: str, files: list[str]) -> str:
        parts: list[str | bytes] = [
            "dockerfile",
            RECIPE_REVISION,
            self.name,
            (root / dockerfile).read_bytes(),
        ]
        for name in files:
            parts += [name, hashlib.sha256((root / name).read_bytes()).hexdigest()]
        parts += [*self._build_args(context), baseimages.debian_key(), baseimages.distroless_key()]
        if self.uses_golang:
            parts.append(baseimages.golang_key(context.go))
        return digest(*parts)

    def build(self, context: Context, log_file: Path) -> str:
        """Make the bases, copy the context, ``buildah bud`` each named stage and then the image."""
        if not (checkout.root() / self.dockerfile).is_file():
            raise ImageError(
                f"{self.name} is built from {self.dockerfile} of a source checkout; none at {checkout.root()}"
            )
        buildah = context.buildah
        baseimages.ensure_debian(buildah, log=context.log)
        baseimages.ensure_distroless(buildah, log=context.log)
        if self.uses_golang:
            baseimages.ensure_golang(buildah, context.go, log=context.log)
        if not HOST_CA_BUNDLE.is_file():
            raise ImageError(f"building {self.name} needs the host's CA bundle {HOST_CA_BUNDLE}")
        work = Path(tempfile.mkdtemp(prefix=f"context-{slug(self.name)}-", dir=tmp_dir()))
        try:
            context_dir = work / "context"
            context_dir.mkdir()
            shutil.copy2(checkout.root() / self.dockerfile, context_dir / "Dockerfile")
            files = context_files((context_dir / "Dockerfile").read_text())
            for name in files:
                (context_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(checkout.root() / name, context_dir / name)
            # The key of what is really built: files may change while we copy them (others edit the
            # checkout), and the archive must be named after the content it holds.
            built_key = self._key(context, context_dir, "Dockerfile", files)
            options = self._bud_options(context, work)
            # Tag each named stage first (cheap with --layers: the full build reuses them), so pruning
            # dangling images later keeps the slow stages' cache (restic's build, apt's Python).
            text = (context_dir / "Dockerfile").read_text()
            for stage in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, re.MULTILINE | re.IGNORECASE):
                tag = f"localhost/stashlet-cache/{slug(self.name)}-{stage.lower()}"
                buildah(*options, "--target", stage, "--tag", tag, context_dir, log_file=log_file)
            buildah(*options, "--tag", self.name, context_dir, log_file=log_file)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return built_key

    def _bud_options(self, context: Context, work: Path) -> list[str | Path]:
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
            shutil.copyfile(HOST_CA_BUNDLE, folder / name)
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
