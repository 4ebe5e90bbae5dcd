"""One hook, end to end: policy, templates, the executor pod, the action, the timeout, the result.

:func:`run_hook` never raises for a hook that fails: every failure (a template that does not render, a
pod without the container, a refused exec, a command that exits non-zero, an HTTP status of 400 or more,
a port that does not answer, the timeout) is a :class:`HookResult` with ``succeeded=False`` and a
message naming the handler and what went wrong, masked of the hook's secrets (:mod:`.outcome`).

A post hook whose ``executionPolicy`` does not match the outcome in ``data`` is skipped: a successful
result with ``skipped=True`` and Stash's skip message.

The timeout (Stash's prober uses 5 minutes) bounds the whole hook, ``exec`` included; a command cut
short by it may go on running in its container (the API server does not stop it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from stashlet.agent.hooks import pods
from stashlet.agent.hooks.data import HookData, skip_reason
from stashlet.agent.hooks.gofuncs import TemplateError
from stashlet.agent.hooks.outcome import HookFailed, HookResult, Scrubber
from stashlet.agent.hooks.podexec import exec_in_container
from stashlet.agent.hooks.probes import http_request, tcp_connect
from stashlet.agent.hooks.template import render
from stashlet.api.hooks import ExecAction, Hook, HookKind, HTTPAction, TCPSocketAction
from stashlet.kube import paths
from stashlet.kube.errors import KubeError, NotFound
from stashlet.kube.rest import RestClient

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0
"""Seconds a hook may take (Stash's prober: 5 minutes)."""


@dataclass(frozen=True)
class PodRef:
    """The executor pod: where ``exec`` runs, whose IP and named ports the other handlers use."""

    namespace: str
    name: str

    def __str__(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Rendered:
    command: tuple[str, ...] = ()
    body: str = ""

    def texts(self) -> list[str]:
        return [*self.command, self.body]


async def run_hook(
    kind: HookKind,
    hook: Hook,
    pod: PodRef,
    data: HookData,
    *,
    api: RestClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the hook's own deadline, part of its definition
) -> HookResult:
    """Run ``hook`` (of ``kind``) for the session ``data`` summarises, from executor pod ``pod``.

    ``api`` (the agent's own client) reads the pod and runs ``exec``; a hook that needs neither (an HTTP
    or TCP hook with a host and a port number) runs without it.
    """
    skipped = skip_reason(kind, hook.execution_policy, data) if kind.is_post else None
    if skipped is not None:
        log.info("hook skipped", extra={"hook": str(kind), "pod": str(pod), "why": skipped})
        return HookResult(kind, True, skipped, skipped=True)
    scrub = Scrubber.of(hook)
    try:
        rendered = _render(hook, data)
        scrub = Scrubber.of(hook, *rendered.texts())
        async with asyncio.timeout(timeout):
            message = await _act(hook, rendered, pod, api, scrub)
    except TemplateError as exc:
        return _failed(kind, hook, pod, f"cannot render {_template_field(hook)}: {exc}")
    except TimeoutError:
        return _failed(kind, hook, pod, f"did not finish within {timeout:g}s")
    except HookFailed as exc:
        return _failed(kind, hook, pod, scrub(exc.message))
    result = HookResult(kind, True, scrub(message))
    log.info("hook succeeded", extra={"hook": str(kind), "pod": str(pod), "result": result.message})
    return result


def _failed(kind: HookKind, hook: Hook, pod: PodRef, message: str) -> HookResult:
    text = f"{hook.handler_name}: {message}"
    log.warning("hook failed", extra={"hook": str(kind), "pod": str(pod), "error": text})
    return HookResult(kind, False, text)


def _template_field(hook: Hook) -> str:
    return (
        f"{hook.path}.exec.command" if isinstance(hook.action, ExecAction) else f"{hook.path}.httpPost.body"
    )


def _render(hook: Hook, data: HookData) -> _Rendered:
    """Stash renders the ``exec`` command's items and the ``httpPost`` body, nothing else."""
    root = data.template_root()
    action = hook.action
    if isinstance(action, ExecAction):
        return _Rendered(command=tuple(render(part, root) for part in action.command))
    if isinstance(action, HTTPAction) and action.method == "POST":
        return _Rendered(body=render(action.body, root))
    return _Rendered()


async def _act(hook: Hook, rendered: _Rendered, pod: PodRef, api: RestClient | None, scrub: Scrubber) -> str:
    action = hook.action
    if not _needs_pod(hook):
        executor: dict[str, Any] = {}
    elif api is None:
        raise pods.PodProblem(
            f"{hook.handler_name} needs the executor pod {pod}, and no API client was given"
        )
    else:
        executor = await _read_pod(api, pod)
    if isinstance(action, ExecAction):
        assert api is not None
        return await _exec(api, pod, executor, hook.container_name, rendered.command, scrub)
    assert isinstance(action, HTTPAction | TCPSocketAction)
    host = action.host or pods.pod_ip(executor, str(pod))
    port = pods.port_number(executor, action.port, hook.container_name, str(pod))
    if isinstance(action, TCPSocketAction):
        return await tcp_connect(host, port)
    return await http_request(action, host, port, rendered.body, scrub)


def _needs_pod(hook: Hook) -> bool:
    action = hook.action
    return isinstance(action, ExecAction) or not action.host or isinstance(action.port, str)


async def _read_pod(api: RestClient, pod: PodRef) -> dict[str, Any]:
    try:
        return await api.send("GET", paths.core("pods", pod.namespace, pod.name))
    except NotFound:
        raise pods.PodProblem(f"the executor pod {pod} does not exist") from None
    except KubeError as exc:
        raise pods.PodProblem(f"cannot read the executor pod {pod}: {exc.message}") from None


async def _exec(
    api: RestClient,
    pod: PodRef,
    executor: dict[str, Any],
    container_name: str,
    command: tuple[str, ...],
    scrub: Scrubber,
) -> str:
    container = pods.exec_container(executor, container_name, str(pod))
    where = f"container {container} of pod {pod}"
    why = pods.not_running(executor, container)
    if why is not None:
        raise pods.PodProblem(f"{where} is not running ({why})")
    done = await exec_in_container(api, pod.namespace, pod.name, container, command)
    if done.exit_code != 0:
        output = scrub.quote(done.stderr or done.stdout)
        raise HookFailed(
            f"the command in {where} exited with code {done.exit_code}" + (f": {output}" if output else "")
        )
    return f"the command in {where} exited with code 0"
