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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stashlet.agent.restic.backend_spec import BackendError, Parts, StorageSecret
from stashlet.agent.restic.stores import azure, b2, gcs, local, rest, s3, swift

BACKENDS = ("local", "s3", "gcs", "azure", "b2", "swift", "rest")
PASSWORD_KEY = "RESTIC_PASSWORD"  # noqa: S105 (a key name)
CA_CERT_KEY = "CA_CERT_DATA"
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
    secret = StorageSecret(f"{secret_namespace}/{name}" if secret_namespace else str(name), secret_data)
    out = Parts(env={PASSWORD_KEY: secret.require(PASSWORD_KEY)}, files_dir=files_dir)
    url = _PROVIDERS[provider](spec, secret, out)
    if CA_CERT_KEY in secret.data:
        out.options.append(f"--cacert={out.file('ca.crt', secret.raw(CA_CERT_KEY))}")
    connections = spec.get("maxConnections")
    if provider in _CONNECTIONS_OPTION and isinstance(connections, int) and connections > 0:
        out.options += ["-o", f"{_CONNECTIONS_OPTION[provider]}.connections={connections}"]
    out.env["RESTIC_REPOSITORY"] = url
    secrets = frozenset(value for value in [*secret.text_values(), *out.secrets] if len(value) >= 3)
    return ResticRepository(provider, url, out.env, tuple(out.options), out.files, secrets)


_PROVIDERS: dict[str, Callable[[Mapping[str, Any], StorageSecret, Parts], str]] = {
    "local": local.location,
    "s3": s3.location,
    "gcs": gcs.location,
    "azure": azure.location,
    "b2": b2.location,
    "swift": swift.location,
    "rest": rest.location,
}
