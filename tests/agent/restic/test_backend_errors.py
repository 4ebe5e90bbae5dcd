"""restic's words about a backend, as restic 0.18 prints them: retries followed, refusals and outages
told apart from other failures, and restic's location hint dropped where it misleads."""

from __future__ import annotations

from stashlet.agent.restic.errors import (
    BackendUnavailable,
    RepositoryNotFound,
    ResticFailed,
    WrongCredentials,
    bare_location,
    error_for_exit,
    refusal,
    without_location_hint,
)
from stashlet.agent.restic.output import BackendRecovered, BackendRetry, parse_backend_notice

HINT = "Is there a repository at the following location?"
REFUSED_401 = (
    "Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\n"
    f"{HINT}\nrest:http://user:***@127.0.0.1:18123/r1/"
)
GAVE_UP = (
    f"Fatal: unable to open config file: context canceled\n{HINT}\nrest:http://user:***@10.0.0.7:8000/r1/"
)
RETRY = (
    'Save(<data/a51d594f4a>) returned error, retrying after 958.747025ms: Post "http://user:***@127.0.0.1:18123'
    '/r1/data/a51d594f4ad0": dial tcp 127.0.0.1:18123: connect: connection refused'
)


def test_retry_and_recovery_lines_are_notices() -> None:
    """The plain stderr lines of restic's backend retries, and nothing else."""
    retry = parse_backend_notice(RETRY)
    assert isinstance(retry, BackendRetry)
    assert retry.operation == "Save(<data/a51d594f4a>)"
    assert retry.error.endswith("connect: connection refused")
    recovered = parse_backend_notice("Save(<data/90e1f98d1b>) operation successful after 4 retries")
    assert recovered == BackendRecovered("Save(<data/90e1f98d1b>)")
    assert parse_backend_notice('{"message_type":"status","percent_done":0.5}') is None
    assert parse_backend_notice("Load(<lock/1>) failed: 404") is None


def test_a_refused_access_is_wrong_credentials_without_the_hint() -> None:
    """401/403 and the clouds' refusals: WrongCredentials naming the backend, no hint, no user part."""
    error = error_for_exit(1, "", REFUSED_401.removeprefix("Fatal: "), location="rest:http://u:***@h:8000/r1")
    assert isinstance(error, WrongCredentials)
    assert error.message == (
        "backend rest:http://h:8000/r1 refused the storage Secret's credentials: "
        "unable to open config file: unexpected HTTP response (401): 401 Unauthorized"
    )
    for words in (
        "Access Denied.",
        "The AWS Access Key Id you provided does not exist (InvalidAccessKeyId)",
        "SignatureDoesNotMatch",
        "unexpected HTTP response (403): 403 Forbidden",
    ):
        assert isinstance(error_for_exit(1, words), WrongCredentials), words


def test_an_unreachable_backend_is_backend_unavailable() -> None:
    """Refused connections, unknown hosts, timeouts and restic's given-up retries: BackendUnavailable."""
    error = error_for_exit(1, RETRY + "\n" + GAVE_UP, GAVE_UP.removeprefix("Fatal: "))
    assert isinstance(error, BackendUnavailable)
    assert error.message == "the backend is unreachable: unable to open config file: context canceled"
    for words in (
        "dial tcp: lookup rest-server.demo.svc: no such host",
        "i/o timeout",
        "unexpected HTTP response (503): 503 Service Unavailable",
    ):
        assert isinstance(error_for_exit(1, words), BackendUnavailable), words
    assert type(error_for_exit(1, "unable to save snapshot: disk full")) is ResticFailed


def test_the_hint_stays_where_it_is_true() -> None:
    """A missing repository (exit 10) keeps restic's hint: there the location is the question."""
    text = f"Fatal: repository does not exist: unable to open config file\n{HINT}\n/repo"
    error = error_for_exit(10, "", text)
    assert isinstance(error, RepositoryNotFound)
    assert HINT in error.message


def test_hint_and_user_part_are_dropped() -> None:
    """The hint line and the location line after it go; a URL keeps no user part."""
    assert without_location_hint(REFUSED_401) == (
        "Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized"
    )
    assert bare_location("rest:http://user:***@host:8000/r") == "rest:http://host:8000/r"
    assert bare_location("s3:https://s3.amazonaws.com/bucket") == "s3:https://s3.amazonaws.com/bucket"


GCS_INIT_NO_BUCKET = (
    "Fatal: create repository at gs:no-such-bucket:/sample/data failed: Fatal: unable to open repository "
    "at gs:no-such-bucket:/sample/data: storage: bucket doesn't exist: googleapi: Error 404: Not Found, "
    "notFound\n\n"
)
"""restic 0.18.1's stderr for ``restic init`` on a bucket fake-gcs-server does not have (exit 1)."""


def test_a_missing_gcs_bucket_is_no_repository_naming_the_bucket() -> None:
    """``restic init`` on a missing GCS bucket (restic never creates one): RepositoryNotFound naming the
    backend and the bucket, saying to create it, with restic's words kept."""
    error = error_for_exit(1, GCS_INIT_NO_BUCKET, location="gs:no-such-bucket:/sample/data")
    assert isinstance(error, RepositoryNotFound)
    assert error.message.startswith(
        "backend gs:no-such-bucket:/sample/data has no such bucket, so no repository: GCS bucket "
        "no-such-bucket does not exist, and restic does not create a GCS bucket: create it first "
        "(restic said: create repository at gs:no-such-bucket:/sample/data failed: "
    ), error.message
    assert error.message.endswith("storage: bucket doesn't exist: googleapi: Error 404: Not Found, notFound)")
    without_location = error_for_exit(1, GCS_INIT_NO_BUCKET)
    assert isinstance(without_location, RepositoryNotFound)
    assert "GCS bucket no-such-bucket does not exist" in without_location.message


AZURE_RULE = "-" * 80
AZURE_REFUSED = (
    "unable to open config file: blob.GetProperties: HEAD https://stashletbackups.blob.azurite.test:36201"
    f"/missing/demo/config\n{AZURE_RULE}\nRESPONSE 403: 403 Server failed to authenticate the request. Make"
    " sure the value of the Authorization header is formed correctly including the signature.\nERROR CODE:"
    f" AuthorizationFailure\n{AZURE_RULE}\nResponse contained no body\n{AZURE_RULE}\n\n"
    f"{HINT}\nazure:missing:/demo"
)
"""restic 0.18.1's exit error for ``snapshots`` with a wrong AZURE_ACCOUNT_KEY on Azurite (not retried)."""


def test_a_refused_azure_key_reads_without_the_sdks_rules() -> None:
    """The Azure SDK's error: WrongCredentials naming the backend, the status and error code kept, the
    rules of dashes and restic's hint gone."""
    error = error_for_exit(1, "", AZURE_REFUSED, location="azure:missing:/demo")
    assert isinstance(error, WrongCredentials)
    assert error.message == (
        "backend azure:missing:/demo refused the storage Secret's credentials: unable to open config file: "
        "blob.GetProperties: HEAD https://stashletbackups.blob.azurite.test:36201/missing/demo/config; "
        "RESPONSE 403: 403 Server failed to authenticate the request. Make sure the value of the "
        "Authorization header is formed correctly including the signature.; ERROR CODE: "
        "AuthorizationFailure; Response contained no body"
    )


GCS_TOKEN_REFUSED = (
    'Stat(<config/>) returned error, retrying after 1.336116655s: Get "http://127.0.0.1:54729/storage/v1/b/'
    'no-such-bucket/o/sample%2Fdata%2Fconfig?alt=json&prettyPrint=false&projection=full": oauth2: cannot '
    "fetch token: 400 Bad Request"
)
"""restic 0.18.1's retry line when the token endpoint refuses the key (the endpoint's answer, with
``invalid_grant``, follows on a line of its own, which the retry line does not carry)."""


def test_a_token_endpoint_refusing_the_key_is_a_refusal() -> None:
    """restic retries a GCS token request the token endpoint refused (400, 401, 403): no retry can cure
    it, so it is WrongCredentials naming the backend; a token endpoint that is down or failing is not."""
    notice = parse_backend_notice(GCS_TOKEN_REFUSED)
    assert isinstance(notice, BackendRetry)
    refused = refusal(notice.error, "gs:no-such-bucket:/sample/data")
    assert isinstance(refused, WrongCredentials)
    assert refused.message.startswith(
        "backend gs:no-such-bucket:/sample/data refused the storage Secret's credentials: Get "
    )
    assert refused.message.endswith("oauth2: cannot fetch token: 400 Bad Request")
    for passing in (
        "oauth2: cannot fetch token: 503 Service Unavailable",
        'oauth2: cannot fetch token: Post "http://10.0.0.1:8080/token": dial tcp 10.0.0.1:8080: connect: '
        "connection refused",
    ):
        assert refusal(passing) is None, passing
