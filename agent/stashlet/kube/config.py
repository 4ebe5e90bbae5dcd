"""Where the API server is and who this process is to it: in-cluster config, a token directory, a kubeconfig.

In a pod (the service-account token and CA are mounted and KUBERNETES_SERVICE_HOST is set) the pod's own
identity is used; elsewhere the kubeconfig in ``$KUBECONFIG`` or ``~/.kube/config``. A process given a
token of its own (``$STASHLET_KUBE_TOKEN_DIR``, a mounted ServiceAccount token Secret: ``token`` and
``ca.crt``; see :mod:`stashlet.api.agent_identity`) talks as that account instead, in or out of a pod whose
own account it then never uses; a token file is read again every minute, so a new one is taken up without
a restart.

A kubeconfig user may hold a token, a token file or a client certificate and key (files or data); anything
else (``exec``, ``auth-provider``, basic auth) is refused with :class:`KubeconfigError` naming the file and
the user. Only the cluster's CA is trusted (the system's bundle only when the cluster names none).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stashlet.api import agent_identity

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_WAIT_SECONDS = 180.0
"""How long a process given a token directory waits for the token to be there: the token controller fills
the Secret moments after the operator makes it, but a pod that mounted it still empty sees the token only
at the kubelet's next sync of the volume (about a minute)."""
TOKEN_REREAD_SECONDS = 60.0
DEFAULT_KUBECONFIG = Path("~/.kube/config")

log = logging.getLogger(__name__)


class TokenUnavailable(RuntimeError):
    """The token directory this process was given holds no token (and CA) within the wait."""


class KubeconfigError(ValueError):
    """A kubeconfig this process cannot use; the message names the file and the entry."""


def in_cluster() -> bool:
    """True when this process runs with a pod's service-account identity."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()


def own_token_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The token directory this process was given (``$STASHLET_KUBE_TOKEN_DIR``), or None."""
    value = (os.environ if environ is None else environ).get(agent_identity.ENV_KUBE_TOKEN_DIR)
    return Path(value) if value else None


def own_namespace() -> str | None:
    """The namespace of this pod, from the service-account mount or $NAMESPACE."""
    path = SERVICE_ACCOUNT_DIR / "namespace"
    if path.is_file():
        return path.read_text().strip()
    return os.environ.get("NAMESPACE")


def token_ready(directory: Path) -> bool:
    """True when ``directory`` holds a non-empty ``token`` and ``ca.crt``."""
    try:
        return all((directory / name).stat().st_size > 0 for name in ("token", "ca.crt"))
    except OSError:
        return False


async def wait_for_token(directory: Path, *, within: float = TOKEN_WAIT_SECONDS, every: float = 2.0) -> None:
    """Return once ``directory`` holds a token and CA; :class:`TokenUnavailable` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    told = False
    while not await asyncio.to_thread(token_ready, directory):
        if loop.time() >= deadline:
            raise TokenUnavailable(
                f"no ServiceAccount token in {directory} after {within:.0f} s (its Secret is filled by the "
                "token controller of kube-controller-manager)"
            )
        if not told:
            log.info("waiting for the service account token", extra={"directory": str(directory)})
            told = True
        await asyncio.sleep(every)


def in_cluster_server(environ: Mapping[str, str] | None = None) -> str:
    """``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``; KubeconfigError when unset."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeconfigError(
            "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
            "(not in a pod?)"
        )
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@dataclass
class ClusterConfig:
    """One API server and one identity: a bearer token (or its file), or a client certificate."""

    server: str
    source: str
    """Where this came from, for messages: ``kubeconfig /x (user admin)``, ``token directory /y``."""
    ca_file: Path | None = None
    ca_data: str | None = None
    insecure: bool = False
    token: str | None = None
    token_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    _token_read: tuple[float, str] | None = field(default=None, repr=False)

    def bearer_token(self) -> str | None:
        """The token to send; a token file is read again once a minute."""
        if self.token_file is None:
            return self.token
        now = time.monotonic()
        if self._token_read is None or now - self._token_read[0] >= TOKEN_REREAD_SECONDS:
            self._token_read = (now, self.token_file.read_text().strip())
        return self._token_read[1]

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting the cluster's CA only, with the client certificate when there is one;
        KubeconfigError naming where they came from when they cannot be loaded."""
        try:
            return self._ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise KubeconfigError(f"{self.source}: CA or client certificate unusable: {exc}") from exc

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_file is not None or self.ca_data is not None:
            context.load_verify_locations(
                cafile=str(self.ca_file) if self.ca_file else None, cadata=self.ca_data
            )
        else:
            context.load_default_certs()
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data is not None and self.key_data is not None:
            _load_chain_from_data(context, self.cert_data, self.key_data)
        return context


def _load_chain_from_data(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load a certificate and key given as data: ssl reads files only, so through a private temp dir."""
    with tempfile.TemporaryDirectory(prefix="stashlet-tls-") as private:
        cert_path, key_path = Path(private) / "tls.crt", Path(private) / "tls.key"
        for path, data in ((cert_path, cert), (key_path, key)):
            path.touch(mode=0o600)
            path.write_bytes(data)
        context.load_cert_chain(cert_path, key_path)


def token_dir_config(directory: Path) -> ClusterConfig:
    """This pod's API server as the account whose token and CA are in ``directory``."""
    return ClusterConfig(
        server=in_cluster_server(),
        source=f"token directory {directory}",
        ca_file=directory / "ca.crt",
        token_file=directory / "token",
    )


def kubeconfig_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files to read: ``$KUBECONFIG`` (a list, as kubectl takes it) or ``~/.kube/config``."""
    value = (os.environ if environ is None else environ).get("KUBECONFIG", "")
    paths = [Path(part).expanduser() for part in value.split(os.pathsep) if part]
    return paths or [DEFAULT_KUBECONFIG.expanduser()]


def _data(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError as exc:
        raise KubeconfigError(f"{where}: not base64") from exc


def _parse(path: Path) -> Any:
    """A kubeconfig's content: JSON (what stashlet and the local cluster write) or any YAML."""
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # PyYAML only for a kubeconfig in YAML: a process given JSON or a token (every pod) never loads it.
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path}: neither JSON nor YAML: {exc}") from exc


def _relative(base: Path, value: Any) -> Path:
    """A path a kubeconfig names, relative to the kubeconfig's own folder unless absolute."""
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base.parent / path).resolve()


def _credentials(config: ClusterConfig, user: dict[str, Any], user_path: Path, where_user: str) -> None:
    """Put the kubeconfig ``user``'s token or client certificate into ``config``; refuse anything else."""
    unsupported = sorted(
        key for key in ("exec", "auth-provider", "username", "password", "as", "impersonate") if user.get(key)
    )
    if unsupported:
        raise KubeconfigError(
            f"{where_user}: {', '.join(unsupported)} is not supported; give the user a token, a tokenFile "
            "or a client certificate and key"
        )
    if user.get("token"):
        config.token = str(user["token"])
    elif user.get("tokenFile"):
        config.token_file = _relative(user_path, user["tokenFile"])
    if user.get("client-certificate-data") or user.get("client-key-data"):
        config.cert_data = _data(
            user.get("client-certificate-data", ""), where_user + " client-certificate-data"
        )
        config.key_data = _data(user.get("client-key-data", ""), where_user + " client-key-data")
    elif user.get("client-certificate") or user.get("client-key"):
        if not (user.get("client-certificate") and user.get("client-key")):
            raise KubeconfigError(f"{where_user}: client-certificate and client-key go together")
        config.cert_file = _relative(user_path, user["client-certificate"])
        config.key_file = _relative(user_path, user["client-key"])


def kubeconfig_config(paths: list[Path], context_name: str | None = None) -> ClusterConfig:
    """The cluster and user of the current (or named) context of the merged kubeconfig ``paths``.

    As kubectl merges: the first file that names an entry wins; relative file paths are relative to the
    file that names them.
    """
    merged: dict[str, list[tuple[Path, dict[str, Any]]]] = {"clusters": [], "users": [], "contexts": []}
    current = context_name
    readable = [path for path in paths if path.is_file()]
    if not readable:
        raise KubeconfigError(f"no kubeconfig: {', '.join(map(str, paths))} not found (and not in a pod)")
    for path in readable:
        doc = _parse(path)
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {path}: not a mapping")
        current = current or doc.get("current-context") or None
        for section, items in merged.items():
            items.extend((path, entry) for entry in doc.get(section) or [] if isinstance(entry, dict))
    label = ", ".join(map(str, readable))
    if not current:
        raise KubeconfigError(f"kubeconfig {label}: no current-context")

    def find(section: str, name: str) -> tuple[Path, dict[str, Any]]:
        for path, entry in merged[section]:
            if entry.get("name") == name:
                inner = entry.get(section[:-1])
                return path, inner if isinstance(inner, dict) else {}
        raise KubeconfigError(f"kubeconfig {label}: no {section[:-1]} named {name!r}")

    _, context = find("contexts", str(current))
    cluster_path, cluster = find("clusters", str(context.get("cluster", "")))
    user_name = str(context.get("user", ""))
    user_path, user = find("users", user_name) if user_name else (cluster_path, {})
    where_cluster = f"kubeconfig {cluster_path} (cluster {context.get('cluster')!r})"
    where_user = f"kubeconfig {user_path} (user {user_name!r})"
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError(f"{where_cluster}: no server")

    config = ClusterConfig(server=server, source=where_user)
    config.insecure = bool(cluster.get("insecure-skip-tls-verify"))
    if cluster.get("certificate-authority-data"):
        config.ca_data = _data(cluster["certificate-authority-data"], where_cluster).decode()
    elif cluster.get("certificate-authority"):
        config.ca_file = _relative(cluster_path, cluster["certificate-authority"])
    _credentials(config, user, user_path, where_user)
    return config


async def load_config(kubeconfig: str | None = None) -> ClusterConfig:
    """The config to use: ``kubeconfig`` wins over a token directory given (:func:`own_token_dir`), which
    wins over in-cluster config, which wins over ``$KUBECONFIG`` / ``~/.kube/config``."""
    token_dir = own_token_dir()
    if kubeconfig is not None:
        return kubeconfig_config([Path(kubeconfig)])
    if token_dir is not None:
        await wait_for_token(token_dir)
        return token_dir_config(token_dir)
    if in_cluster():
        return ClusterConfig(
            server=in_cluster_server(),
            source="in-cluster service account",
            ca_file=SERVICE_ACCOUNT_DIR / "ca.crt",
            token_file=SERVICE_ACCOUNT_DIR / "token",
        )
    return kubeconfig_config(kubeconfig_paths())
