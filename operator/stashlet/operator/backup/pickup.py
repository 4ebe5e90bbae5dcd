"""Why nobody took a BackupSession up, from what the operator can see: pure.

A session is *taken up* once an agent wrote status for it: a host entry (the agent's first write is its
host ``Running``) or a phase past ``Pending``. One that waits behind an earlier session of its invoker that
an agent runs now (:func:`running_before`: the agent takes sessions one at a time) is not silent: its
deadline starts again. One nobody took up by its deadline (creation + the
configuration's annotation ``stash.appscode.com/pickup-deadline``, a Go duration, else the operator's
``--pickup-deadline-seconds``) ends ``Failed`` with a :class:`Verdict` naming why:

- sidecar model, from the workload and the pods its selector matches (:func:`sidecar_verdict`):
  ``TargetNotFound``, ``WorkloadScaledToZero``, ``NoRunningPod`` (no pod, or none Running: the pods'
  phase and waiting reason), ``AgentNotInjected`` (no pod carries the ``stash`` container),
  ``AgentNotReady`` (the container waits, e.g. ``CrashLoopBackOff``, or is not ready; with its restart
  count), else ``NoAgentResponded``;
- a Task's Job (:func:`job_verdict`): ``JobNotCreated``, the Job's own failure reason
  (``BackoffLimitExceeded``, ``DeadlineExceeded``), the pod's waiting reason (``ImagePullBackOff``,
  ``ErrImagePull``, ``CreateContainerConfigError``, ...), ``Unschedulable``, ``NoRunningPod``, else
  ``NoAgentResponded``.

A Job that ended while its session had not fails the session with the Job's reason
(:func:`stashlet.operator.core.job_outcome.ended_job_verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from stashlet.api import names
from stashlet.api.backupsession import BackupSessionPhase
from stashlet.api.durations import parse_duration
from stashlet.operator.core.job_outcome import Verdict, ended_job_verdict

ANNOTATION_PICKUP_DEADLINE: Final = f"{names.GROUP}/pickup-deadline"
"""On a BackupConfiguration: how long (a Go duration such as ``2m``) a session may wait for an agent."""

REASON_INVOKER_NOT_FOUND: Final = "InvokerNotFound"
REASON_TARGET_NOT_FOUND: Final = "TargetNotFound"
REASON_SCALED_TO_ZERO: Final = "WorkloadScaledToZero"
REASON_NOT_INJECTED: Final = "AgentNotInjected"
REASON_NO_RUNNING_POD: Final = "NoRunningPod"
REASON_NOT_READY: Final = "AgentNotReady"
REASON_NO_RESPONSE: Final = "NoAgentResponded"
REASON_JOB_NOT_CREATED: Final = "JobNotCreated"
REASON_UNSCHEDULABLE: Final = "Unschedulable"

_ENDED: Final = frozenset(
    {BackupSessionPhase.SUCCEEDED, BackupSessionPhase.FAILED, BackupSessionPhase.SKIPPED}
)
_WAITING_BENIGN: Final = frozenset({"ContainerCreating", "PodInitializing"})
"""Waiting reasons that say nothing is wrong yet."""


def taken_up(session: Mapping[str, Any]) -> bool:
    """True once an agent (or the operator itself) wrote a phase past Pending or any host entry."""
    status = session.get("status") or {}
    if status.get("phase") not in (None, "", BackupSessionPhase.PENDING):
        return True
    return any(target.get("stats") for target in status.get("targets") or [])


def running_before(session: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str | None:
    """The name of a session of the same invoker, made earlier, that an agent runs now (taken up, not
    ended): the agent handles one session at a time, so ``session`` waits for it and is not silent."""
    meta, invoker = session.get("metadata") or {}, (session.get("spec") or {}).get("invoker") or {}
    created = str(meta.get("creationTimestamp") or "")
    for other in others:
        other_meta = other.get("metadata") or {}
        if (
            other_meta.get("name") != meta.get("name")
            and ((other.get("spec") or {}).get("invoker") or {}).get("name") == invoker.get("name")
            and str(other_meta.get("creationTimestamp") or "") <= created
            and taken_up(other)
            and (other.get("status") or {}).get("phase") not in _ENDED
        ):
            return str(other_meta.get("name"))
    return None


def deadline_seconds(config_annotations: Mapping[str, str] | None, default: float) -> float:
    """The pickup deadline of a configuration's sessions: its annotation, else ``default``.

    Raises ValueError naming the annotation when its value is no positive duration.
    """
    text = (config_annotations or {}).get(ANNOTATION_PICKUP_DEADLINE)
    if text is None:
        return default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"annotation {ANNOTATION_PICKUP_DEADLINE}: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"annotation {ANNOTATION_PICKUP_DEADLINE}: {text!r} is not a positive duration")
    return seconds


def selector_of(workload: Mapping[str, Any]) -> str:
    """The label selector (``a=b,c in (d)``) of a workload's ``spec.selector``."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _desired(kind: str, workload: Mapping[str, Any]) -> int | None:
    """Pods the workload asks for: ``spec.replicas`` (default 1), a DaemonSet's scheduled count."""
    if kind == "DaemonSet":
        desired = (workload.get("status") or {}).get("desiredNumberScheduled")
        return None if desired is None else int(desired)
    replicas = (workload.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name"))


def _container_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    status = pod.get("status") or {}
    for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if entry.get("name") == container:
            return dict(entry)
    return None


def _has_container(pod: Mapping[str, Any], container: str) -> bool:
    spec = pod.get("spec") or {}
    return any(c.get("name") == container for c in (spec.get("containers") or []))


def _why_pending(pod: Mapping[str, Any]) -> tuple[str, str]:
    """A pod that does not run: (reason, what to say), from its conditions and containers' waiting."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or REASON_UNSCHEDULABLE)
            return reason, f"{reason}: {condition.get('message') or 'not scheduled'}"
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (entry.get("state") or {}).get("waiting") or {}
        waiting_reason = waiting.get("reason")
        if waiting_reason and waiting_reason not in _WAITING_BENIGN:
            message = waiting.get("message") or ""
            return str(waiting_reason), f"container {entry.get('name')} waiting: {waiting_reason}" + (
                f" ({message})" if message else ""
            )
    phase = status.get("phase") or "Pending"
    return REASON_NO_RUNNING_POD, f"phase {phase}"


def sidecar_verdict(
    kind: str,
    namespace: str,
    name: str,
    workload: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
) -> Verdict:
    """Why no ``stash`` sidecar of workload ``kind namespace/name`` took a session up (module docstring).

    ``workload`` is None when it does not exist; ``pods`` are those its selector matches.
    """
    what = f"{kind} {namespace}/{name}"
    if workload is None:
        return Verdict(REASON_TARGET_NOT_FOUND, f"{what} (spec.target.ref) does not exist")
    desired = _desired(kind, workload)
    if desired == 0:
        return Verdict(
            REASON_SCALED_TO_ZERO, f"{what} is scaled to zero: no pod runs the backup agent (stash sidecar)"
        )
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")] or list(pods)
    if not live:
        return Verdict(REASON_NO_RUNNING_POD, f"no pod of {what} exists (it asks for {desired})")
    injected = [p for p in live if _has_container(p, names.SIDECAR_CONTAINER)]
    if not injected:
        listed = ", ".join(sorted(_pod_name(p) for p in live))
        return Verdict(
            REASON_NOT_INJECTED,
            f"no pod of {what} carries the {names.SIDECAR_CONTAINER} container (pods: {listed}); "
            "the sidecar is injected when the BackupConfiguration is Ready and the pods are made anew",
        )
    running = [p for p in injected if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        pod = sorted(injected, key=_pod_name)[0]
        _, detail = _why_pending(pod)
        return Verdict(REASON_NO_RUNNING_POD, f"no pod of {what} is Running: pod {_pod_name(pod)}: {detail}")
    problems: list[str] = []
    for pod in sorted(running, key=_pod_name):
        entry = _container_status(pod, names.SIDECAR_CONTAINER)
        if entry is None:
            problems.append(f"pod {_pod_name(pod)}: no status for container {names.SIDECAR_CONTAINER}")
            continue
        if entry.get("ready"):
            break
        problems.append(f"pod {_pod_name(pod)}: {_container_trouble(entry)}")
    else:
        return Verdict(
            REASON_NOT_READY,
            f"the {names.SIDECAR_CONTAINER} sidecar of {what} is not ready: {'; '.join(problems)}",
        )
    return Verdict(
        REASON_NO_RESPONSE,
        f"the {names.SIDECAR_CONTAINER} sidecar of {what} runs but wrote nothing for the session "
        "(see its log)",
    )


def _container_trouble(entry: Mapping[str, Any]) -> str:
    """What is wrong with a container that is not ready: waiting reason, restarts, last exit."""
    state = entry.get("state") or {}
    restarts = int(entry.get("restartCount") or 0)
    parts: list[str] = []
    if waiting := state.get("waiting"):
        parts.append(f"waiting: {waiting.get('reason') or 'unknown'}")
    elif "running" in state:
        parts.append("running, not ready")
    last = (entry.get("lastState") or {}).get("terminated") or {}
    if last:
        parts.append(f"last exit {last.get('exitCode')} ({last.get('reason') or 'terminated'})")
    parts.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    return ", ".join(parts)


def job_verdict(
    namespace: str, job_name: str, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> Verdict:
    """Why the agent in Job ``namespace/job_name`` did not take its session up (module docstring)."""
    what = f"Job {namespace}/{job_name}"
    if job is None:
        return Verdict(REASON_JOB_NOT_CREATED, f"{what} was not created")
    ended = ended_job_verdict(namespace, job)
    if ended is not None:
        return ended
    if not pods:
        return Verdict(REASON_NO_RUNNING_POD, f"{what} has no pod")
    pod = sorted(pods, key=_pod_name)[-1]
    if (pod.get("status") or {}).get("phase") == "Pending":
        reason, detail = _why_pending(pod)
        return Verdict(reason, f"the pod {_pod_name(pod)} of {what} does not run: {detail}")
    return Verdict(
        REASON_NO_RESPONSE, f"the agent in pod {_pod_name(pod)} of {what} wrote nothing (see its log)"
    )
