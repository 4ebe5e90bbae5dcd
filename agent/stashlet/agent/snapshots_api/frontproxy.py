"""Who is asking: the API server's front proxy, trusted as an extension API server must trust it.

The aggregation layer connects with its proxy client certificate, signed by the front-proxy CA that
ConfigMap ``kube-system/extension-apiserver-authentication`` publishes (``requestheader-client-ca-file``),
and names the user in headers (``requestheader-username-headers``, ``-group-headers``,
``-extra-headers-prefix``). A request is the user's only when the TLS layer verified its certificate
against that CA and the certificate's common name is one of ``requestheader-allowed-names`` (any, when the
list is empty, as the API server's own authenticator does). Anything else is unauthenticated: this
server takes no tokens and no other certificates.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from stashlet.agent.errors import RefuseInput
from stashlet.kube.paths import core
from stashlet.kube.rest import KubeApi

log = logging.getLogger(__name__)

CONFIGMAP_NAMESPACE: Final = "kube-system"
CONFIGMAP_NAME: Final = "extension-apiserver-authentication"
CONFIGMAP: Final = f"ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"


class Unauthenticated(RefuseInput):
    """The request does not come from the trusted front proxy, or names no user."""


class FrontProxyUnconfigured(RefuseInput):
    """The cluster publishes no front-proxy CA (the API server runs without
    ``--requestheader-client-ca-file``)."""


@dataclass(frozen=True)
class RequestHeaderConfig:
    """How the front proxy is recognised and how it names the user."""

    client_ca: str
    """PEM: the CA the proxy's client certificate must chain to."""
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """The settings of the ConfigMap's ``data``; FrontProxyUnconfigured without a CA."""
        ca = data.get("requestheader-client-ca-file", "").strip()
        if not ca:
            raise FrontProxyUnconfigured(
                f"{CONFIGMAP} has no requestheader-client-ca-file: the API server runs without "
                "--requestheader-client-ca-file, so no request can be trusted as a user's"
            )

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if raw is None:
                return default
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                raise FrontProxyUnconfigured(f"{CONFIGMAP}: {key} is not a JSON list") from exc
            if not isinstance(parsed, list):
                raise FrontProxyUnconfigured(f"{CONFIGMAP}: {key} is not a JSON list")
            return tuple(str(item) for item in parsed)

        return cls(
            client_ca=ca,
            allowed_names=names("requestheader-allowed-names", ()),
            username_headers=names("requestheader-username-headers", cls.username_headers),
            group_headers=names("requestheader-group-headers", cls.group_headers),
            extra_prefixes=names("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )


async def read_config(api: KubeApi) -> RequestHeaderConfig:
    """The front proxy's settings as the cluster publishes them."""
    configmap = await api.send("GET", core("configmaps", CONFIGMAP_NAMESPACE, CONFIGMAP_NAME))
    return RequestHeaderConfig.from_configmap(configmap.get("data") or {})


@dataclass(frozen=True)
class User:
    """The user the front proxy names."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""


def common_name(peer_certificate: Mapping[str, Any] | None) -> str | None:
    """The subject's common name of a verified peer certificate (``SSLObject.getpeercert()``), None
    without one."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def verify_proxy(config: RequestHeaderConfig, peer_name: str | None) -> None:
    """Raise Unauthenticated unless a certificate the TLS layer verified against the front-proxy CA was
    presented and its name is allowed."""
    if peer_name is None:
        raise Unauthenticated("no client certificate of the front proxy was presented")
    if config.allowed_names and peer_name not in config.allowed_names:
        raise Unauthenticated(f"client certificate {peer_name!r} is not one of requestheader-allowed-names")


def authenticate(
    config: RequestHeaderConfig, peer_name: str | None, headers: Sequence[tuple[str, str]]
) -> User:
    """The user of a request from the front proxy (``headers``: every header line, names in any case)."""
    verify_proxy(config, peer_name)

    def values(names: Sequence[str]) -> list[str]:
        wanted = {n.lower() for n in names}
        return [value.strip() for name, value in headers if name.lower() in wanted and value.strip()]

    users = values(config.username_headers)
    if not users:
        raise Unauthenticated("the front proxy named no user")
    extra: dict[str, list[str]] = {}
    prefixes = [p.lower() for p in config.extra_prefixes]
    for name, value in headers:
        lower = name.lower()
        prefix = next((p for p in prefixes if lower.startswith(p)), None)
        if prefix is not None:
            extra.setdefault(unquote(lower[len(prefix) :]), []).append(value.strip())
    return User(users[0], tuple(values(config.group_headers)), {k: tuple(v) for k, v in extra.items()})


def tls_context(cert_file: str, key_file: str, config: RequestHeaderConfig) -> ssl.SSLContext:
    """The server's TLS context: its serving certificate, client certificates verified against the
    front-proxy CA when presented (a client without one may still connect: probes, refused later)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=config.client_ca)
    return context
