"""``stashlet-cluster``: a real local control plane for trying stashlet and for its tests.

stashlet-cluster install-tools      build the pinned binaries into the cache (once; an add-on's, such as
                                    csi-provisioner, only when named)
stashlet-cluster up                 start the control plane and a real node (containerd, kubelet,
                                    kube-proxy, kube-scheduler, CoreDNS); install the CRDs
stashlet-cluster up --csi           also a CSI driver with snapshots and the snapshot controller
stashlet-cluster up --no-node       the control plane alone (etcd, kube-apiserver, controller manager)
stashlet-cluster env                print `export KUBECONFIG=...` for the running cluster
stashlet-cluster kubectl ARGS...    run the pinned kubectl against it
stashlet-cluster down               stop it and remove its folder
stashlet-cluster demo               the seed walk-through on an embedded control plane
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from stashlet.localcluster import checkout, tools
from stashlet.localcluster.cluster import LocalCluster, teardown
from stashlet.localcluster.controlplane import ClusterState
from stashlet.localcluster.demo import main as demo_main
from stashlet.localcluster.node import NodeUnavailable
from stashlet.localcluster.processes import PortTakenError


def cluster_dir(name: str) -> Path:
    """The folder of a named local cluster."""
    return tools.cache_dir() / "clusters" / name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stashlet-cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="default", help="cluster name (one folder per name)")
    parser.add_argument("--dir", type=Path, help="cluster folder (default: <cache>/clusters/<name>)")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install-tools", help="build the pinned binaries into the cache")
    install.add_argument("binaries", nargs="*", help="only these (default: all but the add-ons')")
    up = sub.add_parser("up", help="start a control plane and install the CRDs")
    up.add_argument("--port", type=int, help="kube-apiserver port (default: a free one)")
    up.add_argument("--crds", type=Path, help="folder of CRDs to install (default: the checkout's chart's)")
    up.add_argument("--no-controller-manager", action="store_true")
    up.add_argument("--no-node", action="store_true", help="the control plane alone, no real node")
    up.add_argument(
        "--csi",
        action="store_true",
        help="also a CSI driver with snapshots (StorageClass csi-hostpath-sc, csi-hostpath-snapclass)",
    )
    sub.add_parser("down", help="stop the cluster, undo the node's host changes, remove its folder")
    sub.add_parser("env", help="print shell exports for the running control plane")
    sub.add_parser("status", help="say whether the control plane runs")
    demo = sub.add_parser("demo", help="the seed walk-through on an embedded control plane")
    demo.add_argument("args", nargs=argparse.REMAINDER)
    kubectl = sub.add_parser("kubectl", help="run kubectl against the control plane")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stashlet-cluster``."""
    args = _parser().parse_args(argv)
    directory = args.dir.resolve() if args.dir else cluster_dir(args.name)
    try:
        return _dispatch(args, directory)
    except (tools.ToolError, PortTakenError, TimeoutError, RuntimeError, NodeUnavailable, OSError) as exc:
        print(f"stashlet-cluster: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, directory: Path) -> int:
    if args.command == "install-tools":
        for binary in args.binaries or [b for tool in tools.ALL_TOOLS for b in tool.binaries]:
            if binary not in tools.BY_BINARY:
                raise tools.ToolError(f"unknown binary {binary!r}; known: {', '.join(tools.BY_BINARY)}")
            print(f"{binary}: {tools.ensure(binary)}")
        return 0
    if args.command == "demo":
        return demo_main(args.args)
    if args.command == "up":
        if _running(directory):
            print(
                f"stashlet-cluster: cluster {args.name!r} already runs; `stashlet-cluster down` first",
                file=sys.stderr,
            )
            return 1
        cluster = LocalCluster(
            directory,
            node=not args.no_node,
            controller_manager=not args.no_controller_manager,
            tie_to_parent=False,
        )
        crds = args.crds or checkout.crds()
        state = cluster.up(apiserver_port=args.port, crds=crds if crds.is_dir() else None)
        if args.csi:
            addon = cluster.ensure_csi()
            print(
                f"CSI add-on: StorageClass {addon.storage_class}, VolumeSnapshotClass {addon.snapshot_class}"
            )
        print(f"{'cluster with a real node' if state.node else 'control plane'} up: {state.server}")
        print(f"  kubeconfig: {state.kubeconfig}")
        print(f"  processes: {', '.join(f'{n} ({p})' for n, p in state.pids.items())}")
        print(f"  logs: {directory / 'logs'}")
        print(f'use it: eval "$(stashlet-cluster --name {args.name} env)"')
        return 0
    if args.command == "down":
        if not (directory / "state.json").exists():
            print(f"stashlet-cluster: no cluster {args.name!r} to stop", file=sys.stderr)
            return 0
        done = teardown(directory, [])
        shutil.rmtree(directory, ignore_errors=True)
        for line in done:
            print(f"  {line}")
        print(f"{'stopped' if done else 'nothing was running'}; removed {directory}")
        return 0
    recorded = _state_or_none(directory)
    if args.command == "status":
        print(f"running: {recorded.server}" if recorded and _running(directory) else "not running")
        return 0 if recorded and _running(directory) else 3
    if recorded is None:
        print(f"stashlet-cluster: no cluster {args.name!r}; run `stashlet-cluster up` first", file=sys.stderr)
        return 1
    if args.command == "env":
        print(f"export KUBECONFIG={shlex.quote(recorded.kubeconfig)}")
        print(f'export PATH={shlex.quote(str(tools.ensure("kubectl").parent))}:"$PATH"')
        return 0
    kubectl = tools.ensure("kubectl")
    os.execv(kubectl, [str(kubectl), f"--kubeconfig={recorded.kubeconfig}", *args.args])  # noqa: S606


def _state_or_none(directory: Path) -> ClusterState | None:
    try:
        return ClusterState.load(directory)
    except FileNotFoundError:
        return None


def _running(directory: Path) -> bool:
    state = _state_or_none(directory)
    if state is None:
        return False
    return any(Path(f"/proc/{pid}").exists() for pid in state.pids.values())


if __name__ == "__main__":
    sys.exit(main())
