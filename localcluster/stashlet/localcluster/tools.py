"""Locate or build the outside binaries stashlet needs: the control plane, restic, Pushgateway, helm.

Everything is built once from the Go module proxy into a cache outside the repository
(``$STASHLET_CACHE``, else ``$XDG_CACHE_HOME/stashlet``, else ``~/.cache/stashlet``), one folder per
tool and version, so a changed pin builds anew and an old build is never mistaken for the new one.
``KUBEBUILDER_ASSETS`` (the envtest convention) is honoured for etcd, kube-apiserver and kubectl.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stashlet.api import versions


class ToolError(RuntimeError):
    """A binary could not be found or built; the message says which and what to do."""


@dataclass(frozen=True)
class Tool:
    """One pinned outside program: where its binaries come from and what they are called."""

    name: str
    version: str
    binaries: tuple[str, ...]
    module: str
    """The Go module that provides it."""
    packages: tuple[str, ...]
    """Import paths of its main packages, one per binary, in the order of ``binaries``."""
    envtest: bool = False
    """True when KUBEBUILDER_ASSETS may provide these binaries."""
    ldflags: tuple[str, ...] = ()
    """Extra ``-X`` settings, e.g. the version Kubernetes binaries report (else ``v0.0.0-master``)."""
    upstream_replaces: bool = False
    """Build with the module's own ``replace`` directives (every form): its non-local ones as written (the
    versions upstream builds with), its local sub-modules at :attr:`sub_module_version`."""
    sub_module_version: str = ""
    """The published version of the sub-modules upstream replaces with local folders, when it is not the
    tool's own (a sub-module tagged on its own schedule)."""

    @property
    def folder(self) -> str:
        """Folder name under the cache: name and version."""
        return f"{self.name}-{self.version}"

    @property
    def module_version(self) -> str:
        """The version as the Go module proxy knows it: always with its leading ``v`` (restic's own
        version, ``0.18.1``, is tagged ``v0.18.1``)."""
        return self.version if self.version.startswith("v") else f"v{self.version}"


def _kubernetes_version_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    base = "k8s.io/component-base/version"
    return (
        f"-X {base}.gitVersion={version}",
        f"-X {base}.gitMajor={major}",
        f"-X {base}.gitMinor={minor}",
        f"-X {base}.gitTreeState=clean",
    )


KUBERNETES = Tool(
    name="kubernetes",
    version=versions.KUBERNETES,
    binaries=(
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
    ),
    module="k8s.io/kubernetes",
    packages=(
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kubectl",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "k8s.io/kubernetes/cmd/kubelet",
        "k8s.io/kubernetes/cmd/kube-proxy",
    ),
    envtest=True,
    ldflags=_kubernetes_version_ldflags(versions.KUBERNETES),
)
ETCD = Tool(
    name="etcd",
    version=versions.ETCD,
    binaries=("etcd",),
    module="go.etcd.io/etcd/server/v3",
    packages=("go.etcd.io/etcd/server/v3",),
    envtest=True,
)
RESTIC = Tool(
    name="restic",
    version=versions.RESTIC,
    binaries=("restic",),
    module="github.com/restic/restic",
    packages=("github.com/restic/restic/cmd/restic",),
)
REST_SERVER = Tool(
    name="rest-server",
    version=versions.RESTIC_REST_SERVER,
    binaries=("rest-server",),
    module="github.com/restic/rest-server",
    packages=("github.com/restic/rest-server/cmd/rest-server",),
)
PUSHGATEWAY = Tool(
    name="pushgateway",
    version=versions.PUSHGATEWAY,
    binaries=("pushgateway",),
    module="github.com/prometheus/pushgateway",
    packages=("github.com/prometheus/pushgateway",),
)
COREDNS = Tool(
    name="coredns",
    version=versions.COREDNS,
    binaries=("coredns",),
    module="github.com/coredns/coredns",
    packages=("github.com/coredns/coredns",),
)
CRICTL = Tool(
    name="crictl",
    version=versions.CRICTL,
    binaries=("crictl",),
    module="sigs.k8s.io/cri-tools",
    packages=("sigs.k8s.io/cri-tools/cmd/crictl",),
)
HELM = Tool(
    name="helm",
    version=versions.HELM,
    binaries=("helm",),
    module="helm.sh/helm/v3",
    packages=("helm.sh/helm/v3/cmd/helm",),
)
VERSITYGW = Tool(
    name="versitygw",
    version=versions.VERSITYGW,
    binaries=("versitygw",),
    module="github.com/versity/versitygw",
    packages=("github.com/versity/versitygw/cmd/versitygw",),
)
FAKE_GCS_SERVER = Tool(
    name="fake-gcs-server",
    version=versions.FAKE_GCS_SERVER,
    binaries=("fake-gcs-server",),
    module="github.com/fsouza/fake-gcs-server",
    packages=("github.com/fsouza/fake-gcs-server",),
)

CSI_SNAPSHOTTER_VERSION = "v8.5.0"
"""external-snapshotter (csi-snapshotter sidecar, snapshot-controller): v8.5.0 builds against k8s.io 0.35,
KUBERNETES' minor, with CSI spec v1.12.0."""
CSI_PROVISIONER_VERSION = "v6.3.0"
"""external-provisioner: v6.3.0 takes the same CSI spec (v1.12.0) and snapshot client (client/v8 v8.4.0);
built against k8s.io 0.36, and its go.mod asks for Go >= 1.26."""

CSI_SNAPSHOTTER = Tool(
    name="external-snapshotter",
    version=CSI_SNAPSHOTTER_VERSION,
    binaries=("csi-snapshotter", "snapshot-controller"),
    module="github.com/kubernetes-csi/external-snapshotter/v8",
    packages=(
        "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter",
        "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller",
    ),
    upstream_replaces=True,
    # Its ./client is published as client/v8 v8.4.0, the version v8.5.0's go.mod requires (the proxy
    # serves no client/v8 v8.5.0).
    sub_module_version="v8.4.0",
    ldflags=(f"-X main.version={CSI_SNAPSHOTTER_VERSION}",),
)
CSI_PROVISIONER = Tool(
    name="external-provisioner",
    version=CSI_PROVISIONER_VERSION,
    binaries=("csi-provisioner",),
    module="github.com/kubernetes-csi/external-provisioner/v6",
    packages=("github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner",),
    upstream_replaces=True,
    ldflags=(f"-X main.version={CSI_PROVISIONER_VERSION}",),
)

CSI_SANITY_VERSION = "v5.6.0"
"""csi-test's csi-sanity: the Kubernetes CSI project's conformance suite for a CSI driver (it speaks the
CSI gRPC API to the driver's socket the way the sidecars and the kubelet do). The local node's driver is
proven against it (tests/localcluster/test_csi_sanity.py)."""

CSI_SANITY = Tool(
    name="csi-test",
    version=CSI_SANITY_VERSION,
    binaries=("csi-sanity",),
    module="github.com/kubernetes-csi/csi-test/v5",
    packages=("github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity",),
    upstream_replaces=True,
)

ALL_TOOLS: tuple[Tool, ...] = (KUBERNETES, ETCD, RESTIC, REST_SERVER, PUSHGATEWAY, COREDNS, CRICTL, HELM)
"""What ``stashlet-cluster install-tools`` builds by default: every test session needs them."""
ADDON_TOOLS: tuple[Tool, ...] = (CSI_SNAPSHOTTER, CSI_PROVISIONER, CSI_SANITY)
"""Built only when an add-on of the local cluster asks for them (the CSI snapshot add-on, ``csi.py``, and
the conformance suite its driver is tested with)."""
STORE_TOOLS: tuple[Tool, ...] = (VERSITYGW, FAKE_GCS_SERVER)
"""Object-store servers, built when the backend tests first start them (Azurite comes from npm)."""
ENVTEST_BINARIES = frozenset({"etcd", "kube-apiserver", "kubectl"})
"""What an envtest ``KUBEBUILDER_ASSETS`` folder holds; the rest of Kubernetes is built when it lacks them."""
BY_BINARY: dict[str, Tool] = {
    binary: tool for tool in (*ALL_TOOLS, *ADDON_TOOLS, *STORE_TOOLS) for binary in tool.binaries
}


def cache_dir() -> Path:
    """The cache root, outside any repository."""
    if explicit := os.environ.get("STASHLET_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stashlet"


def tool_dir(tool: Tool) -> Path:
    """Where a tool's built binaries live."""
    return cache_dir() / "tools" / tool.folder


def find(binary: str) -> Path | None:
    """Return the path of a pinned binary if it is already here, without building anything."""
    tool = BY_BINARY[binary]
    if tool.envtest and (assets := os.environ.get("KUBEBUILDER_ASSETS")):
        candidate = Path(assets) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        if binary in ENVTEST_BINARIES:
            # envtest ships etcd, kube-apiserver and kubectl; when the user points us at assets, a
            # missing one is their mistake to hear about, not something to paper over with a build.
            raise ToolError(
                f"KUBEBUILDER_ASSETS={assets} has no executable {binary!r}; "
                "unset KUBEBUILDER_ASSETS to have stashlet build it from the Go module proxy"
            )
    candidate = tool_dir(tool) / binary
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def ensure(binary: str, *, log: bool = True) -> Path:
    """Return the path of a pinned binary, building its tool into the cache first if needed."""
    if (found := find(binary)) is not None:
        return found
    tool = BY_BINARY[binary]
    build(tool, log=log)
    built = tool_dir(tool) / binary
    if not built.is_file():
        raise ToolError(f"building {tool.folder} did not produce {binary}")
    return built


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock, so two processes never build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(tool: Tool, *, log: bool = True) -> None:
    """Build a tool from the Go module proxy into its cache folder (atomically: all or nothing)."""
    go = shutil.which("go")
    if go is None:
        raise ToolError(
            f"cannot build {tool.folder}: no 'go' on PATH. Install Go >= {versions.GO_TOOLCHAIN_MIN} "
            "or point KUBEBUILDER_ASSETS at prebuilt envtest binaries"
        )
    final = tool_dir(tool)
    with locked(cache_dir() / "tools" / f".{tool.folder}.lock"):
        if all((final / b).is_file() for b in tool.binaries):
            return
        if log:
            print(f"stashlet: building {tool.folder} from the Go module proxy (once) ...", file=sys.stderr)
        workdir = Path(tempfile.mkdtemp(prefix=f"build-{tool.folder}-", dir=final.parent))
        try:
            out = workdir / "bin"
            out.mkdir()
            env = _go_env()
            _build_in_shim_module(go, tool, workdir, out, env)
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise ToolError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


_REPLACE_LOCAL = re.compile(r"^\s*(\S+)\s+=>\s+\.\.?/\S*\s*$", re.MULTILINE)


def _build_in_shim_module(go: str, tool: Tool, workdir: Path, out: Path, env: dict[str, str]) -> None:
    """Build a tool's main packages from a throw-away module that requires the tool at its pin.

    Not ``go install pkg@version``: that refuses modules whose go.mod replaces their own sub-modules
    with local folders (Kubernetes, etcd), and it asks the proxy for version lists that it does not
    serve for every module. The shim replaces each such sub-module with its published version.
    """
    info = json.loads(
        _run([go, "mod", "download", "-json", f"{tool.module}@{tool.module_version}"], cwd=workdir, env=env)
    )
    upstream = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go\s+(\S+)", upstream, re.MULTILINE)
    sub_version = _sub_module_version(tool)
    if tool.upstream_replaces:
        replaces = _upstream_replaces(go, Path(info["GoMod"]), sub_version, workdir, env)
    else:
        replaces = [f"\t{m} => {m} {sub_version}" for m in _REPLACE_LOCAL.findall(upstream)]
    (workdir / "go.mod").write_text(
        f"module stashlet.local/build/{tool.name}\n\ngo {go_line.group(1) if go_line else '1.22'}\n\n"
        f"require {tool.module} {tool.module_version}\n\nreplace (\n" + "\n".join(replaces) + "\n)\n"
    )
    imports = "\n".join(f'\t_ "{p}"' for p in tool.packages)
    (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run([go, "mod", "tidy"], cwd=workdir, env=env)
    # One package: name the binary ourselves (go would call go.etcd.io/etcd/server/v3 "server").
    target = str(out / tool.binaries[0]) if len(tool.packages) == 1 else str(out) + "/"
    ldflags = " ".join(("-s", "-w", *tool.ldflags))
    _run(
        [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", target, *tool.packages], cwd=workdir, env=env
    )


def _upstream_replaces(
    go: str, go_mod: Path, sub_version: str, workdir: Path, env: dict[str, str]
) -> list[str]:
    """Every ``replace`` of an upstream go.mod as a shim line: local folders become the published
    sub-module at ``sub_version``, the others stay as upstream wrote them."""
    parsed = json.loads(_run([go, "mod", "edit", "-json", str(go_mod)], cwd=workdir, env=env))
    lines = []
    for replace in parsed.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        left = f"{old['Path']} {old['Version']}" if old.get("Version") else old["Path"]
        if new["Path"].startswith(("./", "../")):
            lines.append(f"\t{left} => {old['Path']} {sub_version}")
        else:
            lines.append(f"\t{left} => {new['Path']} {new['Version']}")
    return lines


def _sub_module_version(tool: Tool) -> str:
    if tool is KUBERNETES:
        return versions.KUBERNETES_STAGING
    return tool.sub_module_version or tool.module_version
