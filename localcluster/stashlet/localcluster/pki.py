"""Certificates and keys for the local control plane.

A CA, the API server's serving certificate, client certificates for the admin and the controller
manager, the service-account signing key, and what the aggregation layer needs: a front-proxy CA of its
own and the client certificate the API server presents to extension API servers (which trust that CA, as
``requestheader-client-ca-file`` of ConfigMap kube-system/extension-apiserver-authentication, and the
certificate's name, ``requestheader-allowed-names``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
FRONT_PROXY_CLIENT = "front-proxy-client"
"""The common name of the API server's front-proxy client certificate (its only allowed name)."""


@dataclass(frozen=True)
class Pki:
    """Paths of everything the control plane and its clients need."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA that signs every certificate here; clients trust it."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key."""
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        """kube-apiserver's serving certificate."""
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        """kube-apiserver's serving key."""
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        """Private key that signs service-account tokens."""
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """Public key that verifies service-account tokens."""
        return self.directory / "sa.pub"

    @property
    def front_proxy_ca_cert(self) -> Path:
        """The CA of the front-proxy client certificate (a CA of its own: a certificate it signs is no
        user of the API server)."""
        return self.directory / "front-proxy-ca.crt"

    @property
    def front_proxy_ca_key(self) -> Path:
        """The front-proxy CA's private key."""
        return self.directory / "front-proxy-ca.key"

    @property
    def front_proxy_client_cert(self) -> Path:
        """The client certificate the API server proxies to extension API servers with."""
        return self.directory / f"{FRONT_PROXY_CLIENT}.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        """The front-proxy client certificate's private key."""
        return self.directory / f"{FRONT_PROXY_CLIENT}.key"

    def client_cert(self, user: str) -> Path:
        """A client certificate for ``user``."""
        return self.directory / f"{user}.crt"

    def client_key(self, user: str) -> Path:
        """The private key of ``user``'s client certificate."""
        return self.directory / f"{user}.key"


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def create(
    directory: Path, client_users: dict[str, str | None], *, extra_ips: list[str] | None = None
) -> Pki:
    """Create a fresh PKI in ``directory``; ``client_users`` maps user name to group (or None).

    The API server's certificate covers loopback, the ``kubernetes`` Service and ``extra_ips``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("stashlet-local-ca")
    ca_cert = _sign(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write_key(ca_key, pki.ca_key)
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips or [] if ip != "127.0.0.1"]
    serving = _sign(
        _name("kube-apiserver"),
        serving_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=sans,
    )
    _write_key(serving_key, pki.serving_key)
    pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))

    for user, group in client_users.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign(_name(user, group), key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
        _write_key(key, pki.client_key(user))
        pki.client_cert(user).write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    front_key = ec.generate_private_key(ec.SECP256R1())
    front_name = _name("stashlet-local-front-proxy-ca")
    front_ca = _sign(front_name, front_key, front_name, front_key, ca=True)
    _write_key(front_key, pki.front_proxy_ca_key)
    pki.front_proxy_ca_cert.write_bytes(front_ca.public_bytes(serialization.Encoding.PEM))
    proxy_key = ec.generate_private_key(ec.SECP256R1())
    proxy = _sign(
        _name(FRONT_PROXY_CLIENT), proxy_key, front_name, front_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    _write_key(proxy_key, pki.front_proxy_client_key)
    pki.front_proxy_client_cert.write_bytes(proxy.public_bytes(serialization.Encoding.PEM))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(sa_key, pki.sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def serving_certificate(
    authority: Pki, name: str, dns_names: list[str], directory: Path
) -> tuple[Path, Path]:
    """A server certificate for ``dns_names`` signed by ``authority``'s CA, written as ``<name>.crt`` and
    ``<name>.key`` in ``directory``: (certificate, key) PEM files. For servers the tests start (an object
    store over HTTPS), beside the control plane's own."""
    ca_key = serialization.load_pem_private_key(authority.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{authority.ca_key} is not an EC key")
    issuer = x509.load_pem_x509_certificate(authority.ca_cert.read_bytes()).subject
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    cert = _sign(_name(name), key, issuer, ca_key, usage=[ExtendedKeyUsageOID.SERVER_AUTH], sans=sans)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_key(key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
