"""A whole local cluster: the control plane and, by default, one real node; up and down in order.

``up``: check the machine can run a node, record the host, create the node's bridge, start etcd,
kube-apiserver (on the bridge's address) and kube-controller-manager, then containerd, the images,
kube-scheduler, kubelet and kube-proxy; wait for the node to be Ready, then run CoreDNS, install the
default StorageClass and the CRDs. ``down`` stops it in the order that lets each part clean up after
itself (pods first, through the kubelet), then undoes every host change that was recorded. ``down``
works from another process too (``stashlet-cluster down``), from what ``up`` wrote into the folder,
and the next ``up`` cleans up after a node whose processes died without a ``down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import yaml

from stashlet.localcluster import csi, nodeobjects, tools
from stashlet.localcluster import node as node_mod
from stashlet.localcluster.controlplane import NODE_USERS, ClusterState, ControlPlane
from stashlet.localcluster.hostchanges import HostRecord
from stashlet.localcluster.processes import ManagedProcess

NODE_FOLDER = "node"
STOP_ORDER = (
    "kube-controller-manager",
    "kube-scheduler",
    "pods",
    "kube-proxy",
    "kubelet",
    "sandboxes",
    "containerd",
    "kube-apiserver",
    "etcd",
)
"""The order ``down`` stops things in; ``pods`` and ``sandboxes`` are steps, not processes."""


def _active_record() -> Path:
    return tools.cache_dir() / "node" / "active"


class LocalCluster:
    """The control plane plus (``node=True``) one real node, in one folder."""

    def __init__(
        self,
        directory: Path,
        *,
        node: bool = True,
        controller_manager: bool = True,
        tie_to_parent: bool = True,
    ) -> None:
        """Prepare; nothing starts until :meth:`up`."""
        self.directory = directory
        self.with_node = node
        self.plane = ControlPlane(
            directory,
            controller_manager=controller_manager,
            tie_to_parent=tie_to_parent,
            address=node_mod.NODE_IP if node else "127.0.0.1",
            node_name=node_mod.NODE_NAME if node else None,
        )
        self.tie_to_parent = tie_to_parent
        self.node: node_mod.Node | None = None
        self.node_unavailable: str | None = None if node else "the cluster was started without a node"
        self.attached = False
        """True for a cluster another process brought up (:meth:`attach`): it is not this one's to stop."""
        self._lock: IO[str] | None = None

    @classmethod
    def attach(cls, directory: Path) -> LocalCluster:
        """The cluster another process of this machine brought up in ``directory``, to use and never to
        stop: its processes stay that process's (e.g. test workers sharing their controller's cluster)."""
        state = ClusterState.load(directory)
        cluster = cls(directory, node=state.node, tie_to_parent=False)
        cluster.plane.state = state
        cluster.attached = True
        if state.node:
            cluster.node = node_mod.Node(
                directory / NODE_FOLDER,
                kubeconfigs={c: cluster.plane.component_kubeconfig(c) for c in NODE_USERS},
                ca_cert=cluster.plane.pki.ca_cert,
                tie_to_parent=False,
            )
        return cluster

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.plane.kubeconfig

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the admin."""
        return self.plane.kubectl(*args, input_text=input_text, check=check)

    def up(
        self, *, apiserver_port: int | None = None, crds: Path | None = None, timeout: float = 180
    ) -> ClusterState:
        """Start everything and wait until it serves; on any failure stop what started and undo."""
        if not self.with_node:
            return self.plane.start(apiserver_port=apiserver_port, crds=crds)
        node_mod.preflight()
        self._lock = node_mod.node_lock()
        _clean_stale_node()
        self._lock.write(f"cluster {self.directory}, pid {os.getpid()}\n")
        self._lock.flush()
        node_folder = self.directory / NODE_FOLDER
        try:
            if self.directory.exists():
                subprocess.run(["rm", "-rf", str(self.directory)], check=False)
            self.node = node_mod.Node(
                node_folder,
                kubeconfigs={c: self.plane.component_kubeconfig(c) for c in NODE_USERS},
                ca_cert=self.plane.pki.ca_cert,
                tie_to_parent=self.tie_to_parent,
            )
            self.node.prepare_host()
            _active_record().write_text(str(self.directory) + "\n")
            state = self.plane.start(apiserver_port=apiserver_port, crds=None, timeout=timeout, fresh=False)
            self.node.start(timeout=timeout)
            state.pids |= self.node.pids
            state.node = True
            state.save()
            self._wait_node_ready(timeout)
            self._apply([*nodeobjects.coredns(), nodeobjects.storage_class()])
            if crds is not None:
                self.plane.install_crds(crds)
            self.kubectl(
                "rollout", "status", "-n", "kube-system", "deployment/coredns", f"--timeout={timeout:.0f}s"
            )
        except BaseException:
            self.down()
            raise
        return state

    def ensure_csi(self, *, timeout: float = 300) -> csi.CsiAddon:
        """The CSI snapshot add-on (a CSI driver with snapshots, the snapshot controller, the classes
        ``csi-hostpath-sc`` and ``csi-hostpath-snapclass``), installed on first use; see
        :mod:`stashlet.localcluster.csi`. Needs the real node."""
        return csi.ensure(self, timeout=timeout)

    def _wait_node_ready(self, timeout: float) -> None:
        """Wait until the kubelet has registered the node and it is Ready; fail fast if a part died."""
        assert self.node is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kubectl("get", "node", node_mod.NODE_NAME, check=False).returncode == 0:
                self.kubectl(
                    "wait", "--for=condition=Ready", f"node/{node_mod.NODE_NAME}", f"--timeout={timeout:.0f}s"
                )
                return
            if dead := [p for p in self.node.processes if not p.alive()]:
                raise RuntimeError(
                    f"{dead[0].name} exited while the node registered; its log:\n{dead[0].log_tail()}"
                )
            time.sleep(0.2)
        raise TimeoutError(f"node {node_mod.NODE_NAME} did not register in {timeout:.0f}s")

    def _apply(self, objects: list[dict[str, object]]) -> None:
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))

    def down(self) -> list[str]:
        """Stop everything this cluster runs and undo its host changes; return what was done."""
        if self.attached:
            raise RuntimeError(f"{self.directory} is stopped by the process that brought it up, not here")
        try:
            return teardown(self.directory, self.plane.processes + (self.node.processes if self.node else []))
        finally:
            self.plane.processes.clear()
            if self.node is not None:
                self.node.processes.clear()
            if self._lock is not None:
                self._lock.close()
                self._lock = None


class HostNotRestored(RuntimeError):
    """``down`` could not put the host back as it was; the message lists what is left."""

    def __init__(self, left: list[str], done: list[str]) -> None:
        """Say what is left (and keep what was done)."""
        super().__init__("the node's host changes were not all undone:\n  " + "\n  ".join(left))
        self.left = left
        self.done = done


def teardown(directory: Path, processes: list[ManagedProcess]) -> list[str]:
    """Stop a cluster's processes in :data:`STOP_ORDER` and undo the host record of its node."""
    by_name = {p.name: p for p in processes}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, TypeError):
        state = ClusterState.load(directory)
        for name, pid in state.pids.items():
            by_name.setdefault(
                name, ManagedProcess(name=name, pid=pid, log=directory / "logs" / f"{name}.log")
            )
    done: list[str] = []
    node_folder = directory / NODE_FOLDER
    paths = node_mod.NodePaths(node_folder)
    for step in STOP_ORDER:
        if step == "pods":
            if "kubelet" in by_name and by_name["kubelet"].alive() and "kube-apiserver" in by_name:
                _delete_pods(directory)
        elif step == "sandboxes":
            _remove_sandboxes(paths)
        elif (process := by_name.pop(step, None)) is not None:
            if process.alive() and (process.popen is not None or _names(process.pid, directory)):
                process.stop()
                done.append(f"stopped {step}")
            if step == "kube-proxy":
                node_mod.cleanup_kube_proxy()
    for process in by_name.values():
        if process.alive() and (process.popen is not None or _names(process.pid, directory)):
            process.stop()
            done.append(f"stopped {process.name}")
    done += _kill_shims(paths)
    record = node_folder / node_mod.HOST_RECORD
    if record.exists():
        host = HostRecord.load(record)
        done += host.undo()
        if left := host.leftovers():
            raise HostNotRestored(left, done)
        record.unlink()
        with contextlib.suppress(FileNotFoundError):
            if _active_record().read_text().strip() == str(directory):
                _active_record().unlink()
    return done


def _delete_pods(directory: Path) -> None:
    """Delete every pod through the API, so the kubelet stops each one gracefully (bounded): the
    workloads' first, then kube-system's, whose CSI driver must outlive the pods that mount its volumes."""
    kubeconfig = directory / "kubeconfig"
    kubectl = tools.find("kubectl")
    if kubectl is None:
        return
    # (kubectl refuses --all beside a selector: the selector alone picks the first pass's pods.)
    for scope in (
        ("--all-namespaces", "--field-selector=metadata.namespace!=kube-system"),
        ("--all", "-n", "kube-system"),
    ):
        subprocess.run(
            [
                str(kubectl),
                f"--kubeconfig={kubeconfig}",
                "delete",
                "pods",
                *scope,
                "--grace-period=5",
                "--timeout=60s",
                "--wait=true",
            ],
            capture_output=True,
            timeout=90,
            check=False,
        )


def _remove_sandboxes(paths: node_mod.NodePaths) -> None:
    if paths.socket.exists() and _socket_answers(paths):
        node_mod.remove_sandboxes(paths)


def _socket_answers(paths: node_mod.NodePaths) -> bool:
    return (
        subprocess.run(
            ["ctr", "--address", str(paths.socket), "version"], capture_output=True, timeout=10, check=False
        ).returncode
        == 0
    )


def _kill_shims(paths: node_mod.NodePaths) -> list[str]:
    """SIGKILL containerd shims of this node that outlived containerd (they run in their own session)."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "containerd-shim" in cmdline and str(paths.containerd_state) in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return [f"killed {killed} containerd shims"] if killed else []


def _names(pid: int, directory: Path) -> bool:
    """True when ``pid`` runs a command line that names the cluster's folder (no pid-reuse accidents)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(directory) in cmdline


def _clean_stale_node() -> None:
    """Undo what a node left behind when its processes died without a ``down`` (we hold the lock)."""
    with contextlib.suppress(FileNotFoundError):
        previous = Path(_active_record().read_text().strip())
        if (previous / NODE_FOLDER / node_mod.HOST_RECORD).exists():
            teardown(previous, [])
        _active_record().unlink(missing_ok=True)
