"""Azurite, Microsoft's Azure Storage emulator (npm ``azurite``, pinned in versions.AZURITE), for the
``azure`` backend: installed once into the cache with npm, started over HTTPS with its own account
and key, and stopped.

restic always reaches ``https://<account>.blob.<AZURE_ENDPOINT_SUFFIX>/<container>``; Azurite takes
the account from the Host header's first label when the host is a name with a dot (its
"production-style" URLs; an IP or a name without a dot makes it read the account from the path).
So the server is ``<ACCOUNT>.blob.<SUFFIX_HOST>:<port>`` (the suffix carries the port), with a
certificate for that name from a private CA made by :mod:`stashlet.localcluster.pki`.

That name resolves nowhere: pods get it through ``hostAliases``; restic on this host runs in a mount
namespace of its own where ``/etc/hosts`` is a file naming it (:meth:`Azurite.restic_wrapper`), the
host's ``/etc/hosts`` is never touched. Go's resolver (restic is a static Go binary) gives no special
meaning to ``*.localhost`` here (only with an nsswitch ``myhostname`` source), and ``.test`` is the
name space RFC 6761 keeps for tests.
"""

from __future__ import annotations

import base64
import email.utils
import hmac
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from tests import polling

from stashlet.api import versions
from stashlet.localcluster import pki, tools
from stashlet.localcluster.processes import ManagedProcess, free_port

ACCOUNT = "stashletbackups"
"""The storage account Azurite serves (AZURITE_ACCOUNTS), not its built-in devstoreaccount1."""
SUFFIX_HOST = "azurite.test"
API_VERSION = "2025-11-05"
"""The Blob API version of the listing :meth:`Azurite.blob_names` makes (restic 0.18.1's SDK speaks it)."""
ACCESS_TIER = "Hot"
"""The tier the Secret names (AZURE_ACCESS_TIER): Azurite refuses restic's empty tier header."""


def install() -> Path:
    """The pinned Azurite's blob server script, installed with npm into the cache once (under a lock)."""
    final = tools.cache_dir() / "tools" / f"azurite-{versions.AZURITE}"
    script = final / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    with tools.locked(final.parent / f".{final.name}.lock"):
        if script.is_file():
            return script
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise tools.ToolError(f"Azurite {versions.AZURITE} needs node and npm on PATH to install")
        workdir = Path(tempfile.mkdtemp(prefix=f"install-{final.name}-", dir=final.parent))
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(workdir), "--no-audit", "--no-fund", "--ignore-scripts",
                 f"azurite@{versions.AZURITE}"],
                capture_output=True, text=True, check=False, timeout=600,
            )  # fmt: skip
            if done.returncode != 0:
                raise tools.ToolError(
                    f"npm install azurite@{versions.AZURITE} failed:\n{done.stderr[-2000:]}"
                )
            if final.exists():
                shutil.rmtree(final)
            workdir.rename(final)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return script


@dataclass
class Azurite:
    """A running Azurite blob service: where it listens, its account and key, the CA that signed it.

    :meth:`stop` and :meth:`start` make an outage (the same server again: address, certificate, blobs);
    :meth:`start` with other keys rotates the account's keys as Azure's key1/key2 do: Azurite accepts
    every key it was started with, so a restart with the old and a new key adds one, a restart with the
    new key alone revokes the old."""

    address: str
    port: int
    account_key: str
    """The key :meth:`secret` hands out and this helper signs its own requests with."""
    ca_pem: bytes
    directory: Path
    process: ManagedProcess
    argv: tuple[str, ...]
    keys: tuple[str, ...]
    """Every key Azurite accepts now."""

    def stop(self) -> None:
        """Stop the server: its port refuses connections until :meth:`start`."""
        self.process.stop()

    def start(self, keys: tuple[str, ...] | None = None) -> None:
        """Start the stopped server again, accepting ``keys`` (by default the same as before), and wait
        until it answers; :attr:`account_key` becomes the last of them (the newest)."""
        assert not self.process.alive(), "Azurite is running"
        self.keys = keys or self.keys
        self.account_key = self.keys[-1]
        self.process = _start(self.argv, self.directory, self.keys)
        self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until Azurite answers over HTTPS (its log when it exits or times out)."""
        process = self.process

        def ready() -> bool:
            assert process.alive(), f"Azurite exited; its log:\n{process.log_tail()}"
            return self.answers()

        polling.wait_until(ready, what="Azurite over HTTPS", timeout=60, log=process.log_tail)

    @property
    def host(self) -> str:
        """The name restic connects to: ``<account>.blob.<suffix host>``."""
        return f"{ACCOUNT}.blob.{SUFFIX_HOST}"

    @property
    def endpoint_suffix(self) -> str:
        """``AZURE_ENDPOINT_SUFFIX`` for restic: the suffix host and the port."""
        return f"{SUFFIX_HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The private CA's certificate (PEM), for plain restic's ``--cacert``."""
        return self.directory / "pki" / "ca.crt"

    def secret(self, password: str, *, ca: bool = True) -> dict[str, bytes]:
        """A storage Secret's data as Stash documents it for Azure, plus the CA and the access tier."""
        data = {
            "RESTIC_PASSWORD": password.encode(),
            "AZURE_ACCOUNT_NAME": ACCOUNT.encode(),
            "AZURE_ACCOUNT_KEY": self.account_key.encode(),
            "AZURE_ACCESS_TIER": ACCESS_TIER.encode(),
        }
        if ca:
            data["CA_CERT_DATA"] = self.ca_pem
        return data

    def restic_wrapper(self, restic: Path) -> Path:
        """An executable that runs ``restic`` (same arguments, same process: ``exec`` all the way) in a
        mount namespace where ``/etc/hosts`` names :attr:`host` at :attr:`address`, as a pod's
        ``hostAliases`` would."""
        hosts = self.directory / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{self.address} {self.host}\n")
        unshare, sh = shutil.which("unshare"), shutil.which("sh")
        mount = shutil.which("mount")
        if unshare is None or sh is None or mount is None:
            raise tools.ToolError("host-level restic against Azurite needs unshare, sh and mount")
        wrapper = self.directory / "restic-azurite"
        wrapper.write_text(
            f"#!{sh}\n"
            f"exec {unshare} --mount -- {sh} -c "
            f'\'{mount} --bind "$0" /etc/hosts && exec "$@"\' {hosts} {restic} "$@"\n'
        )
        wrapper.chmod(0o755)
        return wrapper

    def create_container(self, container: str) -> None:
        """Create ``container`` as a user does before pointing a Repository at it (Shared Key)."""
        status, body = self._request("PUT", container, {"restype": "container"})
        if status != 201:
            raise AssertionError(f"creating container {container} answered {status}: {body[:500]!r}")

    def blob_names(self, container: str) -> list[str]:
        """The names of the blobs in ``container``, listed with the account's key (Shared Key)."""
        status, body = self._request("GET", container, {"restype": "container", "comp": "list"})
        if status != 200:
            raise AssertionError(f"listing {container} answered {status}: {body[:500]!r}")
        return [name.text or "" for name in ElementTree.fromstring(body).iter("Name")]  # noqa: S314 - our own server's answer

    def _request(self, method: str, container: str, query: dict[str, str]) -> tuple[int, bytes]:
        """One Blob API request on ``container`` without a body, signed with the account's key as the
        Azure SDKs sign it (Shared Key: the verb, twelve standard headers, the x-ms-* headers, the
        resource with its sorted query)."""
        date = email.utils.formatdate(usegmt=True)
        params = "".join(f"\n{key}:{query[key]}" for key in sorted(query))
        ms_headers = f"x-ms-date:{date}\nx-ms-version:{API_VERSION}\n"
        signed = f"{method}{chr(10) * 12}{ms_headers}/{ACCOUNT}/{container}{params}"
        signature = hmac.new(base64.b64decode(self.account_key), signed.encode(), "sha256").digest()
        headers = {
            "x-ms-date": date,
            "x-ms-version": API_VERSION,
            "Authorization": f"SharedKey {ACCOUNT}:{base64.b64encode(signature).decode()}",
        }
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        connection = http.client.HTTPSConnection(self.host, self.port, context=context, timeout=10)
        connection.sock = context.wrap_socket(
            socket.create_connection((self.address, self.port), timeout=10), server_hostname=self.host
        )
        try:
            connection.request(method, f"/{container}?{urllib.parse.urlencode(query)}", headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answers(self) -> bool:
        """Whether Azurite completes a TLS handshake as :attr:`host` (trusting only the CA) and answers
        an HTTP request."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        try:
            with (
                socket.create_connection((self.address, self.port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname=self.host) as tls,
            ):
                tls.sendall(
                    f"GET /?comp=list HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode()
                )
                return tls.recv(16).startswith(b"HTTP/1.1 ")
        except OSError:
            return False


def new_key() -> str:
    """A fresh random account key, as Azure makes them (64 bytes, base64)."""
    return base64.b64encode(os.urandom(64)).decode()


def _start(argv: tuple[str, ...], directory: Path, keys: tuple[str, ...]) -> ManagedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory),
           "AZURITE_ACCOUNTS": ":".join((ACCOUNT, *keys))}  # fmt: skip
    return ManagedProcess.start("azurite", argv, directory / "azurite.log", env=env)


@contextmanager
def running(directory: Path, address: str = "127.0.0.1") -> Iterator[Azurite]:
    """Azurite's blob service over HTTPS on ``address`` (a free port), one account with a fresh random
    key, data under ``directory``; stopped (its process group) on exit."""
    script = install()
    directory.mkdir(parents=True, exist_ok=True)
    authority = pki.create(directory / "pki", {})
    cert, key = pki.serving_certificate(
        authority, "azurite", [f"{ACCOUNT}.blob.{SUFFIX_HOST}"], directory / "pki"
    )
    account_key = new_key()
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    argv = (node, str(script), "--blobHost", address, "--blobPort", str(port), "--disableTelemetry",
            "--location", str(directory / "data"), "--cert", str(cert), "--key", str(key))  # fmt: skip
    process = _start(argv, directory, (account_key,))
    server = Azurite(
        address, port, account_key, authority.ca_cert.read_bytes(), directory, process, argv, (account_key,)
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.process.stop()
