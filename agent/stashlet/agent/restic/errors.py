"""The error taxonomy of restic runs, built from restic's exit codes (restic >= 0.17).

restic documents these exit codes (``doc/075_scripting.rst``): 0 success, 1 fatal error, 2 Go runtime
error, 3 ``backup`` could not read some source data (the snapshot is still created), 10 the repository
does not exist, 11 the repository could not be locked, 12 wrong password, 130 interrupted. Any other
code must be treated as a failure.

Every error carries a short CamelCase ``reason`` fit for a Kubernetes condition or event, the exit
code, and a human message taken from restic's JSON ``exit_error`` message or the tail of its stderr.
Messages never contain secret values: the runner scrubs them before building an error.

:class:`ResticError` gathers them for callers that record any restic outcome alike; each class also
sits under one root of :mod:`stashlet.agent.errors`: a locked repository is :class:`RetryLater`, a
missing repository, a wrong password, a missing snapshot, an unusable binary or a refused process
priority is :class:`RefuseInput`, and anything else is :class:`ReportFailure`.

Exit 1 covers many causes; three are told apart by restic's words: a backend whose TLS certificate
restic does not trust (signed by a CA it was not given, for another name, expired; or a ``--cacert`` that
is no certificate) is :class:`UntrustedCertificate`, a backend that refuses the access (HTTP 401/403, a
cloud's "access denied", an S3 signature or access key it does not know, an OAuth token endpoint that
answers a key's token request with 400/401/403) is :class:`WrongCredentials`,
and one that cannot be reached (connection refused, no such host, a timeout, restic's retries given up)
is :class:`BackendUnavailable`. Their messages lose restic's hint "Is there a repository at the
following location?" (and the location after it): the repository is there, the access is not.

restic retries the first two, and an S3 bucket that does not exist, for up to 15 minutes before it
exits (only some answers are permanent to it): :func:`refusal` tells, from one retry's error, that
retrying cannot cure it. A missing GCS bucket is not retried, but ``restic init`` (which the agent runs
when restic finds no repository) fails on it with exit 1: it is :class:`RepositoryNotFound` too, naming
the bucket, since restic 0.18.1 never creates a GCS bucket.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from enum import IntEnum

from stashlet.agent.errors import AgentError, RefuseInput, ReportFailure, RetryLater
from stashlet.agent.restic.output import BackupSummary

MAX_MESSAGE_CHARS = 1000
"""Messages are cut to this length: they end up in conditions and events."""


class ExitCode(IntEnum):
    """restic's documented exit codes."""

    OK = 0
    FATAL = 1
    GO_RUNTIME = 2
    PARTIAL_BACKUP = 3
    REPOSITORY_NOT_FOUND = 10
    LOCK_FAILED = 11
    WRONG_PASSWORD = 12
    INTERRUPTED = 130


class ResticError(AgentError):
    """A restic run that did not succeed; never raised itself, only as one of the classes below.

    ``exit_code`` is restic's exit code, a negative signal number when the process was killed by a
    signal, or ``None`` when restic did not run at all.
    """

    reason = "ResticFailed"

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        """Keep the message (cut to :data:`MAX_MESSAGE_CHARS`) and the exit code."""
        super().__init__(_shorten(message))
        self.exit_code = exit_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, exit_code={self.exit_code!r})"


class ResticFailed(ResticError, ReportFailure):
    """restic failed (exit 1, 2, an unknown code, or killed by a signal)."""


class SnapshotNotFound(ResticError, RefuseInput):
    """The requested snapshot (an ID, or ``latest`` with host/path filters) does not exist."""


class ResticUnavailable(ResticError, RefuseInput):
    """The restic binary is missing, not executable, or older than the supported minimum."""


class PriorityRefused(ResticError, RefuseInput):
    """restic did not start: its niceness or I/O priority is malformed, or the kernel refused it.

    The message names the configuration field (``spec.runtimeSettings.container.nice`` or ``.ionice``).
    """


class PartialBackup(ResticError, ReportFailure):
    """``backup`` could not read some source data (exit 3); the snapshot was created nevertheless.

    ``unreadable`` lists the paths restic reported (at most the runner's bound), ``summary`` is the
    backup's summary when restic printed one, so the snapshot can still be recorded.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = ExitCode.PARTIAL_BACKUP,
        unreadable: Sequence[str] = (),
        summary: BackupSummary | None = None,
    ) -> None:
        super().__init__(message, exit_code=exit_code)
        self.unreadable: tuple[str, ...] = tuple(unreadable)
        self.summary = summary

    @property
    def snapshot_id(self) -> str | None:
        """ID of the (partial) snapshot restic created, if it reported one."""
        return self.summary.snapshot_id if self.summary is not None else None


class RepositoryNotFound(ResticError, RefuseInput):
    """There is no repository at the configured location (exit 10)."""


class RepositoryLocked(ResticError, RetryLater):
    """restic could not lock the repository because another process holds a lock (exit 11)."""


class WrongPassword(ResticError, RefuseInput):
    """The password does not open any key of the repository (exit 12)."""


class WrongCredentials(ResticError, RefuseInput):
    """The backend refuses the storage Secret's access key, token or REST user/password (401/403)."""


class UntrustedCertificate(ResticError, RefuseInput):
    """restic does not trust the backend's TLS certificate, or cannot read the CA it was given."""


class BackendUnavailable(ResticError, ReportFailure):
    """The backend cannot be reached (refused, unresolvable, timing out), or not for long enough."""


class Interrupted(ResticError, ReportFailure):
    """restic was interrupted by a signal (exit 130, or exit 1 after "signal ... received")."""


_BY_CODE: dict[int, type[ResticError]] = {
    ExitCode.REPOSITORY_NOT_FOUND: RepositoryNotFound,
    ExitCode.LOCK_FAILED: RepositoryLocked,
    ExitCode.WRONG_PASSWORD: WrongPassword,
    ExitCode.INTERRUPTED: Interrupted,
}

_DEFAULT_MESSAGES: dict[int, str] = {
    ExitCode.FATAL: "restic failed",
    ExitCode.GO_RUNTIME: "restic crashed (Go runtime error)",
    ExitCode.PARTIAL_BACKUP: "backup could not read some source data",
    ExitCode.REPOSITORY_NOT_FOUND: "repository does not exist",
    ExitCode.LOCK_FAILED: "failed to lock repository",
    ExitCode.WRONG_PASSWORD: "wrong password or no key found",
    ExitCode.INTERRUPTED: "restic was interrupted",
}

# restic prints this on stderr when it gets SIGINT/SIGTERM; a backup interrupted that way exits 1
# ("unable to save snapshot: context canceled") rather than 130 in restic 0.18.
_SIGNAL_RECEIVED = re.compile(r"signal \w+ received, cleaning up")
_SNAPSHOT_NOT_FOUND = re.compile(r"no snapshot found|no matching ID found|failed to find snapshot")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_WRONG_CREDENTIALS = re.compile(
    r"HTTP response \((401|403)\)|\b(401|403) (Unauthorized|Forbidden)\b|Access Denied|AccessDenied"
    r"|InvalidAccessKeyId|SignatureDoesNotMatch|AuthenticationFailed|AuthorizationFailure"
    r"|invalid_grant|Unauthorized: bad credentials"
    r"|oauth2: cannot fetch token: (400|401|403) "  # a token endpoint refusing the key (GCS)
    r"|The request signature we calculated does not match|access key Id you provided does not exist",
    re.IGNORECASE,
)
_UNTRUSTED_CERTIFICATE = re.compile(
    r"tls: failed to verify certificate|\bx509: |cannot parse root certificate", re.IGNORECASE
)
_NO_BUCKET = re.compile(
    r"The specified bucket does not exist|\bNoSuchBucket\b"  # S3
    r"|The specified container does not exist|\bContainerNotFound\b"  # Azure Blob
)
_NO_GCS_BUCKET = re.compile(r"storage: bucket doesn't exist")
"""cloud.google.com/go/storage's ErrBucketNotExist, as ``restic init`` on a ``gs:`` location says it."""
_GCS_BUCKET = re.compile(r"\bgs:([^:\s/]+):")
_CA_HINT = (
    "the storage Secret's CA_CERT_DATA must hold the PEM of the CA that signed the backend's certificate"
)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|no route to host"
    r"|TLS handshake timeout|connection reset by peer|context deadline exceeded"
    r"|unexpected HTTP response \((502|503|504)\)",
    re.IGNORECASE,
)
_LOCATION_HINT = "Is there a repository at the following location?"
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def error_for_exit(
    exit_code: int,
    stderr_tail: str = "",
    json_error: str | None = None,
    *,
    unreadable: Sequence[str] = (),
    summary: BackupSummary | None = None,
    location: str | None = None,
) -> ResticError | None:
    """Map a finished restic run to the exception describing its failure, or ``None`` on success.

    ``stderr_tail`` is the (bounded) end of restic's stderr, ``json_error`` the ``message`` of its
    JSON ``exit_error`` line when there was one (it is preferred for the human message).
    ``unreadable`` and ``summary`` are attached to a :class:`PartialBackup`. ``location`` (the
    repository's URL, credentials removed) is named by a :class:`WrongCredentials` or
    :class:`BackendUnavailable` message.
    """
    if exit_code == ExitCode.OK:
        return None
    raw = json_error if json_error else stderr_tail
    if exit_code != ExitCode.REPOSITORY_NOT_FOUND:
        raw = without_location_hint(raw)
    detail = clean_message(raw) if json_error else _last_lines(raw)
    if exit_code < 0:
        name = _signal_name(-exit_code)
        message = f"restic was killed by {name}" + (f": {detail}" if detail else "")
        if -exit_code in (signal.SIGINT, signal.SIGTERM):
            return Interrupted(message, exit_code=exit_code)
        return ResticFailed(message, exit_code=exit_code)
    message = detail or _DEFAULT_MESSAGES.get(exit_code, f"restic failed with unknown exit code {exit_code}")
    if exit_code == ExitCode.PARTIAL_BACKUP:
        if unreadable:
            shown = ", ".join(unreadable[:10]) + (", ..." if len(unreadable) > 10 else "")
            message = f"{message} (unreadable: {shown})"
        return PartialBackup(message, exit_code=exit_code, unreadable=unreadable, summary=summary)
    cls = _BY_CODE.get(exit_code)
    if cls is not None:
        return cls(message, exit_code=exit_code)
    text = f"{json_error or ''}\n{stderr_tail}"
    if exit_code == ExitCode.FATAL and _SIGNAL_RECEIVED.search(text):
        return Interrupted(message, exit_code=exit_code)
    if exit_code == ExitCode.FATAL and _SNAPSHOT_NOT_FOUND.search(text):
        return SnapshotNotFound(message, exit_code=exit_code)
    if exit_code == ExitCode.FATAL and (refused := refusal(text, location, message)) is not None:
        return refused
    backend = _backend(location)
    if exit_code == ExitCode.FATAL and _UNREACHABLE.search(text):
        return BackendUnavailable(f"{backend} is unreachable: {message}", exit_code=exit_code)
    return ResticFailed(message, exit_code=exit_code)


def refusal(error: str, location: str | None = None, message: str | None = None) -> ResticError | None:
    """The error a backend refusal in restic's words ``error`` (a retry's, or a failed run's) is, when
    no retry can cure it: :class:`UntrustedCertificate`, :class:`WrongCredentials`, or
    :class:`RepositoryNotFound` for a missing S3 bucket (restic's S3 backend retries NoSuchBucket when it
    asks the bucket's location, i.e. without ``s3.region``; ``restic init`` creates the bucket) or Azure
    container, or a missing GCS bucket (which ``restic init`` does not create: the message names the
    bucket and says to create it), naming the backend at ``location`` and saying ``message`` (``error``
    cleaned when not given); else ``None``."""
    said = message if message is not None else clean_message(without_location_hint(error))
    backend = _backend(location)
    if _UNTRUSTED_CERTIFICATE.search(error):
        return UntrustedCertificate(
            f"{backend} is reached over TLS with a certificate restic does not trust: {said} ({_CA_HINT})",
            exit_code=ExitCode.FATAL,
        )
    if _WRONG_CREDENTIALS.search(error):
        return WrongCredentials(
            f"{backend} refused the storage Secret's credentials: {said}", exit_code=ExitCode.FATAL
        )
    if _NO_GCS_BUCKET.search(error):
        found = _GCS_BUCKET.search(location or "") or _GCS_BUCKET.search(error)
        bucket = f"GCS bucket {found.group(1)}" if found else "the GCS bucket"
        return RepositoryNotFound(
            f"{backend} has no such bucket, so no repository: {bucket} does not exist, and restic does not "
            f"create a GCS bucket: create it first (restic said: {said})",
            exit_code=ExitCode.FATAL,
        )
    if _NO_BUCKET.search(error):
        return RepositoryNotFound(
            f"{backend} has no such bucket or container, so no repository: {said} (restic init creates it)",
            exit_code=ExitCode.FATAL,
        )
    return None


def _backend(location: str | None) -> str:
    return f"backend {bare_location(location)}" if location else "the backend"


def bare_location(url: str) -> str:
    """A repository URL without its user part (``rest:http://user:***@host/r`` -> ``rest:http://host/r``)."""
    return _USERINFO.sub(r"\1", url)


def without_location_hint(text: str) -> str:
    """``text`` without restic's "Is there a repository at the following location?" and the location
    line after it, and without the user part of any URL (restic shows it as ``user:***``)."""
    lines = text.splitlines()
    kept: list[str] = []
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if _LOCATION_HINT in line:
            kept.append(line.replace(_LOCATION_HINT, "").rstrip())
            skip_next = True
            continue
        kept.append(line)
    return bare_location("\n".join(line for line in kept if line.strip()))


def clean_message(text: str) -> str:
    """The text of a restic message without terminal escapes, the ``Fatal:`` prefix, line breaks, or the
    rules of dashes the Azure SDK draws around an HTTP error."""
    text = _ANSI.sub("", text).replace("\r", "\n")
    lines = [line.strip().removeprefix("Fatal: ") for line in text.splitlines()]
    return "; ".join(line for line in lines if line.strip("-"))


def _last_lines(stderr_tail: str, count: int = 5) -> str:
    lines = [line for line in clean_message(stderr_tail).split("; ") if line]
    return "; ".join(lines[-count:])


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
