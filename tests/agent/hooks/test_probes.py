"""httpGet, httpPost and tcpSocket hooks against real servers on this machine: what arrives, what counts
as success, failures (status, refused connection, silence until the timeout), and secrets kept out of
every message."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.agent.hooks.conftest import Recorder, closed_port

from stashlet.agent.hooks import HookData, HookKind, PodRef, restore_hooks, run_hook
from stashlet.agent.hooks.data import InvokerRef, SessionStatus, TargetInfo

POD = PodRef("demo", "app-0")
FAILED = HookData(
    name="rs-1",
    namespace="demo",
    invoker=InvokerRef("RestoreSession", "rs-1"),
    target=TargetInfo("apps/v1", "Deployment", "app"),
    status=SessionStatus("Failed", "12s", 'restic: "wrong password" <for> host-0'),
)
SUCCEEDED = HookData(
    FAILED.name, FAILED.namespace, FAILED.invoker, FAILED.target, SessionStatus("Succeeded", "3s")
)


def hooks(kind: str, action: dict[str, Any], **extra: Any) -> Any:
    parsed = restore_hooks({kind: {**action, **extra}})
    return parsed.pre if kind == "preRestore" else parsed.post


async def test_http_get_sends_path_query_and_headers_and_succeeds_on_2xx(recorder: Recorder) -> None:
    """httpGet reaches host:port with its path, query and custom headers (repeated names kept, ``Host``
    honoured, stashlet's User-Agent unless one is given); the result names scheme, host and port only."""
    hook = hooks(
        "preRestore",
        {
            "httpGet": {
                "host": "127.0.0.1",
                "port": recorder.port,
                "path": "/hooks/pre-s3cr3t?token=abc123&x=1",
                "scheme": "HTTP",
                "httpHeaders": [
                    {"name": "X-Stash", "value": "one"},
                    {"name": "X-Stash", "value": "two"},
                    {"name": "Host", "value": "app.example"},
                ],
            }
        },
    )
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, FAILED)

    assert (result.succeeded, result.skipped) == (True, False), result.message
    [seen] = recorder.seen
    assert (seen.method, seen.path, seen.query) == ("GET", "/hooks/pre-s3cr3t", "token=abc123&x=1")
    assert seen.headers["Host"] == "app.example"
    assert seen.headers["User-Agent"] == "stashlet-hook"
    assert seen.body == b""
    assert result.message == f"GET http://127.0.0.1:{recorder.port}: HTTP status 200"


async def test_http_post_sends_the_rendered_body_with_the_session_phase_and_error(recorder: Recorder) -> None:
    """An OnFailure postRestore for a Failed session posts Stash's documented Slack body, rendered with
    the session's namespace, target, phase and error, with the hook's Content-Type and User-Agent."""
    body = (
        '{{- $msg := dict "type" "mrkdwn" "text" (printf "Restore %s for %s/%s: %s" .Status.Phase .Namespace '
        ".Target.Name .Status.Error) -}}\n"
        '{"blocks": [{"type": "section", "text": {{ toJson $msg }}}]}'
    )
    hook = hooks(
        "postRestore",
        {
            "httpPost": {
                "host": "127.0.0.1",
                "port": recorder.port,
                "path": "/services/T000/B000/XXXX",
                "httpHeaders": [
                    {"name": "Content-Type", "value": "application/json; charset=utf-8"},
                    {"name": "User-Agent", "value": "stash/0.9.x"},
                ],
                "body": body,
            }
        },
        executionPolicy="OnFailure",
    )
    result = await run_hook(HookKind.POST_RESTORE, hook, POD, FAILED)

    assert result.succeeded, result.message
    [seen] = recorder.seen
    assert (seen.method, seen.path) == ("POST", "/services/T000/B000/XXXX")
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen.headers["User-Agent"] == "stash/0.9.x"
    sent = json.loads(seen.body)
    assert sent == {
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": 'Restore Failed for demo/app: restic: "wrong password" <for> host-0',
                },
            }
        ]
    }
    assert b"\\u003cfor\\u003e" in seen.body  # Go's JSON escapes, as Stash sends them
    assert "XXXX" not in result.message and "services" not in result.message


async def test_http_post_form_and_detected_content_types(recorder: Recorder) -> None:
    """A form goes URL-encoded (repeated keys kept); a body without a Content-Type header goes as
    application/json when it is JSON, else text/plain; a body without a template is sent untouched."""
    form = hooks(
        "preRestore",
        {
            "httpPost": {
                "host": "127.0.0.1",
                "port": recorder.port,
                "form": [{"key": "name", "values": ["john doe", "jd"]}, {"key": "age", "values": ["28"]}],
                "body": "ignored when a form is given",
            }
        },
    )
    as_json = hooks(
        "preRestore", {"httpPost": {"host": "127.0.0.1", "port": recorder.port, "body": ' {"a": 1} '}}
    )
    as_text = hooks(
        "preRestore", {"httpPost": {"host": "127.0.0.1", "port": recorder.port, "body": "plain words"}}
    )
    for hook in (form, as_json, as_text):
        assert (await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED)).succeeded

    sent_form, sent_json, sent_text = recorder.seen
    assert sent_form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent_form.body == b"name=john+doe&name=jd&age=28"
    assert (sent_json.headers["Content-Type"], sent_json.body) == ("application/json", b' {"a": 1} ')
    assert (sent_text.headers["Content-Type"], sent_text.body) == (
        "text/plain; charset=utf-8",
        b"plain words",
    )


async def test_an_error_status_fails_with_the_status_and_no_secret(recorder: Recorder) -> None:
    """HTTP 500 fails the hook; the message has the status and the response, in which the server's echo
    of the Authorization header, the body and the path is masked."""
    recorder.status = 500
    recorder.text = "denied for Bearer tok-987654 posting top-secret-body to /hooks/k3y-segment"
    hook = hooks(
        "preRestore",
        {
            "httpPost": {
                "host": "127.0.0.1",
                "port": recorder.port,
                "path": "/hooks/k3y-segment",
                "httpHeaders": [{"name": "Authorization", "value": "Bearer tok-987654"}],
                "body": "top-secret-body",
            }
        },
    )
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED)

    assert not result.succeeded
    assert result.message.startswith(
        f"httpPost: POST http://127.0.0.1:{recorder.port}: HTTP status 500: denied"
    )
    for secret in ("tok-987654", "top-secret-body", "k3y-segment"):
        assert secret not in result.message


async def test_a_redirect_is_not_followed_and_counts_as_success(recorder: Recorder) -> None:
    """3xx is below 400: success, as Stash's prober counts it; the redirect target is never asked."""
    recorder.status = 302
    recorder.extra_headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    hook = hooks("preRestore", {"httpGet": {"host": "127.0.0.1", "port": recorder.port}})
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED)
    assert result.succeeded, result.message
    assert [s.path for s in recorder.seen] == ["/"]


async def test_a_server_that_never_answers_times_out(silent_port: int) -> None:
    """The hook's timeout bounds the request: a server that accepts and stays silent fails the hook."""
    hook = hooks("preRestore", {"httpGet": {"host": "127.0.0.1", "port": silent_port, "path": "/slow"}})
    started = asyncio.get_running_loop().time()
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED, timeout=0.5)
    elapsed = asyncio.get_running_loop().time() - started
    assert not result.succeeded
    assert result.message == "httpGet: did not finish within 0.5s"
    assert 0.4 < elapsed < 5


async def test_tcp_socket_succeeds_on_a_listening_port_and_fails_on_a_closed_one(silent_port: int) -> None:
    """tcpSocket opens and closes a connection: fine where something listens; refused elsewhere."""
    open_hook = hooks("preRestore", {"tcpSocket": {"host": "127.0.0.1", "port": silent_port}})
    closed = closed_port()
    closed_hook = hooks("preRestore", {"tcpSocket": {"host": "127.0.0.1", "port": closed}})

    ok = await run_hook(HookKind.PRE_RESTORE, open_hook, POD, SUCCEEDED)
    refused = await run_hook(HookKind.PRE_RESTORE, closed_hook, POD, SUCCEEDED)

    assert (ok.succeeded, ok.message) == (True, f"tcp 127.0.0.1:{silent_port}: connected")
    assert not refused.succeeded
    assert refused.message.startswith(f"tcpSocket: tcp 127.0.0.1:{closed}: cannot connect")


async def test_an_unreachable_http_port_fails_saying_it_cannot_connect() -> None:
    """httpPost to a port nothing listens on fails with "cannot connect", not an exception."""
    closed = closed_port()
    hook = hooks("postRestore", {"httpPost": {"host": "127.0.0.1", "port": closed, "path": "/s3cr3t-path"}})
    result = await run_hook(HookKind.POST_RESTORE, hook, POD, FAILED)
    assert not result.succeeded
    assert result.message.startswith(f"httpPost: POST http://127.0.0.1:{closed}: cannot connect")
    assert "s3cr3t" not in result.message


async def test_a_post_hook_its_policy_excludes_is_skipped_without_a_request(recorder: Recorder) -> None:
    """OnSuccess after a failure, OnFailure after a success: nothing is sent; the result is a success
    marked skipped with Stash's message."""
    on_success = hooks(
        "postRestore", {"httpGet": {"host": "127.0.0.1", "port": recorder.port}}, executionPolicy="OnSuccess"
    )
    on_failure = hooks(
        "postRestore", {"httpGet": {"host": "127.0.0.1", "port": recorder.port}}, executionPolicy="OnFailure"
    )
    first = await run_hook(HookKind.POST_RESTORE, on_success, POD, FAILED)
    second = await run_hook(HookKind.POST_RESTORE, on_failure, POD, SUCCEEDED)
    assert (first.succeeded, first.skipped) == (True, True)
    assert (
        first.message
        == 'Skipping executing postRestore. Reason: executionPolicy is "OnSuccess" but phase is "Failed".'
    )
    assert (second.succeeded, second.skipped) == (True, True)
    assert recorder.seen == []


async def test_a_body_that_does_not_render_fails_before_any_request(recorder: Recorder) -> None:
    """A template error fails the hook naming the field; nothing is sent."""
    hook = hooks(
        "preRestore", {"httpPost": {"host": "127.0.0.1", "port": recorder.port, "body": "{{ .Stats }}"}}
    )
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED)
    assert not result.succeeded
    assert result.message.startswith("httpPost: cannot render spec.hooks.preRestore.httpPost.body: line 1:")
    assert recorder.seen == []


async def test_a_hook_needing_the_pod_without_an_api_client_fails_clearly() -> None:
    """Without a host the pod's IP is needed; with no API client to read the pod, the result says so."""
    hook = hooks("preRestore", {"tcpSocket": {"port": 80}})
    result = await run_hook(HookKind.PRE_RESTORE, hook, POD, SUCCEEDED)
    assert not result.succeeded
    assert "needs the executor pod demo/app-0" in result.message
