"""The status a kubelet reports for a pod, from what the process kubelet knows of its containers.

Containers the caller runs report their real state. Containers it does not run (there is no
container runtime: an image such as ``nginx`` cannot run) are *stand-ins*: reported running and ready
since the pod started, and init containers that were never run as completed, so controllers see a
working pod. Once :meth:`ProcessKubelet.run_pod_init_containers` ran a pod's init containers, their
real results count: a failure leaves the app containers waiting (``PodInitializing``) and the pod
``Pending``, or ``Failed`` when ``restartPolicy`` is ``Never``.

When every app container ran and exited, a pod with ``restartPolicy`` ``Never`` or ``OnFailure`` ends
``Succeeded`` (all exit codes 0) or ``Failed``; there are no in-place restarts. With ``Always`` it stays
``Running`` and not ready, where a real kubelet would restart the containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class ContainerRun:
    """One run of a container: its process and, once it ended, its exit code."""

    pid: int
    started_at: str
    exit_code: int | None = None
    finished_at: str | None = None
    restarts: int = 0


@dataclass
class PodView:
    """What the status is made of."""

    pod_ip: str
    host_ip: str
    started_at: str
    init_attempted: bool = False
    init_runs: dict[str, ContainerRun] = field(default_factory=dict)
    runs: dict[str, ContainerRun] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Container name to (reason, message), e.g. CreateContainerConfigError."""
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Condition type to (status, lastTransitionTime), kept between reports."""


def _state(run: ContainerRun) -> Obj:
    if run.exit_code is None:
        return {"running": {"startedAt": run.started_at}}
    return {
        "terminated": {
            "exitCode": run.exit_code,
            "reason": "Completed" if run.exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": run.finished_at or run.started_at,
            "containerID": f"process://{run.pid}",
        }
    }


def _status_entry(container: Obj, state: Obj, *, ready: bool, run: ContainerRun | None) -> Obj:
    entry: Obj = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "restartCount": run.restarts if run else 0,
        "started": "running" in state,
        "state": state,
    }
    if run is not None:
        entry["containerID"] = f"process://{run.pid}"
    return entry


def _init_statuses(pod: Obj, view: PodView) -> tuple[list[Obj], bool, bool]:
    """Init container statuses, whether the pod is initialized, and whether an init container failed."""
    statuses: list[Obj] = []
    initialized, failed = True, False
    for container in pod["spec"].get("initContainers", []):
        name = container["name"]
        run = view.init_runs.get(name)
        if name in view.waiting:
            reason, message = view.waiting[name]
            state: Obj = {"waiting": {"reason": reason, "message": message}}
            initialized = False
        elif run is not None:
            state = _state(run)
            if run.exit_code != 0:
                initialized = False
                failed = failed or run.exit_code is not None
        elif view.init_attempted:
            state = {"waiting": {"reason": "PodInitializing"}}
            initialized = False
        else:
            state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": view.started_at}}
            state["terminated"]["finishedAt"] = view.started_at
        statuses.append(_status_entry(container, state, ready=bool(state.get("terminated")), run=run))
    return statuses, initialized, failed


def pod_status(pod: Obj, view: PodView, now: str) -> Obj:
    """The ``status`` to write through the pods/status subresource."""
    init_statuses, initialized, init_failed = _init_statuses(pod, view)
    statuses: list[Obj] = []
    running = exited = waiting = 0
    codes: list[int] = []
    for container in pod["spec"]["containers"]:
        name = container["name"]
        run = view.runs.get(name)
        if name in view.waiting:
            reason, message = view.waiting[name]
            state: Obj = {"waiting": {"reason": reason, "message": message}}
        elif not initialized:
            state = {"waiting": {"reason": "PodInitializing"}}
        elif run is None:
            state = {"running": {"startedAt": view.started_at}}
        else:
            state = _state(run)
        running += "running" in state
        waiting += "waiting" in state
        if run is not None and run.exit_code is not None and name not in view.waiting:
            exited += 1
            codes.append(run.exit_code)
        statuses.append(_status_entry(container, state, ready="running" in state, run=run))
    restart_policy = pod["spec"].get("restartPolicy", "Always")
    all_exited = exited == len(statuses)
    if not initialized:
        phase = "Failed" if init_failed and restart_policy == "Never" else "Pending"
    elif all_exited and restart_policy != "Always":
        phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
    elif (running and not waiting) or all_exited:
        phase = "Running"
    else:
        phase = "Pending"
    ready = phase == "Running" and running == len(statuses)
    conditions = _conditions(view, now, initialized=initialized, ready=ready)
    return {
        "phase": phase,
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "podIP": view.pod_ip,
        "podIPs": [{"ip": view.pod_ip}],
        "startTime": view.started_at,
        "initContainerStatuses": init_statuses,
        "containerStatuses": statuses,
    }


def _conditions(view: PodView, now: str, *, initialized: bool, ready: bool) -> list[Obj]:
    wanted: Mapping[str, tuple[bool, str]] = {
        "PodReadyToStartContainers": (True, ""),
        "PodScheduled": (True, ""),
        "Initialized": (initialized, "ContainersNotInitialized"),
        "ContainersReady": (ready, "ContainersNotReady"),
        "Ready": (ready, "ContainersNotReady"),
    }
    conditions = []
    for kind, (ok, reason) in wanted.items():
        status = "True" if ok else "False"
        previous = view.transitions.get(kind)
        since = previous[1] if previous and previous[0] == status else now
        view.transitions[kind] = (status, since)
        condition: Obj = {"type": kind, "status": status, "lastTransitionTime": since, "lastProbeTime": None}
        if not ok:
            condition["reason"] = reason
        conditions.append(condition)
    return conditions


def fingerprint(view: PodView) -> tuple[object, ...]:
    """Changes whenever a report would differ (a container started, exited or failed to start)."""
    return (
        view.init_attempted,
        tuple(sorted((n, r.pid, r.exit_code) for n, r in view.init_runs.items())),
        tuple(sorted((n, r.pid, r.exit_code) for n, r in view.runs.items())),
        tuple(sorted(view.waiting.items())),
    )


class InitContainerError(RuntimeError):
    """An init container exited non-zero; the app containers were not started."""

    def __init__(self, pod: str, exit_codes: dict[str, int]) -> None:
        """Name the failed init container and its exit code."""
        self.exit_codes = exit_codes
        self.container = next(name for name, code in exit_codes.items() if code != 0)
        super().__init__(
            f"pod {pod}: init container {self.container!r} exited with {exit_codes[self.container]}; "
            "the app containers were not started"
        )


@dataclass(frozen=True)
class PodResult:
    """How a pod run to completion ended, as reported on its status."""

    phase: str
    exit_codes: dict[str, int]
    init_exit_codes: dict[str, int]
