"""No silent session on the real node (issue 14, part 2): stashlet installed with its chart, a workload whose
agent cannot take a BackupSession up, and the operator ending the session by the configuration's pickup
deadline (annotation ``stash.appscode.com/pickup-deadline``) with the reason, Warning events on the
configuration and the session, and ``stash_backup_session_success 0`` on the chart's Pushgateway.

Two ways nobody runs a session: the Deployment is scaled to zero (no pod, no agent), and the ``stash``
sidecar cannot run on the node (its memory limit is below what Python needs: the kernel OOM-kills it, the
kubelet restarts it, it is never ready) while the application's container runs.
"""

from __future__ import annotations

import datetime as dt
import urllib.request
from typing import Any

import pytest
from e2e.manifests import backup_configuration, backup_session, busybox_deployment
from e2e.rest_repository import rest_storage

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

DEADLINE = "20s"


def objects(
    namespace: str, rest_url: str, *, replicas: int, sidecar: dict[str, Any] | None = None
) -> list[Any]:
    """The Deployment ``app``, the Secret and Repository (the REST server), the configuration ``app-backup``
    with a pickup deadline of :data:`DEADLINE` (and ``sidecar`` as its runtimeSettings.container)."""
    runtime: dict[str, Any] = {"runtimeSettings": {"container": sidecar}} if sidecar is not None else {}
    return [
        busybox_deployment(
            namespace,
            ["sleep", "3000"],
            container="busybox",
            mount_path="/source/data",
            replicas=replicas,
        ),
        *rest_storage(namespace, f"{rest_url}/{namespace}", "changeit", name="repo", secret="repo-secret"),
        backup_configuration(
            namespace,
            "app-backup",
            repository="repo",
            mount_path="/source/data",
            annotations={"stash.appscode.com/pickup-deadline": DEADLINE},
            **runtime,
        ),
    ]


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def fails_silently_named(
    kubectl: Any, helpers: Any, namespace: str, name: str, reason: str, pushgateway: str
) -> dict[str, Any]:
    """Create session ``name``; it ends Failed with ``reason`` no sooner than the deadline, with a Warning
    event on the configuration and on the session and the failure metric on the Pushgateway. Returns the
    session's BackupExecutorEnsured condition."""
    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, name, "app-backup"))

    def failed() -> dict[str, Any] | None:
        obj = helpers.get(kubectl, "backupsession", name, "-n", namespace)
        return (
            dict(obj)
            if (obj.get("status") or {}).get("phase") in ("Failed", "Succeeded", "Skipped")
            else None
        )

    obj = await helpers.until(failed, timeout=120, what=f"session {name} to end")
    assert obj["status"]["phase"] == "Failed", obj["status"]
    [condition] = [c for c in obj["status"]["conditions"] if c["type"] == "BackupExecutorEnsured"]
    assert (condition["status"], condition["reason"]) == ("False", reason), condition
    waited = stamp(condition["lastTransitionTime"]) - stamp(obj["metadata"]["creationTimestamp"])
    assert waited >= 20, f"ended {waited}s after creation, before the {DEADLINE} deadline"

    def event_on(obj_name: str) -> list[dict[str, Any]]:
        found = helpers.get(
            kubectl, "events", "-n", namespace, f"--field-selector=involvedObject.name={obj_name}"
        )
        return [e for e in found["items"] if e["type"] == "Warning" and e["reason"] == reason]

    [on_config] = await helpers.until(
        lambda: event_on("app-backup"), timeout=30, what="the configuration's event"
    )
    assert f"BackupSession {name} failed: " in on_config["message"]
    await helpers.until(lambda: event_on(name), timeout=30, what="the session's event")

    job = f"backupconfiguration-{namespace}-app-backup"

    def pushed() -> list[str]:
        with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:
            text = response.read().decode()
        return [
            line
            for line in text.splitlines()
            if f'job="{job}"' in line and "_backup_session_success{" in line and not line.startswith("#")
        ]

    lines = await helpers.until(pushed, timeout=30, what="the failure metric on the Pushgateway")
    assert sorted(line.split("{")[0] for line in lines) == [
        "stash_appscode_com_backup_session_success",
        "stash_backup_session_success",
    ]
    assert all(line.endswith(" 0") and 'invoker_name="app-backup"' in line for line in lines), lines
    return dict(condition)


async def test_a_workload_scaled_to_zero_fails_its_session_by_the_deadline(
    kubectl: Any, namespace: str, operator_for: Any, rest_server: str, helpers: Any
) -> None:
    """Zero replicas: the configuration is Ready (the sidecar is in the template), no pod runs; the session
    ends Failed WorkloadScaledToZero naming the Deployment, with events and the metric. Scaled up, the
    next session is taken up by the sidecar and Succeeds: no session an agent runs is ended."""
    install = operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, rest_server, replicas=0))

    def ready() -> bool:
        bc = helpers.get(kubectl, "backupconfiguration", "app-backup", "-n", namespace)
        return (bc.get("status") or {}).get("phase") == "Ready"

    await helpers.until(ready, timeout=120, what="the configuration Ready")
    condition = await fails_silently_named(
        kubectl, helpers, namespace, "app-backup-1", "WorkloadScaledToZero", install.pushgateway
    )
    assert f"Deployment {namespace}/app is scaled to zero" in condition["message"]

    kubectl("scale", "deployment", "app", "-n", namespace, "--replicas=1")
    await helpers.rolled_out(kubectl, namespace, "app")
    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, "app-backup-2", "app-backup"))

    def done() -> dict[str, Any] | None:
        obj = helpers.get(kubectl, "backupsession", "app-backup-2", "-n", namespace)
        return dict(obj) if (obj.get("status") or {}).get("phase") in ("Failed", "Succeeded") else None

    obj = await helpers.until(done, timeout=180, what="the second session to end")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]


async def test_a_sidecar_that_cannot_run_fails_its_session_as_not_ready(
    kubectl: Any, namespace: str, operator_for: Any, rest_server: str, helpers: Any
) -> None:
    """The sidecar's memory limit (8Mi) is below what the agent needs: on the node it is OOM-killed and
    restarted over and over while the application runs. The session ends Failed AgentNotReady, naming the
    pod, the container's state and its restart count, with events and the metric."""
    install = operator_for(namespace)
    sidecar = {"resources": {"requests": {"memory": "8Mi"}, "limits": {"memory": "8Mi"}}}
    kubectl("apply", "-f", "-", input_obj=objects(namespace, rest_server, replicas=1, sidecar=sidecar))

    def crashing() -> str | None:
        pods = helpers.get(kubectl, "pods", "-n", namespace, "-l", "app=app")["items"]
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                state = status.get("state") or {}
                if status["name"] == "stash" and (
                    status.get("restartCount", 0) >= 1 or "terminated" in state
                ):
                    return str(pod["metadata"]["name"])
        return None

    pod = await helpers.until(crashing, timeout=180, what="the stash sidecar to have been killed on the node")
    condition = await fails_silently_named(
        kubectl, helpers, namespace, "app-backup-1", "AgentNotReady", install.pushgateway
    )
    message = condition["message"]
    assert f"the stash sidecar of Deployment {namespace}/app is not ready: pod " in message, message
    assert f"pod {pod}: " in message and "restart" in message, message
