"""What a hook needs to know of its executor pod, read from the pod object: pure.

The executor pod is the pod the agent runs in (the workload's pod holding the ``stash`` sidecar or the
``stash-init`` init-container). As Stash's prober does: ``httpGet``/``httpPost``/``tcpSocket`` without
``host`` go to the pod's IP; a port given by name is looked up among the ports of the hook's
``containerName``; ``exec`` runs in ``containerName``, by default the pod's first container.
"""

from __future__ import annotations

from typing import Any

from stashlet.agent.hooks.outcome import HookFailed


class PodProblem(HookFailed):
    """The executor pod cannot serve the hook as it is defined (no IP, no such container or port)."""


def pod_ip(pod: dict[str, Any], ref: str) -> str:
    """The pod's IP; PodProblem when it has none yet."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise PodProblem(f"pod {ref} has no IP yet; give the hook's host")
    return str(ip)


def _containers(pod: dict[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    found: list[dict[str, Any]] = spec.get("containers") or []
    return found + (spec.get("initContainers") or [] if init else [])


def exec_container(pod: dict[str, Any], name: str, ref: str) -> str:
    """The container an ``exec`` hook runs in: ``name`` (a container or an init-container of the pod), by
    default the first container."""
    if not name:
        containers = _containers(pod)
        if not containers:
            raise PodProblem(f"pod {ref} has no containers")
        return str(containers[0]["name"])
    if not any(c.get("name") == name for c in _containers(pod, init=True)):
        known = ", ".join(str(c.get("name")) for c in _containers(pod, init=True))
        raise PodProblem(f"pod {ref} has no container {name!r} (containerName; it has: {known})")
    return name


def not_running(pod: dict[str, Any], container: str) -> str | None:
    """Why ``container`` of the pod is not running (None when it runs)."""
    status = pod.get("status") or {}
    for entry in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
        if entry.get("name") != container:
            continue
        state = entry.get("state") or {}
        if "running" in state:
            return None
        for what in ("waiting", "terminated"):
            if what in state:
                return f"{what}: {state[what].get('reason') or 'no reason given'}"
    return "no status reported yet"


def port_number(pod: dict[str, Any], port: int | str, container: str, ref: str) -> int:
    """``port`` as a number: itself, or the port of that name of ``container`` (a number in a string as a
    last resort, as Stash's prober does)."""
    if isinstance(port, int):
        return port
    if not container:
        raise PodProblem(
            f"port {port!r} is a name: set the hook's containerName to the container that has it"
        )
    for c in _containers(pod):
        if c.get("name") != container:
            continue
        for entry in c.get("ports") or []:
            if entry.get("name") == port:
                return int(entry["containerPort"])
    if port.isdigit() and 0 < int(port) < 65536:
        return int(port)
    raise PodProblem(f"container {container!r} of pod {ref} has no port named {port!r}")
