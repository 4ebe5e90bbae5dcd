"""The report step's wait for the user's command: it runs in container ``drill-command`` of the same pod
(from the user's image, the scratch volume mounted; the agent image has no shell), and its end is read
from the pod's status.

The command passed when its container terminated with exit code 0. It failed when it exited otherwise
(the message gives the code, the kubelet's reason and the container's termination message, which the
command may write to ``/dev/termination-log``), and it never started when the kubelet gives up on it
(an image that cannot be pulled, a bad container configuration). It is given
:data:`COMMAND_DEADLINE_SECONDS` at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stashlet.agent.drill import verdict as v
from stashlet.api import agent_contract as contract
from stashlet.kube import paths
from stashlet.kube.errors import KubeError
from stashlet.kube.rest import KubeApi

log = logging.getLogger(__name__)

COMMAND_DEADLINE_SECONDS = 3000.0
"""How long the report step waits for the command (the Job's activeDeadlineSeconds is longer)."""
POLL_SECONDS = 2.0
NEVER_STARTS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Waiting reasons of a container the kubelet will not start as things are."""
MAX_TERMINATION_MESSAGE = 300


@dataclass(frozen=True)
class CommandOutcome:
    """How the command ended: ``ok``, or a verdict reason and a message naming the container."""

    ok: bool
    reason: str = ""
    message: str = ""


def command_image(pod: Mapping[str, Any]) -> str:
    """The image of ``pod``'s command container, as its spec names it."""
    containers = (pod.get("spec") or {}).get("containers") or []
    mine: Mapping[str, Any] = next(
        (c for c in containers if c.get("name") == contract.DRILL_COMMAND_CONTAINER), {}
    )
    return str(mine.get("image") or "?")


def outcome_of(pod: Mapping[str, Any]) -> CommandOutcome | None:
    """The command's outcome from ``pod``'s status; None while it runs (or has yet to start)."""
    image = command_image(pod)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    mine = next((s for s in statuses if s.get("name") == contract.DRILL_COMMAND_CONTAINER), None)
    if mine is None:
        return None
    what = f"container {contract.DRILL_COMMAND_CONTAINER} (image {image})"
    state = mine.get("state") or {}
    ended = state.get("terminated")
    if ended is not None:
        code = ended.get("exitCode")
        if code == 0:
            return CommandOutcome(ok=True)
        told = str(ended.get("message") or "").strip()[:MAX_TERMINATION_MESSAGE]
        why = f" ({ended.get('reason')})" if ended.get("reason") else ""
        message = f"the command in {what} exited with {code}{why}" + (f": {told}" if told else "")
        return CommandOutcome(False, v.REASON_COMMAND_FAILED, message)
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in NEVER_STARTS:
        detail = str(waiting.get("message") or "").strip()[:MAX_TERMINATION_MESSAGE]
        message = f"{what} cannot start: {waiting['reason']}" + (f": {detail}" if detail else "")
        return CommandOutcome(False, v.REASON_COMMAND_NOT_STARTED, message)
    return None


async def await_command(
    api: KubeApi,
    namespace: str,
    pod: str,
    *,
    deadline: float = COMMAND_DEADLINE_SECONDS,
    every: float = POLL_SECONDS,
) -> CommandOutcome:
    """Poll pod ``namespace/pod`` until its command container has an outcome, or ``deadline`` seconds
    passed; a pod that cannot be read is asked again until then."""
    until = time.monotonic() + deadline
    last_error = ""
    while time.monotonic() < until:
        try:
            found = await api.send("GET", paths.core("pods", namespace, pod))
        except KubeError as exc:
            last_error = exc.message
            log.warning(
                "cannot read the drill's pod", extra={"pod": f"{namespace}/{pod}", "error": exc.message}
            )
        else:
            outcome = outcome_of(found)
            if outcome is not None:
                return outcome
        await asyncio.sleep(every)
    told = f" (last error reading pod {namespace}/{pod}: {last_error})" if last_error else ""
    return CommandOutcome(
        False,
        v.REASON_COMMAND_TIMED_OUT,
        f"the command in container {contract.DRILL_COMMAND_CONTAINER} did not end within "
        f"{deadline:g} seconds{told}",
    )
