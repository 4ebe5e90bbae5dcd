"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager on loopback.

The API server runs with RBAC authorization and service-account tokens, like a real cluster, so the
agent and the operator can be run with their own, least-privileged identities. It runs the aggregation
layer as a real cluster does: a front-proxy CA and client certificate (``--requestheader-*``,
``--proxy-client-*``), and, as no kube-proxy runs beside it, ``--enable-aggregator-routing`` (it dials an
APIService's Service endpoints directly, not its cluster IP). Everything lives in
one folder: certificates, kubeconfigs, data, logs and a ``state.json`` that ``down`` reads.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stashlet.localcluster import pki as pki_mod
from stashlet.localcluster import tools
from stashlet.localcluster.processes import ManagedProcess, check_port_free, free_port, wait_until

ADMIN_USER = "stashlet-admin"
KCM_USER = "system:kube-controller-manager"
NODE_USERS: dict[str, str | None] = {
    "kubelet": "system:nodes",
    "kube-scheduler": None,
    "kube-proxy": None,
}
"""The node's components, by the name of their kubeconfig; their users are in :func:`node_user`."""
SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
STATE_FILE = "state.json"


@dataclass
class Ports:
    """Loopback ports of the control plane's servers."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int

    @classmethod
    def pick(cls, apiserver: int | None = None) -> Ports:
        """Free ports; an explicit API server port is checked and reported when taken."""
        if apiserver is not None:
            check_port_free(apiserver, "kube-apiserver")
        return cls(free_port(), free_port(), apiserver or free_port(), free_port())


@dataclass
class ClusterState:
    """What ``up`` wrote and ``down`` and ``env`` read."""

    directory: str
    server: str
    kubeconfig: str
    ports: Ports
    pids: dict[str, int] = field(default_factory=dict)
    node: bool = False

    def save(self) -> None:
        """Write state.json into the cluster folder."""
        (Path(self.directory) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ClusterState:
        """Read state.json; FileNotFoundError when no cluster was brought up there."""
        data = json.loads((directory / STATE_FILE).read_text())
        data["ports"] = Ports(**data["ports"])
        return cls(**data)


def _kubeconfig(server: str, pki: pki_mod.Pki, user: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "stashlet-local",
                    "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(pki.client_cert(user)),
                        "client-key": str(pki.client_key(user)),
                    },
                }
            ],
            "contexts": [{"name": "stashlet-local", "context": {"cluster": "stashlet-local", "user": user}}],
            "current-context": "stashlet-local",
        },
        indent=2,
    )


def node_user(component: str, node_name: str) -> str:
    """The user name a node component authenticates as (RBAC's and the Node authorizer's names)."""
    return f"system:node:{node_name}" if component == "kubelet" else f"system:{component}"


class ControlPlane:
    """Start and stop etcd, kube-apiserver and kube-controller-manager in one folder.

    With ``node_name`` the API server listens on ``address`` (an address pods reach, not loopback),
    authorizes kubelets with the Node authorizer, reaches them for logs, exec and port-forward, and
    the controller manager runs the node-lifecycle controller and the host-path volume provisioner.
    """

    def __init__(
        self,
        directory: Path,
        *,
        controller_manager: bool = True,
        tie_to_parent: bool = True,
        address: str = "127.0.0.1",
        node_name: str | None = None,
    ) -> None:
        """Prepare (nothing starts until :meth:`start`)."""
        self.directory = directory
        self.controller_manager = controller_manager
        self.tie_to_parent = tie_to_parent
        self.address = address
        self.node_name = node_name
        self.processes: list[ManagedProcess] = []
        self.state: ClusterState | None = None
        self._argv: dict[str, list[str]] = {}

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in group system:masters)."""
        return self.directory / "kubeconfig"

    @property
    def pki(self) -> pki_mod.Pki:
        """The control plane's certificates and keys."""
        return pki_mod.Pki(self.directory / "pki")

    def component_kubeconfig(self, component: str) -> Path:
        """The kubeconfig of a node component (``kubelet``, ``kube-scheduler``, ``kube-proxy``)."""
        return self.directory / f"{component}.kubeconfig"

    def start(
        self,
        *,
        apiserver_port: int | None = None,
        crds: Path | None = None,
        timeout: float = 90,
        fresh: bool = True,
    ) -> ClusterState:
        """Start everything, wait until the API server is ready, then install ``crds`` if given.

        ``fresh`` empties the folder first (a caller that already prepared it passes False).
        """
        binaries = {
            b: tools.ensure(b) for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        }
        ports = Ports.pick(apiserver_port)
        if fresh and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        users: dict[str, str | None] = {ADMIN_USER: "system:masters", KCM_USER: None}
        if self.node_name:
            users |= {node_user(c, self.node_name): group for c, group in NODE_USERS.items()}
        pki = pki_mod.create(self.pki.directory, users, extra_ips=[self.address])
        server = f"https://{self.address}:{ports.apiserver}"
        self.kubeconfig.write_text(_kubeconfig(server, pki, ADMIN_USER))
        kcm_kubeconfig = self.directory / "kcm.kubeconfig"
        kcm_kubeconfig.write_text(_kubeconfig(server, pki, KCM_USER))
        if self.node_name:
            for component in NODE_USERS:
                self.component_kubeconfig(component).write_text(
                    _kubeconfig(server, pki, node_user(component, self.node_name))
                )
        self.state = ClusterState(str(self.directory), server, str(self.kubeconfig), ports)
        logs = self.directory / "logs"
        try:
            etcd = self._spawn(
                "etcd",
                [
                    str(binaries["etcd"]),
                    "--data-dir",
                    str(self.directory / "etcd"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{ports.etcd_client}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{ports.etcd_client}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{ports.etcd_peer}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{ports.etcd_peer}",
                    "--initial-cluster",
                    f"default=http://127.0.0.1:{ports.etcd_peer}",
                    "--unsafe-no-fsync",
                    "--log-level",
                    "warn",
                ],
                logs,
            )
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
                timeout=timeout,
                what="etcd",
                process=etcd,
            )
            apiserver = self._spawn(
                "kube-apiserver",
                [
                    str(binaries["kube-apiserver"]),
                    f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                    f"--bind-address={self.address}",
                    f"--advertise-address={self.address}",
                    f"--secure-port={ports.apiserver}",
                    f"--cert-dir={self.directory / 'apiserver'}",
                    f"--tls-cert-file={pki.serving_cert}",
                    f"--tls-private-key-file={pki.serving_key}",
                    f"--client-ca-file={pki.ca_cert}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--service-account-issuer={SA_ISSUER}",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    "--allow-privileged=true",
                    "--enable-priority-and-fairness=false",
                    "--event-ttl=1h",
                    *_aggregation_flags(pki),
                    *self._node_apiserver_flags(pki),
                ],
                logs,
            )
            context = _ssl_context(pki)
            wait_until(
                lambda: http_ok(f"{server}/readyz", context),
                timeout=timeout,
                what="kube-apiserver /readyz",
                process=apiserver,
            )
            if self.controller_manager:
                kcm = self._spawn(
                    "kube-controller-manager",
                    [
                        str(binaries["kube-controller-manager"]),
                        f"--kubeconfig={kcm_kubeconfig}",
                        f"--authentication-kubeconfig={kcm_kubeconfig}",
                        f"--authorization-kubeconfig={kcm_kubeconfig}",
                        "--bind-address=127.0.0.1",
                        f"--secure-port={ports.controller_manager}",
                        f"--cert-dir={self.directory / 'kcm'}",
                        f"--service-account-private-key-file={pki.sa_key}",
                        f"--root-ca-file={pki.ca_cert}",
                        "--use-service-account-credentials=true",
                        "--leader-elect=false",
                        *self._node_kcm_flags(),
                    ],
                    logs,
                )
                wait_until(
                    lambda: http_ok(
                        f"https://127.0.0.1:{ports.controller_manager}/healthz", _insecure_context()
                    ),
                    timeout=timeout,
                    what="kube-controller-manager /healthz",
                    process=kcm,
                )
            if crds is not None:
                self.install_crds(crds)
        except BaseException:
            self.stop()
            raise
        self.state.save()
        return self.state

    def _node_apiserver_flags(self, pki: pki_mod.Pki) -> list[str]:
        if not self.node_name:
            return ["--authorization-mode=RBAC"]
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki.client_cert(ADMIN_USER)}",
            f"--kubelet-client-key={pki.client_key(ADMIN_USER)}",
        ]

    def _node_kcm_flags(self) -> list[str]:
        if not self.node_name:
            return [
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,"
                "-persistentvolume-binder,-persistentvolume-expander,-attachdetach,-route"
            ]
        # A node: its lifecycle controller lifts the not-ready taint, the PV binder and the host-path
        # provisioner give PersistentVolumeClaims their volumes.
        return [
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--enable-hostpath-provisioner=true",
            "--node-monitor-grace-period=20s",
        ]

    def _spawn(self, name: str, argv: list[str], logs: Path) -> ManagedProcess:
        process = ManagedProcess.start(name, argv, logs / f"{name}.log", tie_to_parent=self.tie_to_parent)
        self._argv[name] = argv
        self.processes.append(process)
        if self.state is not None:
            self.state.pids[name] = process.pid
            self.state.save()
        return process

    def restart_apiserver(self, down_for: float = 0.0, timeout: float = 60) -> None:
        """Stop kube-apiserver, wait ``down_for`` seconds, start it again on the same port and data.

        For tests of what clients do when the API server goes away mid-watch.
        """
        if self.state is None:
            raise RuntimeError("start() the control plane first")
        server = self.state.server
        old = next(p for p in self.processes if p.name == "kube-apiserver")
        old.stop()
        self.processes.remove(old)
        time.sleep(down_for)
        new = self._spawn("kube-apiserver", self._argv["kube-apiserver"], self.directory / "logs")
        context = _ssl_context(self.pki)
        wait_until(
            lambda: http_ok(f"{server}/readyz", context),
            timeout=timeout,
            what="kube-apiserver /readyz after restart",
            process=new,
        )

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane as the admin."""
        result = subprocess.run(
            [str(tools.ensure("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def install_crds(self, crds: Path) -> None:
        """Apply every CRD in ``crds`` and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))

    def stop(self) -> None:
        """Stop every process this object started, newest first."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def _aggregation_flags(pki: pki_mod.Pki) -> list[str]:
    """What the aggregation layer needs: extension API servers trust the front proxy's CA and name
    (published in ConfigMap kube-system/extension-apiserver-authentication) and read the user from its
    headers; the API server dials an APIService's endpoints itself (no kube-proxy here)."""
    return [
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        f"--requestheader-allowed-names={pki_mod.FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
        "--enable-aggregator-routing=true",
    ]


def _ssl_context(pki: pki_mod.Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert(ADMIN_USER)), str(pki.client_key(ADMIN_USER)))
    return context


def _insecure_context() -> ssl.SSLContext:
    """The controller manager serves /healthz with a self-signed certificate of its own."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def wait_for_default_service_account(
    plane: ControlPlane, namespace: str = "default", timeout: float = 60
) -> None:
    """Wait until the controller manager has created a namespace's ``default`` service account."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if plane.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"service account {namespace}/default did not appear in {timeout:.0f}s")
