"""A GCS server for the tests: fake-gcs-server (the pinned build), and the one part Google runs that it
lacks, a token endpoint for a service-account key.

fake-gcs-server is a real implementation of the GCS JSON API (the API Google's Go client, and so restic,
speaks), keeping objects on disk. It ignores the ``Authorization`` header. restic 0.18.1 reaches it
through ``STORAGE_EMULATOR_HOST`` (cloud.google.com/go/storage v1.56.1, which restic pins, sends every
JSON call there, and downloads, which use the XML path ``/<bucket>/<object>``, to the same host: the
server serves those only for the host named by ``-public-host``, so that is set to the address clients
use). Object names are kept as restic writes them, ``<prefix>/config``, ``<prefix>/data/..``.

A Stash user's Secret holds ``GOOGLE_SERVICE_ACCOUNT_JSON_KEY``, a service-account key; restic hands it
to golang.org/x/oauth2/google (v0.30.0), whose only flow for such a key signs a JWT with the key and
posts it to the key's ``token_uri`` (RFC 7523); there is no mode that skips the call, and the real
authorization servers that run here (Ory Hydra) refuse Google's assertion, which has no ``sub`` claim.
So :class:`FakeTokenEndpoint` stands in for Google's token endpoint: a FAKE, named so wherever it is
used. It checks what Google checks of the assertion (the RS256 signature with the key's public half,
``kid``, issuer, audience, expiry, a storage scope) and answers with an opaque token; it records each
grant, so a test can tell that restic read the Secret's key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.polling import wait_until

from stashlet.localcluster import tools
from stashlet.localcluster.processes import ManagedProcess, free_port

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
STORAGE_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/devstorage.read_write",
        "https://www.googleapis.com/auth/devstorage.full_control",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
"""Scopes that let a token read and write objects; restic asks for ``devstorage.read_write``."""


@dataclass
class GcsServer:
    """A running fake-gcs-server: ``url`` is what ``STORAGE_EMULATOR_HOST`` takes. :meth:`stop` and
    :meth:`start` make an outage: the same server again afterwards (same address, same objects)."""

    url: str
    root: Path
    process: ManagedProcess
    argv: tuple[str, ...]

    def stop(self) -> None:
        """Stop the server: its port refuses connections until :meth:`start`."""
        self.process.stop()

    def start(self) -> None:
        """Start the stopped server again on the same address with the same objects, and wait until it
        answers."""
        assert not self.process.alive(), "fake-gcs-server is running"
        self.process = ManagedProcess.start("fake-gcs-server", self.argv, self.process.log)
        self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the server answers its bucket listing (its log when it exits or times out)."""
        process = self.process

        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(f"fake-gcs-server exited; its log:\n{process.log_tail()}")
            return _ready(self.url)

        wait_until(ready, what="fake-gcs-server answering /storage/v1/b", timeout=30, log=process.log_tail)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the test's own http URL
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
        return json.loads(text) if text else None

    def create_bucket(self, name: str, project: str) -> None:
        """Create bucket ``name`` in ``project`` (as a project's admin does before handing out a key)."""
        self._call("POST", f"/storage/v1/b?project={urllib.parse.quote(project)}", {"name": name})

    def buckets(self) -> list[str]:
        """The buckets' names."""
        return [b["name"] for b in self._call("GET", "/storage/v1/b").get("items") or []]

    def object_names(self, bucket: str, prefix: str = "") -> list[str]:
        """The names of the objects in ``bucket`` under ``prefix`` (every page)."""
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode(
                {"prefix": prefix, "pageToken": token} if token else {"prefix": prefix}
            )
            page = self._call("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{query}")
            names += [item["name"] for item in page.get("items") or []]
            token = page.get("nextPageToken") or ""
            if not token:
                return names


def _ready(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as response,  # noqa: S310
    ):
        return bool(response.status == HTTPStatus.OK)
    return False


@contextlib.contextmanager
def fake_gcs_server(directory: Path, host: str = "127.0.0.1") -> Iterator[GcsServer]:
    """fake-gcs-server over HTTP on ``host`` (a free port), objects under ``directory/objects``; stopped
    when the context ends. ``host`` is also the public host: clients must use exactly that address."""
    port = free_port()
    root = directory / "objects"
    argv = [
        str(tools.ensure("fake-gcs-server")),
        "-backend=filesystem",
        f"-filesystem-root={root}",
        "-scheme=http",
        f"-host={host}",
        f"-port={port}",
        f"-public-host={host}:{port}",
        f"-external-url=http://{host}:{port}",
        "-log-level=warn",
    ]
    process = ManagedProcess.start("fake-gcs-server", argv, directory / "fake-gcs-server.log")
    server = GcsServer(url=f"http://{host}:{port}", root=root, process=process, argv=tuple(argv))
    try:
        server.wait_ready()
        yield server
    finally:
        server.process.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ServiceAccount:
    """A service account's key pair, and its JSON key file as the cloud console downloads it."""

    email: str
    key_id: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, project: str, name: str = "stash-backup") -> ServiceAccount:
        """A new 2048-bit RSA key for ``name@project.iam.gserviceaccount.com``."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(f"{name}@{project}.iam.gserviceaccount.com", secrets.token_hex(20), key)

    def new_key(self) -> ServiceAccount:
        """The same account with a new key pair (an account may hold several keys, each with its id)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ServiceAccount(self.email, secrets.token_hex(20), key)

    def key_json(self, project: str, token_uri: str) -> bytes:
        """The JSON key file (``type: service_account``) whose token endpoint is ``token_uri``."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.email,
            "client_id": str(int.from_bytes(self.key_id.encode()[:8], "big")),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{self.email}",
            "universe_domain": "googleapis.com",
        }
        return json.dumps(key, indent=2).encode()


class GrantRefused(ValueError):
    """An assertion the fake token endpoint does not accept (the text is its error_description)."""


@dataclass
class FakeTokenEndpoint:
    """A FAKE of Google's OAuth 2.0 token endpoint, for service-account keys only (the JWT-bearer grant).

    It trusts the public keys of the accounts it is given, checks an assertion as Google does (RS256
    signature by the key named by ``kid``, ``iss`` the account, ``aud`` this endpoint's URL, ``exp`` not
    passed and at most an hour after ``iat``, a storage scope) and answers ``{access_token, token_type,
    expires_in}``; otherwise HTTP 400 ``invalid_grant``. ``grants`` and ``refusals`` record what it saw.
    """

    host: str = "127.0.0.1"
    accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def token_uri(self) -> str:
        """Where keys point their ``token_uri`` (the ``aud`` an assertion must carry)."""
        assert self._server is not None, "the fake token endpoint is not running"
        return f"http://{self.host}:{self._server.server_address[1]}/token"

    def trust(self, account: ServiceAccount) -> None:
        """Accept assertions signed by ``account``'s key."""
        self.accounts[account.key_id] = account

    def revoke(self, account: ServiceAccount) -> None:
        """Refuse assertions signed by ``account``'s key from now on (the key deleted)."""
        del self.accounts[account.key_id]

    def check(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """The claims of a grant request's valid assertion, with the ``kid`` of the key that signed it;
        :class:`GrantRefused` says what is wrong."""
        if form.get("grant_type") != [JWT_BEARER]:
            raise GrantRefused(f"grant_type must be {JWT_BEARER}")
        try:
            head, body, signature = form["assertion"][0].split(".")
            header = json.loads(_unb64url(head))
            claims: dict[str, Any] = json.loads(_unb64url(body))
            signed = _unb64url(signature)
        except (KeyError, ValueError, binascii.Error) as exc:
            raise GrantRefused(f"the assertion is not a JWT ({exc})") from exc
        account = self.accounts.get(str(header.get("kid")))
        if header.get("alg") != "RS256" or account is None:
            raise GrantRefused(f"no trusted key {header.get('kid')!r} (alg {header.get('alg')!r})")
        try:
            account.private_key.public_key().verify(
                signed, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise GrantRefused("the assertion's signature does not match the key") from exc
        now, issued, expires = time.time(), int(claims.get("iat", 0)), int(claims.get("exp", 0))
        if claims.get("iss") != account.email:
            raise GrantRefused(f"iss {claims.get('iss')!r} is not the key's account")
        if claims.get("aud") != self.token_uri:
            raise GrantRefused(f"aud {claims.get('aud')!r} is not this token endpoint")
        if not (issued - 300 <= now < expires <= issued + 3600):
            raise GrantRefused("the assertion is expired or not yet valid")
        if not STORAGE_SCOPES & set(str(claims.get("scope", "")).split()):
            raise GrantRefused(f"scope {claims.get('scope')!r} grants no storage access")
        return {**claims, "kid": account.key_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                try:
                    if self.path != "/token":
                        raise GrantRefused(f"no token endpoint at {self.path}")
                    claims = endpoint.check(form)
                except GrantRefused as exc:
                    endpoint.refusals.append(str(exc))
                    self._answer(
                        HTTPStatus.BAD_REQUEST, {"error": "invalid_grant", "error_description": str(exc)}
                    )
                    return
                endpoint.grants.append(claims)
                token = {
                    "access_token": f"fake.{secrets.token_urlsafe(24)}",
                    "token_type": "Bearer",
                    "expires_in": 3599,
                }
                self._answer(HTTPStatus.OK, token)

            def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the endpoint keeps what it saw in ``grants`` and ``refusals``."""

        return Handler

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeTokenEndpoint]:
        """Serve on ``host`` (a free port) in a thread for as long as the context lasts."""
        self._server = ThreadingHTTPServer((self.host, 0), self._handler())
        thread = threading.Thread(target=self._server.serve_forever, name="fake-token-endpoint", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)
