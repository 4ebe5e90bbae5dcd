"""One pod on the process kubelet (its sandbox), and how a container of it is prepared to start.

Preparing a container resolves what the kubelet resolves before a runtime starts it: the environment,
the command, each volume's host folder and the bind mounts, plus the implicit mounts (``/etc/hosts``,
and the service-account folder when admission did not add its projected volume).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stashlet.localcluster.podapi import KubeApi
from stashlet.localcluster.podexec import ensure_mountpoint
from stashlet.localcluster.podnet import Forwarder, PodInterface, PodNetwork
from stashlet.localcluster.podprocess import RunningContainer, now
from stashlet.localcluster.podspec import (
    ContainerConfigError,
    NodeResources,
    Obj,
    Objects,
    build_env,
    command_argv,
    pod_ref,
)
from stashlet.localcluster.podstatus import PodView
from stashlet.localcluster.podvolumes import (
    API_DATA_TYPES,
    SERVICE_ACCOUNT_DIR,
    Layout,
    Mount,
    api_data_files,
    container_mounts,
    host_path,
    token_keys,
    volume_kind,
    write_atomic,
)

SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ContainerStartError(RuntimeError):
    """The container's command cannot be started (the kubelet's RunContainerError)."""

    reason = "RunContainerError"


@dataclass(frozen=True)
class Runtime:
    """What every container of this kubelet gets: folders, CA, Service address, PATH, image stand-ins."""

    layout: Layout
    ca: bytes
    service: tuple[str, int]
    """The ``kubernetes`` Service (cluster IP, port), reachable in every pod's network namespace."""
    api_server: tuple[str, int]
    """The API server as the host sees it (for hostNetwork pods)."""
    node: NodeResources
    extra_path: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    entrypoints: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass
class Sandbox:
    """What the kubelet keeps for one pod (by UID): network, container runs, status."""

    pod: Obj
    node: str
    hostname: str
    interface: PodInterface | None
    listener: int | None
    view: PodView
    created: float = field(default_factory=time.monotonic)
    init_containers: dict[str, RunningContainer] = field(default_factory=dict)
    containers: dict[str, RunningContainer] = field(default_factory=dict)
    reported: tuple[object, ...] = ()
    status: Obj = field(default_factory=dict)
    finalizing: bool = False

    @property
    def uid(self) -> str:
        """The pod's UID."""
        return str(self.pod["metadata"]["uid"])

    @property
    def grace(self) -> float:
        """The pod's terminationGracePeriodSeconds."""
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def handles(self) -> list[RunningContainer]:
        """Every latest container run, init containers first."""
        return [*self.init_containers.values(), *self.containers.values()]

    def sync_view(self) -> PodView:
        """Bring the status view up to date with the processes."""
        self.view.init_runs = {n: h.snapshot() for n, h in self.init_containers.items()}
        self.view.runs = {n: h.snapshot() for n, h in self.containers.items()}
        return self.view

    def with_network_status(self, pod: Obj) -> Obj:
        """``pod`` with the status fields the downward API reads filled in from this sandbox."""
        status = {**pod.get("status", {})}
        status.update(
            podIP=self.view.pod_ip,
            podIPs=[{"ip": self.view.pod_ip}],
            hostIP=self.view.host_ip,
            hostIPs=[{"ip": self.view.host_ip}],
        )
        return {**pod, "status": status}


def hosts_file(pod: Obj, ip: str, hostname: str, service_ip: str) -> str:
    """The kubelet-managed ``/etc/hosts`` of a pod."""
    aliases = "".join(
        f"{a['ip']}\t{' '.join(a.get('hostnames', []))}\n" for a in pod["spec"].get("hostAliases", [])
    )
    return (
        "# Kubernetes-managed hosts file (stashlet process kubelet).\n"
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{ip}\t{hostname}\n"
        f"{service_ip}\tkubernetes kubernetes.default kubernetes.default.svc "
        f"kubernetes.default.svc.cluster.local\n{aliases}"
    )


def node_for(pod: Obj, default: str) -> str:
    """A DaemonSet pod's node (from its node affinity), else ``default``."""
    affinity = pod["spec"].get("affinity", {}).get("nodeAffinity", {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {})
    for term in required.get("nodeSelectorTerms", []):
        for expression in term.get("matchFields", []):
            if expression.get("key") == "metadata.name" and expression.get("values"):
                return str(expression["values"][0])
    return default


def create(pod: Obj, runtime: Runtime, network: PodNetwork, forwarder: Forwarder, host_ip: str) -> Sandbox:
    """Set a pod up: its network namespace and address (unless hostNetwork), the ``kubernetes``
    Service on its loopback, its folder and ``/etc/hosts``."""
    uid = pod["metadata"]["uid"]
    hostname = (pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]
    interface, listener, ip = None, None, host_ip
    if pod["spec"].get("hostNetwork"):
        hostname = socket.gethostname()  # a hostNetwork pod sees the node's name
    else:
        interface = network.add(uid)
        try:
            network.add_local_address(uid, runtime.service[0])
            listener = forwarder.listen(runtime.service, runtime.api_server, netns=interface.netns_path)
        except BaseException:
            network.remove(uid)
            raise
        ip = interface.ip
    view = PodView(pod_ip=ip, host_ip=host_ip, started_at=now())
    sandbox = Sandbox(pod, pod["spec"]["nodeName"], hostname, interface, listener, view)
    sandbox.pod = sandbox.with_network_status(pod)
    pod_dir = runtime.layout.pod_dir(uid)
    pod_dir.mkdir(parents=True, exist_ok=True)
    (pod_dir / "etc-hosts").write_text(hosts_file(pod, ip, hostname, runtime.service[0]))
    return sandbox


@dataclass(frozen=True)
class Launch:
    """A container ready to start."""

    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    working_dir: str


def base_env(runtime: Runtime, sandbox: Sandbox) -> dict[str, str]:
    """What an image and the runtime would put in the environment."""
    path = [*runtime.extra_path, str(Path(sys.executable).parent), *SYSTEM_PATH]
    return {"PATH": os.pathsep.join(path), "HOSTNAME": sandbox.hostname, "HOME": "/root", **runtime.extra_env}


def service_env(runtime: Runtime, sandbox: Sandbox) -> dict[str, str]:
    """The ``kubernetes`` Service variables."""
    host, port = runtime.service if sandbox.interface is not None else runtime.api_server
    address = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": address,
        f"KUBERNETES_PORT_{port}_TCP": address,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


async def prepare(api: KubeApi, runtime: Runtime, sandbox: Sandbox, container: Obj) -> Launch:
    """Resolve env, command and mounts of ``container``, writing its pod's volumes.

    Raises ContainerConfigError or ContainerStartError as the kubelet would report them.
    """
    pod = sandbox.pod
    try:
        objects = await api.objects(pod)
        env = build_env(
            pod,
            container,
            objects,
            base=base_env(runtime, sandbox),
            service=service_env(runtime, sandbox),
            node=runtime.node,
        )
        argv = command_argv(pod, container, env, runtime.entrypoints)
        volumes = await materialise(api, runtime, pod, objects)
    except ValueError as exc:
        raise ContainerConfigError(f'pod {pod_ref(pod)} container "{container["name"]}": {exc}') from exc
    mounts = container_mounts(pod, container, volumes, env) + await implicit_mounts(
        api, runtime, sandbox, container
    )
    _check_executable(pod, container, argv[0], env, mounts)
    return Launch(argv, env, mounts, container.get("workingDir") or "/")


async def materialise(
    api: KubeApi, runtime: Runtime, pod: Obj, objects: Objects, *, api_data_only: bool = False
) -> dict[str, tuple[Path, bool]]:
    """Each volume's host folder (written or created now) and whether it is read-only."""
    meta = pod["metadata"]
    tokens = {key: await api.token(pod, *key) for key in token_keys(pod)}
    volumes: dict[str, tuple[Path, bool]] = {}
    for volume in pod["spec"].get("volumes", []):
        name, kind = volume["name"], volume_kind(volume)
        where = f'pod {pod_ref(pod)} volume "{name}"'
        if kind in API_DATA_TYPES:
            directory = runtime.layout.volume_dir(meta["uid"], name)
            write_atomic(directory, api_data_files(pod, volume, objects, tokens, runtime.node))
            volumes[name] = (directory, True)
        elif api_data_only:
            continue
        elif kind == "emptyDir":
            directory = runtime.layout.volume_dir(meta["uid"], name)
            directory.mkdir(parents=True, exist_ok=True)
            volumes[name] = (directory, False)
        elif kind == "persistentVolumeClaim":
            claim = volume[kind]["claimName"]
            if (
                await api.get_or_none(
                    api.core.read_namespaced_persistent_volume_claim, claim, meta["namespace"]
                )
                is None
            ):
                raise ContainerConfigError(f'{where}: persistentvolumeclaim "{claim}" not found')
            directory = runtime.layout.pvc_dir(meta["namespace"], claim)
            directory.mkdir(parents=True, exist_ok=True)
            volumes[name] = (directory, bool(volume[kind].get("readOnly")))
        elif kind == "hostPath":
            volumes[name] = (host_path(pod, volume), False)
        else:
            raise ContainerConfigError(
                f"{where}: volume type {kind!r} is not supported by the process kubelet (supported: "
                "emptyDir, persistentVolumeClaim, hostPath, configMap, secret, downwardAPI, projected)"
            )
    return volumes


async def implicit_mounts(api: KubeApi, runtime: Runtime, sandbox: Sandbox, container: Obj) -> list[Mount]:
    """``/etc/hosts``, and the service-account folder when admission did not add its volume."""
    pod = sandbox.pod
    pod_dir = runtime.layout.pod_dir(sandbox.uid)
    mounts = []
    if sandbox.interface is not None:
        mounts.append(Mount(str(pod_dir / "etc-hosts"), "/etc/hosts", False))
    if any(m["mountPath"] == SERVICE_ACCOUNT_DIR for m in container.get("volumeMounts", [])):
        return mounts
    automount = pod["spec"].get("automountServiceAccountToken")
    if automount is None:
        account = pod["spec"].get("serviceAccountName") or "default"
        sa = await api.get_or_none(
            api.core.read_namespaced_service_account, account, pod["metadata"]["namespace"]
        )
        automount = (sa or {}).get("automountServiceAccountToken", True)
    if not automount:
        return mounts
    files = {
        "token": ((await api.token(pod, "", 3607)).encode(), 0o644),
        "ca.crt": (runtime.ca, 0o644),
        "namespace": (pod["metadata"]["namespace"].encode(), 0o644),
    }
    write_atomic(pod_dir / "serviceaccount", files)
    return [*mounts, Mount(str(pod_dir / "serviceaccount"), SERVICE_ACCOUNT_DIR, True)]


def is_under(path: str, parent: str) -> bool:
    """True when ``path`` lies strictly inside ``parent``."""
    return PurePosixPath(parent) in PurePosixPath(path).parents


def _check_executable(
    pod: Obj, container: Obj, executable: str, env: Mapping[str, str], mounts: Sequence[Mount]
) -> None:
    if "/" in executable:
        if any(is_under(executable, m.target) for m in mounts) or os.access(executable, os.X_OK):
            return
    elif shutil.which(executable, path=env.get("PATH", "")):
        return
    raise ContainerStartError(
        f'pod {pod_ref(pod)} container "{container["name"]}": exec: "{executable}": executable file '
        f"not found in $PATH ({env.get('PATH', '')})"
    )


def prepare_mountpoints(mounts: Sequence[Mount], created: list[Path]) -> None:
    """Create on the host the mount paths that exist neither there nor inside an earlier mount;
    append the top-most path created to ``created``."""
    for index, mount in enumerate(mounts):
        if any(is_under(mount.target, earlier.target) for earlier in mounts[:index]):
            continue  # podexec creates it inside the enclosing volume
        target = Path(mount.target)
        if os.path.lexists(target):
            continue
        top = target
        while not os.path.lexists(top.parent):
            top = top.parent
        ensure_mountpoint(str(target), directory=os.path.isdir(os.path.realpath(mount.source)))
        if top not in created:
            created.append(top)
