"""A real Kubernetes node on this machine: containerd + runc + CNI, kubelet, kube-proxy, kube-scheduler.

The node runs real pods from real images: stashlet's own, built from its Dockerfiles and loaded into
containerd (see :mod:`stashlet.localcluster.images`). Its network is a Linux bridge with the node's
address, on which the API server also listens, so pods reach it through the ``kubernetes`` Service.
CoreDNS runs as a pod and resolves Service names; the controller manager's host-path provisioner binds
PersistentVolumeClaims of the default StorageClass ``standard``.

There is one node per machine: kubelet's port and some of its paths are fixed. Every host change is
recorded before the node starts and undone when it stops (:mod:`stashlet.localcluster.hostchanges`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stashlet.localcluster import images, tools
from stashlet.localcluster.hostchanges import HostRecord
from stashlet.localcluster.processes import ManagedProcess, free_port, wait_until

NODE_NAME = "stashlet-node"
BRIDGE = "stashlet0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
CLUSTER_DNS = "10.0.0.10"
HOST_RECORD = "host-record.json"

DEBIAN_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
}
"""What the node needs from the host, and the Debian package that provides it."""


class NodeUnavailable(RuntimeError):
    """This machine cannot run a real node; the message says what is missing and what still runs."""


def preflight() -> None:
    """Raise :class:`NodeUnavailable` with one clear line when a real node cannot run here."""
    still = "the control plane alone still runs: `stashlet-cluster up --no-node`"
    if os.geteuid() != 0:
        raise NodeUnavailable(f"a real node needs root (containerd, kubelet, iptables); {still}")
    missing = [
        package
        for thing, package in DEBIAN_PACKAGES.items()
        if not (Path(thing).exists() if thing.startswith("/") else shutil.which(thing))
    ]
    if missing:
        raise NodeUnavailable(
            f"a real node needs the Debian packages {', '.join(sorted(set(missing)))} "
            f"(`apt-get install {' '.join(sorted(set(missing)))}`); {still}"
        )
    if (
        not any((Path("/sys/fs/cgroup") / c).is_dir() for c in ("memory", "cpu"))
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        raise NodeUnavailable(f"a real node needs cgroups mounted at /sys/fs/cgroup; {still}")


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its state: below the cluster's folder, plus the shared image store."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        """containerd's content and snapshots: in the cache, so loaded images survive the node."""
        return tools.cache_dir() / "node" / "containerd"

    @property
    def containerd_state(self) -> Path:
        """containerd's runtime state (sockets, shim bundles)."""
        return self.root / "containerd"

    @property
    def socket(self) -> Path:
        """containerd's gRPC socket."""
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        """kubelet's ``--root-dir`` (pods' volumes, its serving certificate)."""
        return self.root / "kubelet"

    @property
    def registry_hosts(self) -> Path:
        """containerd's registry host configuration (every registry sent nowhere)."""
        return self.root / "registry-hosts"

    @property
    def cni_conf(self) -> Path:
        """The CNI configuration folder containerd reads."""
        return self.root / "cni" / "net.d"


def node_lock() -> IO[str]:
    """Hold the machine-wide node lock; raise :class:`NodeUnavailable` when another node holds it."""
    path = tools.cache_dir() / "node" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise NodeUnavailable(
            f"a real node already runs on this machine ({owner}); one node per machine: stop it first "
            "(`stashlet-cluster down`)"
        ) from None
    handle.truncate(0)
    return handle


class Node:
    """Start and stop one real node joined to a control plane whose API server listens on NODE_IP."""

    def __init__(
        self,
        directory: Path,
        *,
        kubeconfigs: dict[str, Path],
        ca_cert: Path,
        tie_to_parent: bool = True,
    ) -> None:
        """Prepare; ``kubeconfigs`` holds ``kubelet``, ``kube-proxy`` and ``kube-scheduler`` ones."""
        self.paths = NodePaths(directory)
        self.kubeconfigs = kubeconfigs
        self.ca_cert = ca_cert
        self.tie_to_parent = tie_to_parent
        self.processes: list[ManagedProcess] = []
        self.pids: dict[str, int] = {}

    @property
    def logs(self) -> Path:
        """The node's process logs."""
        return self.paths.root / "logs"

    def prepare_host(self) -> HostRecord:
        """Record the host, then create the bridge the API server and the pods share."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        record = HostRecord.take(BRIDGE, [self.paths.root])
        record.save(self.paths.root / HOST_RECORD)
        if not _ok(["ip", "link", "show", BRIDGE]):
            _check(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _ok(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        _check(["ip", "link", "set", BRIDGE, "up"])
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text("1")
        return record

    def start(self, *, timeout: float = 120) -> None:
        """Start containerd, load the images, then the scheduler, kubelet and kube-proxy; wait Ready."""
        binaries = {b: tools.ensure(b) for b in ("kubelet", "kube-proxy", "kube-scheduler", "crictl")}
        archives = images.build_images()
        self._write_configs()
        containerd = self._spawn(
            "containerd", ["containerd", "--config", str(self.paths.root / "containerd.toml")]
        )
        wait_until(
            lambda: _ok(["ctr", "--address", str(self.paths.socket), "version"]),
            timeout=timeout,
            what="containerd",
            process=containerd,
        )
        images.load_images(archives, containerd_address=str(self.paths.socket))
        self._spawn(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={self.kubeconfigs['kube-scheduler']}",
                f"--authentication-kubeconfig={self.kubeconfigs['kube-scheduler']}",
                f"--authorization-kubeconfig={self.kubeconfigs['kube-scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        self._spawn(
            "kubelet",
            [
                str(binaries["kubelet"]),
                f"--config={self.paths.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.kubeconfigs['kubelet']}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
            ],
        )
        self._spawn(
            "kube-proxy",
            [
                str(binaries["kube-proxy"]),
                f"--kubeconfig={self.kubeconfigs['kube-proxy']}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                "--conntrack-max-per-core=0",
                f"--healthz-bind-address=127.0.0.1:{free_port()}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--nodeport-addresses={NODE_IP}/32",
            ],
        )

    def _write_configs(self) -> None:
        paths = self.paths
        for folder in (paths.containerd_root, paths.containerd_state, paths.kubelet_root, paths.cni_conf):
            folder.mkdir(parents=True, exist_ok=True)
        (paths.root / "containerd.toml").write_text(
            containerd_config(paths, sandbox_image=images.PAUSE_IMAGE)
        )
        write_registry_hosts(paths.registry_hosts)
        (paths.cni_conf / "10-stashlet.conflist").write_text(
            json.dumps(cni_config(paths.root / "cni" / "ipam"), indent=2)
        )
        (paths.root / "kubelet.yaml").write_text(json.dumps(kubelet_config(paths, self.ca_cert), indent=2))

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess.start(
            name, argv, self.logs / f"{name}.log", tie_to_parent=self.tie_to_parent
        )
        self.processes.append(process)
        self.pids[name] = process.pid
        time.sleep(0.05)
        if not process.alive():
            raise RuntimeError(f"{name} exited at once; its log:\n{process.log_tail()}")
        return process


def remove_sandboxes(paths: NodePaths) -> None:
    """Stop and remove every pod sandbox through the CRI, so CNI releases each pod's network."""
    crictl = tools.find("crictl")
    if crictl is None or not paths.socket.exists():
        return
    subprocess.run(
        [str(crictl), f"--runtime-endpoint=unix://{paths.socket}", "rmp", "--all", "--force"],
        capture_output=True,
        timeout=120,
        check=False,
    )


def cleanup_kube_proxy() -> None:
    """``kube-proxy --cleanup``: remove its iptables chains."""
    binary = tools.find("kube-proxy")
    if binary is not None:
        subprocess.run([str(binary), "--cleanup"], capture_output=True, timeout=60, check=False)


def containerd_config(paths: NodePaths, *, sandbox_image: str) -> str:
    """containerd 1.6's configuration for the node (CRI with runc, cgroupfs, CNI from Debian)."""
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{paths.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd_state}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # No CAP_SYS_RESOURCE on this kind of VM: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{paths.registry_hosts}"
"""


NO_REGISTRY = "http://127.0.0.1:9"
"""Where every registry points: nothing listens there, so a pull fails at once and no image is ever
fetched from outside this machine (the node runs only the images built and loaded here)."""

REGISTRIES = (
    "_default",
    "docker.io",
    "registry-1.docker.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "quay.io",
    "ghcr.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
)


def write_registry_hosts(folder: Path) -> None:
    """containerd ``hosts.toml`` files that send every known registry (and the default) to
    :data:`NO_REGISTRY`."""
    for registry in REGISTRIES:
        (folder / registry).mkdir(parents=True, exist_ok=True)
        (folder / registry / "hosts.toml").write_text(
            f'server = "{NO_REGISTRY}"\n\n[host."{NO_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
        )


def cni_config(ipam_dir: Path) -> dict[str, object]:
    """A bridge network on BRIDGE with the node's address as gateway, masquerading outbound traffic."""
    return {
        "cniVersion": "0.4.0",
        "name": "stashlet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, ca_cert: Path) -> dict[str, object]:
    """The KubeletConfiguration this machine needs (cgroup v1, no swap check, no evictions of images)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        "enforceNodeAllocatable": [],
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": "cluster.local",
        "podLogsDir": str(paths.root / "pod-logs"),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 110,
        "resolvConf": "/etc/resolv.conf",
    }


def _ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _check(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
