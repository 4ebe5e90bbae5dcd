"""Run a command in a container through the API server's ``pods/exec`` (what ``kubectl exec`` does).

The request is a WebSocket upgrade of ``GET .../pods/<pod>/exec`` (``v4.channel.k8s.io``: one byte of
channel, then the data; 1 is stdout, 2 stderr, 3 the final ``Status``; ``v5.channel.k8s.io`` is offered
first and reads the same here), made with the agent's own client (:class:`~stashlet.kube.rest.RestClient`:
its server, CA and identity; the WebSocket is wsproto's, :mod:`stashlet.kube.websocket`). The caller
needs ``get`` and (since Kubernetes 1.35) ``create`` on ``pods/exec`` in the pod's namespace. The last
10 KiB of stdout and of stderr are kept.

The exit status comes from the final ``Status``: ``Success`` is 0; a ``NonZeroExitCode`` failure carries
the code; any other failure (the command was not found, the container stopped) is :class:`ExecFailed`
with the API server's message, as is a refused upgrade (its HTTP status says why: 403 no right, 404 no
such pod, 400 no such container or not running).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stashlet.agent.hooks.outcome import HookFailed
from stashlet.kube import paths
from stashlet.kube.rest import RestClient
from stashlet.kube.websocket import UpgradeRefused, WebSocket

STDOUT, STDERR, ERROR = 1, 2, 3
KEEP = 10 * 1024
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


class ExecFailed(HookFailed):
    """The command could not be run, or ended without an exit status."""


@dataclass(frozen=True)
class ExecOutput:
    """A finished command: its exit code and the ends of its output."""

    exit_code: int
    stdout: bytes
    stderr: bytes


async def exec_in_container(
    api: RestClient, namespace: str, pod: str, container: str, command: Sequence[str]
) -> ExecOutput:
    """Run ``command`` in ``container`` of ``namespace/pod`` and wait for it to end."""
    query = [("command", part) for part in command]
    query += [("container", container), ("stdout", "true"), ("stderr", "true")]
    try:
        ws = await api.websocket(paths.core("pods", namespace, pod, "exec"), query, PROTOCOLS)
    except UpgradeRefused as exc:
        raise ExecFailed(
            f"the API server refused the exec: HTTP {exc.status} {_refusal(exc.status)}"
        ) from None
    async with ws:
        return await _collect(ws)


def _refusal(status: int) -> str:
    return {
        401: "(not authenticated)",
        403: "(forbidden: the agent's service account needs get and create on pods/exec)",
        404: "(no such pod)",
        400: "(no such container, or it is not running)",
    }.get(status, "")


async def _collect(ws: WebSocket) -> ExecOutput:
    out, err = bytearray(), bytearray()
    status: dict[str, Any] | None = None
    async for data in ws.messages():
        if len(data) < 2:
            continue
        channel, payload = data[0], data[1:]
        if channel == STDOUT:
            out = (out + payload)[-KEEP:]
        elif channel == STDERR:
            err = (err + payload)[-KEEP:]
        elif channel == ERROR:
            status = json.loads(payload)
    if status is None:
        raise ExecFailed("the exec stream ended without an exit status")
    return ExecOutput(exit_code(status), bytes(out), bytes(err))


def exit_code(status: dict[str, Any]) -> int:
    """The command's exit code from the exec's final ``Status``; ExecFailed when it did not run."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", "1"))
    raise ExecFailed(str(status.get("message") or "the command failed to run"))
