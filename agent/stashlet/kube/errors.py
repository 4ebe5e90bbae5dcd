"""Kubernetes API errors as a small taxonomy: NotFound, Conflict, Gone, TooManyRequests, and the rest.

Code above this layer catches these classes, never raw HTTP statuses. ``is_transient`` says which
are worth a retry at an I/O edge.
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """An error answered by the Kubernetes API server.

    A subclass names the HTTP status it stands for in its header (``class NotFound(KubeError, status=404)``);
    an instance carries that status unless it is given another one.
    """

    status: int = 0

    def __init_subclass__(cls, *, status: int | None = None, **kwargs: Any) -> None:
        """Give the subclass its own ``status`` when the header names one; else it inherits its parent's."""
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", details: Any = None
    ) -> None:
        """Keep the server's message, HTTP status, machine reason and details."""
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.reason = reason
        self.details = details


class BadRequest(KubeError, status=400):
    """400: the request itself is wrong."""


class Unauthorized(KubeError, status=401):
    """401: no valid credentials."""


class Forbidden(KubeError, status=403):
    """403: RBAC does not allow it."""


class NotFound(KubeError, status=404):
    """404: the object (or its kind) does not exist."""


class Conflict(KubeError, status=409):
    """409: a stale resourceVersion, or the object already exists."""


class Gone(KubeError, status=410):
    """410: the resourceVersion is too old to watch from; list again."""


class Invalid(KubeError, status=422):
    """422: the object fails validation; the message names the field."""


class TooManyRequests(KubeError, status=429):
    """429: throttled; retry after a while."""


class ServerError(KubeError, status=500):
    """5xx: the server could not answer now."""


class TransportError(ConnectionError):
    """The connection to the API server failed or its answer broke HTTP (a client's own failure, not the
    server's word): transient, as a lost connection is. Each client raises its own transport failures as
    this, so the shared layer names no HTTP library."""


_BY_STATUS: dict[int, type[KubeError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, Invalid, TooManyRequests)
}


def _for_status(status: int, message: str, *, reason: str = "", details: Any = None) -> KubeError:
    """The error for an HTTP status: its own class, ServerError for any other 5xx, else the root class."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else KubeError)
    return cls(message, status=status, reason=reason, details=details)


def from_response(raw: bytes, status: int, reason: str | None) -> KubeError:
    """The error of a failed answer with HTTP ``status``: the server's words from its metav1.Status body,
    else the body's text, else the HTTP reason."""
    text = raw.decode(errors="replace").strip()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        return _for_status(status, text or (reason or ""))
    if not isinstance(parsed, dict):
        return _for_status(status, reason or "")
    return _for_status(
        status,
        str(parsed.get("message") or reason or ""),
        reason=str(parsed.get("reason") or ""),
        details=parsed.get("details"),
    )


def from_status_object(status_obj: dict[str, Any]) -> KubeError:
    """Turn a metav1.Status (as sent in a watch ERROR event) into our class."""
    return _for_status(
        int(status_obj.get("code") or 0),
        str(status_obj.get("message", "")),
        reason=str(status_obj.get("reason", "")),
        details=status_obj.get("details"),
    )


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: throttling, server errors, conflicts, and lost connections."""
    if isinstance(exc, (TooManyRequests, ServerError, Conflict)):
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) and not isinstance(exc, KubeError)
