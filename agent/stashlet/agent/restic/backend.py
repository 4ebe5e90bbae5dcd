"""Repository backend + storage Secret -> how to run restic against it, pure.

Input is the wire form of a Repository's ``spec.backend`` (camelCase keys as in the YAML, e.g.
``{"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "gcs-secret"}``) and the Secret's
data, already base64-decoded (:func:`decode_secret_data` does that for a Secret's ``data``). Taking
plain dicts keeps this module independent of the API models, and unknown fields are simply ignored.

Output is a :class:`ResticRepository`: the repository location, the environment for the restic
process (credentials go in the environment, never on the command line, where ``ps`` would show
them), restic's global options, and the files to write first (GCS key, CA certificate). Secret values
never appear in its ``repr()``, nor in any exception raised here.

Backends and the Secret keys read, as Stash documents them:

- ``local``: ``mountPath`` + ``subPath`` -> a directory.
- ``s3``: ``s3:<endpoint>/<bucket>/<prefix>`` (endpoint default ``s3.amazonaws.com``; a scheme is
  kept), ``region`` -> ``AWS_DEFAULT_REGION``, ``insecureTLS`` -> ``--insecure-tls``;
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``.
- ``gcs``: ``gs:<bucket>:/<prefix>``; ``GOOGLE_PROJECT_ID``, ``GOOGLE_SERVICE_ACCOUNT_JSON_KEY``
  (written to a file named by ``GOOGLE_APPLICATION_CREDENTIALS``).
- ``azure``: ``azure:<container>:/<prefix>``; ``AZURE_ACCOUNT_NAME`` (or ``storageAccount``),
  ``AZURE_ACCOUNT_KEY``, ``AZURE_ACCOUNT_SAS``.
- ``b2``: ``b2:<bucket>:<prefix>``; ``B2_ACCOUNT_ID``, ``B2_ACCOUNT_KEY``.
- ``swift``: ``swift:<container>:/<prefix>``; the ``ST_*`` and ``OS_*`` keys of every Keystone flavour.
- ``rest``: ``rest:<url>``; ``REST_SERVER_USERNAME``/``REST_SERVER_PASSWORD`` are handed to restic as
  ``RESTIC_REST_USERNAME``/``RESTIC_REST_PASSWORD`` (restic >= 0.17) rather than written into the URL
  as Stash does: same effect, but the location restic prints in its messages holds no password.
- every backend: ``RESTIC_PASSWORD`` (required), ``CA_CERT_DATA`` -> a file passed as ``--cacert``;
  ``maxConnections`` -> ``-o <scheme>.connections=N``.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from stashlet.agent.errors import RefuseInput

BACKENDS = ("local", "s3", "gcs", "azure", "b2", "swift", "rest")
PASSWORD_KEY = "RESTIC_PASSWORD"  # noqa: S105 (a key name)
CA_CERT_KEY = "CA_CERT_DATA"
GCS_KEY = "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"
SWIFT_KEYS = (
    "ST_AUTH", "ST_USER", "ST_KEY",
    "OS_AUTH_URL", "OS_REGION_NAME", "OS_USERNAME", "OS_PASSWORD", "OS_TENANT_ID", "OS_TENANT_NAME",
    "OS_USER_DOMAIN_NAME", "OS_USER_ID", "OS_PROJECT_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID",
    "OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME", "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_STORAGE_URL", "OS_AUTH_TOKEN",
)  # fmt: skip
_CONNECTIONS_OPTION = {
    "s3": "s3",
    "gcs": "gs",
    "azure": "azure",
    "b2": "b2",
    "swift": "swift",
    "rest": "rest",
}
_REDACTED = "<redacted>"
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*):[^/@]*@")


class BackendError(RefuseInput):
    """The backend spec or its storage Secret cannot be used (message names keys, never values)."""

    reason = "InvalidBackend"


class MissingSecretKey(BackendError):
    """The storage Secret lacks a key the backend needs."""

    reason = "StorageSecretKeyMissing"

    def __init__(self, secret: str, key: str, why: str = "") -> None:
        self.secret = secret
        self.key = key
        super().__init__(f"storage Secret {secret} has no key {key}" + (f" ({why})" if why else ""))


@dataclass(frozen=True, repr=False)
class ResticRepository:
    """Everything needed to run restic against one repository.

    ``env`` holds ``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD`` and the backend's credentials;
    ``options`` are restic global options; ``files`` maps absolute paths to contents that must be
    written (mode 0600) before restic runs. ``secrets`` are the Secret's values, to scrub from any
    text restic prints before it is logged or reported.
    """

    provider: str
    url: str
    env: Mapping[str, str]
    options: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        env = dict.fromkeys(sorted(self.env), _REDACTED)
        return (
            f"ResticRepository(provider={self.provider!r}, url={self.display_url!r}, env={env!r}, "
            f"options={self.options!r}, files={sorted(self.files)!r})"
        )

    __str__ = __repr__

    @property
    def display_url(self) -> str:
        """The location with any password written into it (``user:pass@``) replaced: safe to show."""
        return _USERINFO_PASSWORD.sub(rf"\1:{_REDACTED}@", self.url)

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by a placeholder (longest first)."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        return text


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """A Kubernetes Secret's ``data`` (base64 values) decoded; the error names the key, not the value."""
    decoded: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackendError(f"storage Secret key {key} is not valid base64") from exc
    return decoded


def build_repository(
    backend: Mapping[str, Any],
    secret_data: Mapping[str, bytes | str],
    *,
    files_dir: str,
    secret_namespace: str | None = None,
) -> ResticRepository:
    """Build the restic repository for ``backend`` with the credentials in ``secret_data``.

    ``files_dir`` is the (absolute) directory where key and certificate files will be written;
    ``secret_namespace`` only makes error messages name the Secret fully.
    """
    found = [name for name in BACKENDS if isinstance(backend.get(name), Mapping)]
    if len(found) != 1:
        raise BackendError(
            f"backend must set exactly one of {', '.join(BACKENDS)}; it sets {found or 'none'}"
        )
    provider = found[0]
    spec: Mapping[str, Any] = backend[provider]
    name = backend.get("storageSecretName")
    if not (isinstance(name, str) and name):
        raise BackendError("backend needs storageSecretName (the Secret holding RESTIC_PASSWORD)")
    secret = _Secret(f"{secret_namespace}/{name}" if secret_namespace else str(name), secret_data)
    out = _Parts(env={PASSWORD_KEY: secret.require(PASSWORD_KEY)}, files_dir=files_dir)
    url = _PROVIDERS[provider](spec, secret, out)
    if CA_CERT_KEY in secret.data:
        out.options.append(f"--cacert={out.file('ca.crt', secret.raw(CA_CERT_KEY))}")
    connections = spec.get("maxConnections")
    if provider in _CONNECTIONS_OPTION and isinstance(connections, int) and connections > 0:
        out.options += ["-o", f"{_CONNECTIONS_OPTION[provider]}.connections={connections}"]
    out.env["RESTIC_REPOSITORY"] = url
    secrets = frozenset(value for value in [*secret.text_values(), *out.secrets] if len(value) >= 3)
    return ResticRepository(provider, url, out.env, tuple(out.options), out.files, secrets)


@dataclass
class _Parts:
    """What the provider functions add to: environment, global options, files to write."""

    env: dict[str, str]
    files_dir: str
    options: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    def file(self, name: str, content: bytes) -> str:
        if not posixpath.isabs(self.files_dir):
            raise BackendError(f"files directory must be absolute, not {self.files_dir!r}")
        path = posixpath.join(self.files_dir, name)
        self.files[path] = content
        return path


def _local(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    mount = _required(spec, "local", "mountPath")
    sub = _opt(spec, "subPath")
    if not posixpath.isabs(mount):
        raise BackendError(f"local.mountPath must be absolute, not {mount!r}")
    if ".." in sub.split("/"):
        raise BackendError("local.subPath must not contain '..'")
    return posixpath.normpath(posixpath.join(mount, sub.lstrip("/")))


def _s3(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    endpoint = (_opt(spec, "endpoint") or "s3.amazonaws.com").rstrip("/")
    parts = (endpoint, _required(spec, "s3", "bucket"), _prefix(spec))
    if _opt(spec, "region"):
        out.env["AWS_DEFAULT_REGION"] = _opt(spec, "region")
    if spec.get("insecureTLS") is True:
        out.options.append("--insecure-tls")
    secret.copy_pair(out.env, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    secret.copy(out.env, "AWS_SESSION_TOKEN")
    return "s3:" + "/".join(part for part in parts if part)


def _gcs(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    secret.copy(out.env, "GOOGLE_PROJECT_ID")
    if GCS_KEY in secret.data:
        out.env["GOOGLE_APPLICATION_CREDENTIALS"] = out.file("gcs-service-account.json", secret.raw(GCS_KEY))
    return f"gs:{_required(spec, 'gcs', 'bucket')}:/{_prefix(spec)}"


def _azure(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    if not secret.copy(out.env, "AZURE_ACCOUNT_NAME"):
        if not _opt(spec, "storageAccount"):
            raise MissingSecretKey(
                secret.name, "AZURE_ACCOUNT_NAME", "and the backend sets no storageAccount"
            )
        out.env["AZURE_ACCOUNT_NAME"] = _opt(spec, "storageAccount")
    secret.copy(out.env, "AZURE_ACCOUNT_KEY")
    secret.copy(out.env, "AZURE_ACCOUNT_SAS")
    return f"azure:{_required(spec, 'azure', 'container')}:/{_prefix(spec)}"


def _b2(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    out.env["B2_ACCOUNT_ID"] = secret.require("B2_ACCOUNT_ID")
    out.env["B2_ACCOUNT_KEY"] = secret.require("B2_ACCOUNT_KEY")
    return f"b2:{_required(spec, 'b2', 'bucket')}:{_prefix(spec)}"


def _swift(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    for key in SWIFT_KEYS:
        secret.copy(out.env, key)
    return f"swift:{_required(spec, 'swift', 'container')}:/{_prefix(spec)}"


def _rest(spec: Mapping[str, Any], secret: _Secret, out: _Parts) -> str:
    if "REST_SERVER_PASSWORD" in secret.data and "REST_SERVER_USERNAME" not in secret.data:
        raise MissingSecretKey(secret.name, "REST_SERVER_USERNAME", "REST_SERVER_PASSWORD is set")
    if secret.copy(out.env, "REST_SERVER_USERNAME", as_key="RESTIC_REST_USERNAME"):
        secret.copy(out.env, "REST_SERVER_PASSWORD", as_key="RESTIC_REST_PASSWORD")
    url = _required(spec, "rest", "url")
    password = urlsplit(url).password  # a password written into the spec's URL is a secret too
    if password:
        out.secrets.add(unquote(password))
        out.secrets.add(password)
    return f"rest:{url}"


_PROVIDERS: dict[str, Callable[[Mapping[str, Any], _Secret, _Parts], str]] = {
    "local": _local,
    "s3": _s3,
    "gcs": _gcs,
    "azure": _azure,
    "b2": _b2,
    "swift": _swift,
    "rest": _rest,
}


class _Secret:
    """Read access to a storage Secret's data that never puts a value into an error message."""

    def __init__(self, name: str, data: Mapping[str, bytes | str]) -> None:
        self.name = name
        self.data = data

    def raw(self, key: str) -> bytes:
        value = self.data[key]
        return value.encode() if isinstance(value, str) else value

    def text(self, key: str) -> str:
        value = self.data[key]
        if isinstance(value, str):
            return value
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(f"storage Secret {self.name} key {key} is not UTF-8 text") from exc

    def text_values(self) -> list[str]:
        return [self.raw(key).decode("utf-8", "replace") for key in self.data]

    def require(self, key: str) -> str:
        if key not in self.data:
            raise MissingSecretKey(self.name, key)
        value = self.text(key)
        if not value:
            raise BackendError(f"storage Secret {self.name} key {key} is empty")
        return value

    def copy(self, env: dict[str, str], key: str, *, as_key: str | None = None) -> bool:
        if key not in self.data:
            return False
        env[as_key or key] = self.text(key)
        return True

    def copy_pair(self, env: dict[str, str], first: str, second: str) -> None:
        present = [key for key in (first, second) if key in self.data]
        if len(present) == 1:
            missing = second if present[0] == first else first
            raise MissingSecretKey(self.name, missing, f"{present[0]} is set")
        for key in present:
            self.copy(env, key)


def _opt(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    return value.strip() if isinstance(value, str) else ""


def _required(spec: Mapping[str, Any], provider: str, key: str) -> str:
    value = _opt(spec, key)
    if not value:
        raise BackendError(f"backend {provider} needs {provider}.{key}")
    return value


def _prefix(spec: Mapping[str, Any]) -> str:
    """The prefix without leading, trailing or doubled slashes (Stash's manifests write both forms)."""
    return "/".join(part for part in _opt(spec, "prefix").split("/") if part)
