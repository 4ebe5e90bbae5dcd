"""The Kubernetes error taxonomy: HTTP status (of an answer, an ApiException, a watch Status) -> class."""

import json

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from stashlet.kube import errors
from stashlet.operator.core.apiclient import translate

BY_STATUS = [
    (400, errors.BadRequest),
    (401, errors.Unauthorized),
    (403, errors.Forbidden),
    (404, errors.NotFound),
    (409, errors.Conflict),
    (410, errors.Gone),
    (422, errors.Invalid),
    (429, errors.TooManyRequests),
    (500, errors.ServerError),
    (503, errors.ServerError),
    (418, errors.KubeError),
    (0, errors.KubeError),
]


def api_exception(status: int, body: bytes | None) -> ApiException:
    """What the generated client raises: the HTTP status and reason, and the response body."""
    exc = ApiException(status=status, reason="Reason")
    exc.body = body
    return exc


@pytest.mark.parametrize(("status", "cls"), BY_STATUS)
def test_api_exceptions_become_the_class_of_their_status(status: int, cls: type[errors.KubeError]) -> None:
    """Each known status has its class, any 5xx is a ServerError, anything else the plain root class."""
    body = json.dumps(
        {"kind": "Status", "message": "it failed", "reason": "Why", "details": {"name": "x"}}
    ).encode()
    error = translate(api_exception(status, body))
    assert type(error) is cls
    assert (error.message, error.status, error.reason, error.details) == (
        "it failed",
        status,
        "Why",
        {"name": "x"},
    )
    assert str(error) == "it failed"


@pytest.mark.parametrize(("status", "cls"), BY_STATUS)
def test_watch_status_objects_become_the_class_of_their_code(
    status: int, cls: type[errors.KubeError]
) -> None:
    """A metav1.Status maps like an ApiException, keeping message, reason and details."""
    error = errors.from_status_object(
        {"code": status, "message": "gone away", "reason": "Expired", "details": 1}
    )
    assert type(error) is cls
    assert (error.message, error.status, error.reason, error.details) == ("gone away", status, "Expired", 1)


def test_a_status_object_without_fields_is_a_plain_error() -> None:
    """Missing code, message and reason give status 0 and empty strings."""
    error = errors.from_status_object({})
    assert type(error) is errors.KubeError
    assert (error.message, error.status, error.reason, error.details) == ("", 0, "", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Reason"),
        (b"", "Reason"),
        (b"plain text\n", "plain text"),
        (b"   ", "Reason"),
        (b"[1, 2]", "Reason"),
        (b'{"reason": "NotFound"}', "Reason"),
    ],
)
def test_the_message_falls_back_to_the_body_text_then_the_http_reason(
    body: bytes | None, message: str
) -> None:
    """A body that is not a JSON object gives its text (or the HTTP reason when blank) as the message."""
    error = translate(api_exception(404, body))
    assert type(error) is errors.NotFound
    assert error.message == message
    answered = errors.from_response(body or b"", 404, "Reason")
    assert (type(answered), answered.message) == (errors.NotFound, message)


def test_classes_carry_their_status_when_raised_directly() -> None:
    """A class raised by stashlet itself has its own status; an explicit one wins."""
    assert errors.Gone("too old").status == 410
    assert errors.Conflict("again", status=409).status == 409
    assert errors.ServerError("down").status == 500
    assert errors.KubeError("odd").status == 0
    assert errors.KubeError("odd", status=418).status == 418
    assert all(issubclass(cls, errors.KubeError) for _, cls in BY_STATUS)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (errors.TooManyRequests("slow down"), True),
        (errors.ServerError("down"), True),
        (errors.Conflict("stale"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError(), True),
        (errors.NotFound("gone"), False),
        (errors.Invalid("bad"), False),
        (errors.Gone("old"), False),
        (ValueError(), False),
    ],
)
def test_transient_failures_are_the_retryable_ones(exc: BaseException, transient: bool) -> None:
    """Throttling, server errors, conflicts and lost connections are worth a retry; nothing else."""
    assert errors.is_transient(exc) is transient
