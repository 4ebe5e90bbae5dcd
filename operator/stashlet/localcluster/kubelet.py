"""A process kubelet for the local control plane: chosen containers of real pods run as local processes.

The control plane has no kubelet and no container runtime. :class:`ProcessKubelet` plays the kubelet
for pods made by the real controllers (Deployment, StatefulSet, DaemonSet, Job): it registers a Node,
binds the pods it is asked to run to it, and runs a container by giving its command exactly what a
kubelet would, so the product runs with the command, args, env and identity written into the pod spec:

- the command: ``command`` + ``args`` with ``$(VAR)`` expansion, the executable looked up on the pod's
  PATH (``extra_path``, then the folder of this Python, i.e. the venv's ``bin`` with
  ``stashlet-agent`` and ``stashlet-operator``, then the usual system folders). Images are ignored:
  there is no runtime. When a container has no ``command``, its image's ENTRYPOINT comes from
  ``entrypoints``. Processes run as root; ``securityContext``, probes and resource limits are ignored;
- the environment: ``env`` (values, downward API ``fieldRef``, ``resourceFieldRef``, ``secretKeyRef``,
  ``configMapKeyRef``) and ``envFrom``, ``KUBERNETES_SERVICE_HOST``/``PORT``, ``HOSTNAME``, ``HOME``,
  ``PATH`` and ``extra_env``; nothing of this process's own environment. A missing object or key is
  :class:`ContainerConfigError` naming pod, container, variable and what is missing;
- the identity: the pod's service-account token from the TokenRequest API, bound to the pod, with the
  cluster CA and the namespace at ``/var/run/secrets/kubernetes.io/serviceaccount``, so in-cluster
  config works unchanged and RBAC applies (never the admin's credentials);
- the volumes (see :mod:`podvolumes`), bind-mounted at their mount paths in a private mount namespace,
  plus a managed ``/etc/hosts`` (the pod's hostname, and ``kubernetes.default.svc``), and the pod's
  hostname in a UTS namespace of its own;
- the network: a network namespace per pod on a bridge of its own (see :mod:`podnet`), the pod's IP in
  ``status.podIP``. The ``kubernetes`` Service address (``10.0.0.1:443``) is on each pod's loopback and
  forwarded to the API server, whose certificate already names that address; the control plane keeps
  listening on 127.0.0.1 only. Servers a test starts are reachable from pods at
  :attr:`ProcessKubelet.host_ip` when bound there or on 0.0.0.0, and
  :meth:`ProcessKubelet.expose_loopback_port` forwards one bound on 127.0.0.1.

Status is written through ``pods/status`` as a kubelet does (see :mod:`podstatus`). A background sync
reports containers that exit and finishes the deletion of pods on its nodes (SIGTERM, the grace
period, SIGKILL, then the final delete), so rollouts, namespace deletion and Jobs proceed. Not done:
restarts of exited containers, probes, DNS (``/etc/hosts`` names the API server), and Service
variables other than the ``kubernetes`` Service's.

What it creates on the host: under ``state_dir``, pod folders (``pods/<uid>``, removed with the pod),
claim folders (``volumes/<namespace>/pvc/<claim>``) and logs
(``logs/<namespace>_<pod>_<uid>/<container>.log``); network namespaces ``slN-pK``, veths ``slNvK``,
bridge ``slbrN`` and ``/run/stashlet-podnet/N.owner``, all removed on :meth:`ProcessKubelet.close`
(which also deletes the pods it ran and the nodes it registered); and, for a
mount path that exists neither on the host nor inside another mount, an empty directory (or file)
there, e.g. ``/run/secrets/kubernetes.io/serviceaccount`` (``/var/run`` is ``/run``, a tmpfs) or
``/data``. Those are listed in :attr:`ProcessKubelet.created_mountpoints` and left in place, empty:
removing a directory that is a mountpoint in another pod's namespace would detach that pod's volume.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from kubernetes_asyncio import client

from stashlet.localcluster import podprocess, podsandbox
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.localcluster.podapi import ApiError, KubeApi, kubeconfig_endpoint
from stashlet.localcluster.podnet import Forwarder, PodNetwork
from stashlet.localcluster.podprocess import RunningContainer, now
from stashlet.localcluster.podsandbox import ContainerStartError, Runtime, Sandbox
from stashlet.localcluster.podspec import ContainerConfigError, NodeResources, Obj, find_container, pod_ref
from stashlet.localcluster.podstatus import InitContainerError, PodResult, fingerprint, pod_status
from stashlet.localcluster.podvolumes import Layout

__all__ = [
    "ApiError",
    "ContainerConfigError",
    "ContainerStartError",
    "InitContainerError",
    "PodResult",
    "ProcessKubelet",
    "RunningContainer",
]

log = logging.getLogger(__name__)


class ProcessKubelet:
    """Runs containers of real pods as local processes; see the module docstring."""

    def __init__(
        self,
        cluster: ControlPlane | Path | str,
        state_dir: Path,
        *,
        node_name: str = "stashlet-node",
        extra_path: Sequence[str | Path] = (),
        extra_env: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        sync_interval: float = 0.5,
        close_grace: float = 5.0,
    ) -> None:
        """Prepare; nothing happens until :meth:`start` (or ``async with``).

        ``cluster``: a ControlPlane or an admin kubeconfig. ``node_name``: the Node it registers and
        binds pods to (two kubelets on one cluster need different names). ``extra_path`` goes first on
        the pods' PATH (e.g. the folder of the pinned restic); ``extra_env`` is in every container's
        environment as an image's ENV would be (the pod spec wins). ``entrypoints`` maps an image (with
        or without tag) to its ENTRYPOINT. ``close_grace`` caps the grace period of containers still
        running at :meth:`close`.
        """
        self.kubeconfig = cluster.kubeconfig if isinstance(cluster, ControlPlane) else Path(cluster)
        self.state_dir = state_dir.resolve()
        self.layout = Layout(self.state_dir)
        self.node_name = node_name
        self.extra_path = tuple(str(p) for p in extra_path)
        self.extra_env = dict(extra_env or {})
        self.entrypoints = {image: list(entry) for image, entry in (entrypoints or {}).items()}
        self.sync_interval = sync_interval
        self.close_grace = close_grace
        self.created_mountpoints: list[Path] = []
        """Paths this kubelet created on the host to mount volumes on (left in place, empty)."""
        self._runtime: Runtime | None = None
        self._api: KubeApi | None = None
        self._network: PodNetwork | None = None
        self._forwarder: Forwarder | None = None
        self._sandboxes: dict[str, Sandbox] = {}
        self._nodes: dict[str, bool] = {}
        self._exposed: dict[int, int] = {}
        self._finalizing: dict[str, asyncio.Task[None]] = {}
        self._finalized: set[str] = set()
        self._owned: set[str] = set()
        """UIDs of the pods this kubelet bound or ran: the only ones it finishes or deletes."""
        self._sync_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> ProcessKubelet:
        """Connect as the admin, create the pod network, register the node, start the sync loop."""
        host, port, ca = kubeconfig_endpoint(self.kubeconfig)
        self._api = await KubeApi.connect(self.kubeconfig)
        try:
            self._runtime = Runtime(
                layout=self.layout,
                ca=ca,
                service=await self._api.kubernetes_service(),
                api_server=(host, port),
                node=NodeResources.of_host(),
                extra_path=self.extra_path,
                extra_env=self.extra_env,
                entrypoints=self.entrypoints,
            )
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._network = PodNetwork.create()
            self._forwarder = Forwarder()
            await self.register_node(self.node_name)
        except BaseException:
            await self.close()
            raise
        self._sync_task = asyncio.create_task(self._sync_loop(), name="process-kubelet-sync")
        return self

    async def __aenter__(self) -> ProcessKubelet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every container, delete the pods it ran and the nodes it created, and tear the
        network down. Logs and claim folders stay."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._sync_task, *self._finalizing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        handles = [h for sandbox in self._sandboxes.values() for h in sandbox.handles()]
        await asyncio.gather(*(h.terminate(min(h.grace, self.close_grace)) for h in handles))
        if self._api is not None:
            for node, created in self._nodes.items():
                try:
                    for pod in await self._api.pods_on(node):
                        meta = pod["metadata"]
                        if meta["uid"] in self._owned:
                            await self._api.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
                    if created:
                        await self._api.call(self._api.core.delete_node, node)
                except ApiError as exc:
                    log.warning("process kubelet: cleaning up node %s: %s", node, exc)
        for sandbox in list(self._sandboxes.values()):
            self._remove_sandbox(sandbox)
        if self._forwarder is not None:
            self._forwarder.close()
        if self._network is not None:
            self._network.close()
        if self._api is not None:
            await self._api.close()

    @property
    def api(self) -> KubeApi:
        """The admin API edge (started kubelets only)."""
        if self._api is None or self._runtime is None:
            raise RuntimeError("ProcessKubelet.start() first")
        return self._api

    @property
    def network(self) -> PodNetwork:
        """The pod network: bridge, subnet, gateway (started kubelets only)."""
        if self._network is None:
            raise RuntimeError("ProcessKubelet.start() first")
        return self._network

    @property
    def host_ip(self) -> str:
        """The host as pods see it (the bridge's address): bind servers for pods here or on 0.0.0.0."""
        if self._network is None:
            raise RuntimeError("ProcessKubelet.start() first")
        return self._network.gateway

    def expose_loopback_port(self, port: int) -> str:
        """Make a server on 127.0.0.1:``port`` reachable from pods at ``host_ip:port``; return host_ip."""
        if self._forwarder is None:
            raise RuntimeError("ProcessKubelet.start() first")
        if port not in self._exposed:
            self._exposed[port] = self._forwarder.listen((self.host_ip, port), ("127.0.0.1", port))
        return self.host_ip

    def pvc_path(self, namespace: str, claim: str) -> Path:
        """The host folder behind a PersistentVolumeClaim, shared by all its pods (created if missing)."""
        path = self.layout.pvc_dir(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pod_ip(self, namespace: str, pod_name: str) -> str:
        """The IP of a pod this kubelet runs."""
        return self._sandbox_named(namespace, pod_name).view.pod_ip

    def containers(self, namespace: str, pod_name: str) -> dict[str, RunningContainer]:
        """The latest run of each container (init containers included) of a pod this kubelet runs."""
        sandbox = self._sandbox_named(namespace, pod_name)
        return {**sandbox.init_containers, **sandbox.containers}

    async def register_node(self, name: str) -> None:
        """Make sure a Ready Node ``name`` exists, for pods bound to it (a DaemonSet makes one pod per
        node). Nodes created here are deleted on :meth:`close`."""
        created = await self.api.register_node(name, self.host_ip, self._rt.node)
        self._nodes[name] = self._nodes.get(name, False) or created

    async def wait_for_pods(
        self,
        namespace: str,
        label_selector: str,
        count: int = 1,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - the error says which pods are missing
        include_terminal: bool = False,
    ) -> list[Obj]:
        """Wait until at least ``count`` pods match, not being deleted and (unless
        ``include_terminal``) not ended; return them sorted by name."""
        return await self.api.wait_for_pods(
            namespace, label_selector, count, timeout=timeout, include_terminal=include_terminal
        )

    # -- running containers ------------------------------------------------------------------------

    async def run_container(
        self, namespace: str, pod_name: str, container_name: str, *, init: bool = False
    ) -> RunningContainer:
        """Start one (init) container of a pod as a process; the pod is bound and its status written.

        ContainerConfigError (a missing Secret, ConfigMap, key or claim; an unsupported volume) and
        ContainerStartError (executable not found) are also reported on the pod's status as the
        container's waiting reason, as the kubelet does.
        """
        sandbox = await self._sandbox_for(namespace, pod_name)
        container = find_container(sandbox.pod, container_name, init=init)
        runs = sandbox.init_containers if init else sandbox.containers
        previous = runs.get(container_name)
        if previous is not None and previous.returncode is None:
            raise RuntimeError(f"{previous!r} is still running")
        try:
            launch = await podsandbox.prepare(self.api, self._rt, sandbox, container)
        except (ContainerConfigError, ContainerStartError) as exc:
            sandbox.view.waiting[container_name] = (exc.reason, str(exc))
            await self._report(sandbox)
            raise
        sandbox.view.waiting.pop(container_name, None)
        podsandbox.prepare_mountpoints(launch.mounts, self.created_mountpoints)
        log_path = self.state_dir / "logs" / f"{namespace}_{pod_name}_{sandbox.uid}" / f"{container_name}.log"
        popen = podprocess.start(
            spec_dir=self.layout.pod_dir(sandbox.uid),
            log_path=log_path,
            netns=sandbox.interface.netns_path if sandbox.interface else None,
            hostname=sandbox.hostname,
            mounts=launch.mounts,
            argv=launch.argv,
            env=launch.env,
            working_dir=launch.working_dir,
        )
        runs[container_name] = RunningContainer(
            namespace=namespace,
            pod_name=pod_name,
            pod_uid=sandbox.uid,
            name=container_name,
            init=init,
            popen=popen,
            log_path=log_path,
            grace=sandbox.grace,
            restarts=previous.restarts + 1 if previous else 0,
        )
        await self._report(sandbox)
        return runs[container_name]

    async def run_pod_init_containers(
        self,
        namespace: str,
        pod_name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound for each init container
    ) -> dict[str, int]:
        """Run the init containers in order, each to its end, stopping at the first non-zero exit.

        Returns the exit codes of those that ran; they are reported in initContainerStatuses, and the
        app containers are reported waiting until all init containers succeeded.
        """
        sandbox = await self._sandbox_for(namespace, pod_name)
        sandbox.view.init_attempted = True
        sandbox.init_containers.clear()
        codes: dict[str, int] = {}
        for container in sandbox.pod["spec"].get("initContainers", []):
            handle = await self.run_container(namespace, pod_name, container["name"], init=True)
            await handle.wait(timeout)
            codes[container["name"]] = handle.snapshot().exit_code or 0
            await self._report(sandbox)
            if codes[container["name"]] != 0:
                break
        return codes

    async def run_pod(
        self,
        namespace: str,
        pod_name: str,
        containers: Collection[str] | None = None,
        *,
        init: bool = True,
        init_timeout: float | None = None,
    ) -> dict[str, RunningContainer]:
        """Run the init containers (when ``init``), then the named app containers (default: all).

        Containers not named are reported running (stand-ins for images that cannot run here).
        InitContainerError when an init container fails; then no app container starts.
        """
        sandbox = await self._sandbox_for(namespace, pod_name)
        if init and sandbox.pod["spec"].get("initContainers"):
            codes = await self.run_pod_init_containers(namespace, pod_name, timeout=init_timeout)
            if any(code != 0 for code in codes.values()):
                raise InitContainerError(pod_ref(sandbox.pod), codes)
        names = [c["name"] for c in sandbox.pod["spec"]["containers"]]
        if containers is not None:
            if unknown := set(containers) - set(names):
                raise LookupError(f"pod {pod_ref(sandbox.pod)} has no containers {sorted(unknown)}")
            names = [n for n in names if n in containers]
        return {name: await self.run_container(namespace, pod_name, name) for name in names}

    async def run_to_completion(
        self,
        namespace: str,
        pod_name: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - the error names the container and its log
    ) -> PodResult:
        """Run a pod's init containers, then all its containers to their end (a Job's pod), and report
        the outcome on its status, so the Job controller counts the pod succeeded or failed."""
        deadline = time.monotonic() + timeout
        init_codes = await self.run_pod_init_containers(namespace, pod_name, timeout=timeout)
        codes: dict[str, int] = {}
        if all(code == 0 for code in init_codes.values()):
            handles = await self.run_pod(namespace, pod_name, init=False)
            for name, handle in handles.items():
                await handle.wait(max(0.0, deadline - time.monotonic()))
                codes[name] = handle.snapshot().exit_code or 0
        status = await self._report(self._sandbox_named(namespace, pod_name))
        return PodResult(str(status.get("phase", "")), codes, init_codes)

    async def run_job(
        self,
        namespace: str,
        job_name: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - passed on to the waits
    ) -> PodResult:
        """Wait for the Job's (next) pod and run it to completion."""
        selector = f"batch.kubernetes.io/job-name={job_name}"
        pods = await self.wait_for_pods(namespace, selector, timeout=timeout)
        return await self.run_to_completion(namespace, pods[0]["metadata"]["name"], timeout=timeout)

    async def stop_pod(self, namespace: str, pod_name: str, grace: float | None = None) -> None:
        """Terminate every running container of a pod (SIGTERM, grace, SIGKILL); the pod object stays."""
        sandbox = self._sandbox_named(namespace, pod_name)
        await asyncio.gather(*(h.terminate(grace) for h in sandbox.handles()))
        await self._report(sandbox)

    async def refresh_volumes(self, namespace: str, pod_name: str) -> None:
        """Rewrite a pod's configMap, secret, downwardAPI and projected volumes from the API at once,
        as the kubelet's periodic sync does (running containers see the new files; subPath mounts
        keep the old ones)."""
        sandbox = self._sandbox_named(namespace, pod_name)
        pod = await self.api.call(self.api.core.read_namespaced_pod, pod_name, namespace)
        sandbox.pod = sandbox.with_network_status(pod)
        objects = await self.api.objects(sandbox.pod)
        await podsandbox.materialise(self.api, self._rt, sandbox.pod, objects, api_data_only=True)

    # -- sandboxes ---------------------------------------------------------------------------------

    @property
    def _rt(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("ProcessKubelet.start() first")
        return self._runtime

    def _sandbox_named(self, namespace: str, pod_name: str) -> Sandbox:
        for sandbox in self._sandboxes.values():
            meta = sandbox.pod["metadata"]
            if meta["namespace"] == namespace and meta["name"] == pod_name and not sandbox.finalizing:
                return sandbox
        raise LookupError(f"pod {namespace}/{pod_name} is not run by this kubelet")

    async def _sandbox_for(self, namespace: str, pod_name: str) -> Sandbox:
        """Read the pod, bind it to a node when unbound, and set up its network and folders once."""
        if self._closed or self._network is None or self._forwarder is None:
            raise RuntimeError("the process kubelet is not running (start() it; it may be closed)")
        api = self.api
        pod = await api.call(api.core.read_namespaced_pod, pod_name, namespace)
        if pod["metadata"].get("deletionTimestamp"):
            raise RuntimeError(f"pod {namespace}/{pod_name} is being deleted")
        if not pod["spec"].get("nodeName"):
            await api.bind(namespace, pod_name, podsandbox.node_for(pod, self.node_name))
            pod = await api.call(api.core.read_namespaced_pod, pod_name, namespace)
        uid = pod["metadata"]["uid"]
        self._owned.add(uid)
        if uid in self._sandboxes:
            sandbox = self._sandboxes[uid]
            sandbox.pod = sandbox.with_network_status(pod)
            return sandbox
        sandbox = podsandbox.create(pod, self._rt, self._network, self._forwarder, self.host_ip)
        self._sandboxes[uid] = sandbox
        return sandbox

    def _remove_sandbox(self, sandbox: Sandbox) -> None:
        """Release a pod's network and folder (its containers have ended); logs and claims stay."""
        self._sandboxes.pop(sandbox.uid, None)
        if sandbox.listener is not None and self._forwarder is not None:
            self._forwarder.close_listener(sandbox.listener)
        if sandbox.interface is not None and self._network is not None:
            self._network.remove(sandbox.uid)
        shutil.rmtree(self.layout.pod_dir(sandbox.uid), ignore_errors=True)

    # -- status and deletion -----------------------------------------------------------------------

    async def _report(self, sandbox: Sandbox) -> Obj:
        """Write the pod's status as the kubelet would; return it."""
        view = sandbox.sync_view()
        status = pod_status(sandbox.pod, view, now())
        try:
            await self.api.patch_pod_status(sandbox.pod, status)
        except ApiError as exc:
            if exc.status != 404:
                raise
        sandbox.reported = fingerprint(view)
        sandbox.status = status
        return status

    async def sync(self) -> None:
        """One round of the background sync: report containers that changed, finish deletions."""
        for sandbox in list(self._sandboxes.values()):
            if not sandbox.finalizing and fingerprint(sandbox.sync_view()) != sandbox.reported:
                await self._report(sandbox)
        for node in list(self._nodes):
            listed_at = time.monotonic()
            pods = await self.api.pods_on(node)
            present = {pod["metadata"]["uid"] for pod in pods}
            for pod in pods:
                uid = pod["metadata"]["uid"]
                terminating = pod["metadata"].get("deletionTimestamp")
                if terminating and uid in self._owned and uid not in self._finalized:
                    self._finalized.add(uid)
                    self._finalizing[uid] = asyncio.create_task(self._finalize(pod), name=f"finalize-{uid}")
            for sandbox in list(self._sandboxes.values()):
                gone = sandbox.node == node and sandbox.uid not in present and sandbox.created < listed_at
                if gone and not sandbox.finalizing:
                    sandbox.finalizing = True
                    await asyncio.gather(*(h.kill() for h in sandbox.handles()))
                    self._remove_sandbox(sandbox)

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync()
            except (ApiError, OSError, client.ApiException) as exc:
                log.warning("process kubelet sync: %s", exc)
            await asyncio.sleep(self.sync_interval)

    async def _finalize(self, pod: Obj) -> None:
        """Stop a deleted pod's containers within its grace period, then delete it for good."""
        meta = pod["metadata"]
        try:
            sandbox = self._sandboxes.get(meta["uid"])
            if sandbox is not None:
                sandbox.finalizing = True
                grace = float(meta.get("deletionGracePeriodSeconds", sandbox.grace))
                await asyncio.gather(*(h.terminate(grace) for h in sandbox.handles()))
                self._remove_sandbox(sandbox)
            await self.api.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
        except (ApiError, OSError, client.ApiException) as exc:
            log.warning("process kubelet: finishing the deletion of %s: %s", pod_ref(pod), exc)
        finally:
            self._finalizing.pop(meta["uid"], None)
