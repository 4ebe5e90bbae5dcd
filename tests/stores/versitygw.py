"""A real S3 server for the tests: versitygw (the pinned build) with its posix backend.

versitygw is an S3 gateway: every S3 call a client signs with AWS Signature V4 is checked against its root
keys (``--access``/``--secret``, fresh random ones here) and served from a folder, one directory a bucket.
It speaks HTTPS when given a certificate and key: :func:`versitygw` makes a private CA and a serving
certificate with the local cluster's PKI (``stashlet.localcluster.pki``), valid for loopback and the
addresses the server is asked to be reached at, and hands the CA to the test, as an admin hands it to a
Stash user for the storage Secret's ``CA_CERT_DATA``.

A bucket is made the way a user makes one, with an S3 call (``CreateBucket``, signed like any client's);
:func:`sign` is the AWS Signature V4 of such a call.

With ``iam`` the gateway keeps accounts besides root in its internal IAM (``--iam-dir``, a JSON file in a
folder): :meth:`S3Server.create_user`, :meth:`S3Server.delete_user` and
:meth:`S3Server.change_bucket_owner` are the admin calls ``versitygw admin`` makes (``PATCH
/create-user`` with the account as XML, ``/delete-user?access=``, ``/change-bucket-owner?bucket=&owner=``,
signed with the root keys), made here directly so that no secret key is on a command line. A deleted
account is dropped from the gateway's IAM cache at once: its keys are refused from the next call on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from tests.polling import wait_until

from stashlet.localcluster import pki, tools
from stashlet.localcluster.processes import ManagedProcess, free_port

REGION = "us-east-1"
"""versitygw's region (its default), the one its signatures are checked for."""


@dataclass(frozen=True)
class S3Keys:
    """An S3 access key pair, as a Stash storage Secret holds it."""

    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class S3Server:
    """A running versitygw: ``endpoint`` is what a Repository's ``s3.endpoint`` takes (with its scheme)."""

    endpoint: str
    keys: S3Keys
    root: Path
    process: ManagedProcess
    ca_cert: bytes | None
    """The PEM of the CA that signed the server's certificate (``None`` over plain HTTP)."""

    def _context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cadata=self.ca_cert.decode()) if self.ca_cert else None

    def request(
        self,
        method: str,
        path: str = "/",
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        keys: S3Keys | None = None,
    ) -> tuple[int, bytes]:
        """A call signed with ``keys`` (the root keys by default): the HTTP status it got and its body."""
        url = f"{self.endpoint}{quote(path)}" + (f"?{urlencode(query)}" if query else "")
        headers = sign(method, url, keys or self.keys, body=body)
        request = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._context()) as response:  # noqa: S310
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def call(self, method: str, path: str = "/", *, keys: S3Keys | None = None) -> int:
        """An S3 call without a body, signed with ``keys`` (the root keys by default); its HTTP status."""
        return self.request(method, path, keys=keys)[0]

    def _admin(self, action: str, *, query: dict[str, str] | None = None, body: bytes = b"") -> None:
        status, answer = self.request("PATCH", f"/{action}", query=query, body=body)
        assert status < HTTPStatus.MULTIPLE_CHOICES, f"{action} answered {status}: {answer.decode()[:500]}"

    def create_user(self, keys: S3Keys, *, role: str = "userplus") -> None:
        """An account with ``keys`` in the internal IAM (``userplus``: a user who may create buckets)."""
        account = (
            f"<Account><Access>{keys.access_key_id}</Access><Secret>{keys.secret_access_key}</Secret>"
            f"<Role>{role}</Role></Account>"
        )
        self._admin("create-user", body=account.encode())

    def delete_user(self, access_key_id: str) -> None:
        """The account of ``access_key_id`` removed from the internal IAM: its keys are refused."""
        self._admin("delete-user", query={"access": access_key_id})

    def change_bucket_owner(self, bucket: str, access_key_id: str) -> None:
        """``bucket`` handed to the account of ``access_key_id``."""
        self._admin("change-bucket-owner", query={"bucket": bucket, "owner": access_key_id})

    def create_bucket(self, name: str) -> None:
        """``CreateBucket``: bucket ``name``, as a user makes it with an S3 client."""
        status = self.call("PUT", f"/{name}")
        assert status == HTTPStatus.OK, f"CreateBucket {name} answered {status}; log:\n{self.log_tail()}"

    def bucket_exists(self, name: str) -> bool:
        """``HeadBucket``: whether bucket ``name`` is there."""
        status = self.call("HEAD", f"/{name}")
        assert status in (HTTPStatus.OK, HTTPStatus.NOT_FOUND), f"HeadBucket {name} answered {status}"
        return status == HTTPStatus.OK

    def objects(self, bucket: str) -> list[str]:
        """The names of the objects in ``bucket`` (read from the posix folder: one file an object)."""
        folder = self.root / bucket
        return sorted(
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file() and not path.relative_to(folder).parts[0].startswith(".")
        )

    def log_tail(self) -> str:
        """The end of the server's log."""
        return self.process.log_tail(40)


def sign(method: str, url: str, keys: S3Keys, *, region: str = REGION, body: bytes = b"") -> dict[str, str]:
    """The headers that sign an S3 call (its query in ``url``, its ``body``) with AWS Signature V4."""
    parts = urlsplit(url)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    query = "&".join(
        sorted(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in parse_qsl(parts.query, True))
    )
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            query,
            *(f"{k}:{headers[k]}" for k in sorted(headers)),
            "",
            names,
            payload,
        ]
    )
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{keys.secret_access_key}".encode()
    for step in (stamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key_id}/{scope}, SignedHeaders={names}, "
        f"Signature={signature}"
    )
    del headers["host"]
    return headers


def private_ca(directory: Path, *, ips: tuple[str, ...] = ()) -> pki.Pki:
    """A private CA and a serving certificate it signed for loopback (``localhost``, 127.0.0.1) and
    ``ips``: the local cluster's PKI, of which only the CA and the serving pair are used here."""
    return pki.create(directory, {}, extra_ips=list(ips))


@contextlib.contextmanager
def versitygw(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    tls: bool = False,
    ips: tuple[str, ...] = (),
    iam: bool = False,
) -> Iterator[S3Server]:
    """versitygw on ``host`` (a free port) serving the folder ``directory/root``, with fresh root keys;
    over HTTPS with a certificate from a private CA (valid for loopback, ``host`` and ``ips``) when
    ``tls``; with accounts besides root (its internal IAM in ``directory/iam``) when ``iam``. Ready once a
    signed ``ListBuckets`` answers 200; stopped when the context ends."""
    port = free_port()
    root = directory / "root"
    root.mkdir(parents=True)
    keys = S3Keys(f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30))
    argv = [str(tools.ensure("versitygw")), f"--port={host}:{port}", f"--region={REGION}", "--quiet"]
    ca_cert = None
    if tls:
        authority = private_ca(directory / "pki", ips=(host, *ips))
        argv += [f"--cert={authority.serving_cert}", f"--key={authority.serving_key}"]
        ca_cert = authority.ca_cert.read_bytes()
    if iam:
        (directory / "iam").mkdir()
        argv.append(f"--iam-dir={directory / 'iam'}")
    # The root keys go in the environment (versitygw reads ROOT_ACCESS_KEY_ID/ROOT_SECRET_ACCESS_KEY),
    # not on its command line where ``ps`` shows them.
    env = {"PATH": "/usr/bin:/bin", "ROOT_ACCESS_KEY_ID": keys.access_key_id}
    env["ROOT_SECRET_ACCESS_KEY"] = keys.secret_access_key
    process = ManagedProcess.start(
        "versitygw", [*argv, "posix", str(root)], directory / "versitygw.log", env=env
    )
    scheme = "https" if tls else "http"
    server = S3Server(f"{scheme}://{host}:{port}", keys, root, process, ca_cert)
    try:

        def ready() -> bool:
            assert process.alive(), f"versitygw exited; its log:\n{process.log_tail()}"
            with contextlib.suppress(OSError):
                return server.call("GET") == HTTPStatus.OK
            return False

        wait_until(ready, what="versitygw's ListBuckets", timeout=30, log=process.log_tail)
        yield server
    finally:
        process.stop()
