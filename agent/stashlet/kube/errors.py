"""Kubernetes API errors as a small taxonomy: NotFound, Conflict, Gone, TooManyRequests, and the rest.

Code above this layer catches these classes, never raw HTTP statuses. ``is_transient`` says which
are worth a retry at an I/O edge.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException


class KubeError(Exception):
    """An error answered by the Kubernetes API server."""

    status: int = 0

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


class BadRequest(KubeError):
    """400: the request itself is wrong."""

    status = 400


class Unauthorized(KubeError):
    """401: no valid credentials."""

    status = 401


class Forbidden(KubeError):
    """403: RBAC does not allow it."""

    status = 403


class NotFound(KubeError):
    """404: the object (or its kind) does not exist."""

    status = 404


class Conflict(KubeError):
    """409: a stale resourceVersion, or the object already exists."""

    status = 409


class Gone(KubeError):
    """410: the resourceVersion is too old to watch from; list again."""

    status = 410


class Invalid(KubeError):
    """422: the object fails validation; the message names the field."""

    status = 422


class TooManyRequests(KubeError):
    """429: throttled; retry after a while."""

    status = 429


class ServerError(KubeError):
    """5xx: the server could not answer now."""

    status = 500


_BY_STATUS: dict[int, type[KubeError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, Invalid, TooManyRequests)
}


def translate(exc: ApiException) -> KubeError:
    """Turn kubernetes_asyncio's ApiException into our class for its status, keeping the server's words."""
    status = int(exc.status or 0)
    message = str(exc.reason or "")
    reason = ""
    details: Any = None
    body: Any = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            message = body.strip() or message
        else:
            if isinstance(parsed, dict):
                message = str(parsed.get("message") or message)
                reason = str(parsed.get("reason") or "")
                details = parsed.get("details")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else KubeError)
    return cls(message, status=status, reason=reason, details=details)


def from_status_object(status_obj: dict[str, Any]) -> KubeError:
    """Turn a metav1.Status (as sent in a watch ERROR event) into our class."""
    code = int(status_obj.get("code") or 0)
    cls = _BY_STATUS.get(code, ServerError if code >= 500 else KubeError)
    return cls(
        str(status_obj.get("message", "")),
        status=code,
        reason=str(status_obj.get("reason", "")),
        details=status_obj.get("details"),
    )


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: throttling, server errors, conflicts, and lost connections."""
    if isinstance(exc, (TooManyRequests, ServerError, Conflict)):
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) and not isinstance(exc, KubeError)
