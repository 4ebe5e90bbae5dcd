"""Restore drills end to end with every part real: stashlet installed with its Helm chart, the node's
kubelet and containerd running the agent image and a busybox command, a restic REST server pod, the
chart's Pushgateway.

A snapshot is taken with plain restic as a sidecar takes it (``backup --host=host-0 -- <path>``); the
configuration's annotations ask for a drill with a command. A Job made from the drill's CronJob restores
the snapshot into its scratch volume, checks it against the listing, then runs the command in busybox on
the restored data: the Repository says RestoreDrillSucceeded with the snapshot, the configuration gets a
Normal event, the gauges are on the Pushgateway. Then the command is made to fail: the next drill fails
with CommandFailed, naming the container and its exit code.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import rest_storage, restic_output

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "drill-e2e-password"
BC = "drilled"
CRONJOB = f"stash-drill-{BC}"


def configuration(namespace: str, data: Path, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {
            "name": BC,
            "namespace": namespace,
            "annotations": {
                "stashlet.dev/restore-drill-schedule": "0 0 1 1 *",
                "stashlet.dev/restore-drill-image": "busybox",
                "stashlet.dev/restore-drill-command": command,
            },
        },
        "spec": {
            "repository": {"name": "rest-repo"},
            "schedule": "0 0 1 1 *",
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                "paths": [str(data)],
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }


def check_command(data: Path) -> str:
    restored = f"$DRILL_DATA/host-0{data}"
    return json.dumps(["sh", "-c", f'test "$(cat {restored}/hello.txt)" = "hello drill" && ls -l {restored}'])


async def run_drill(kubectl: Any, helpers: Any, namespace: str, job: str) -> dict[str, Any]:
    """A Job from the drill's CronJob (as its schedule would make it), run to its end: its pod."""
    kubectl("create", "job", job, f"--from=cronjob/{CRONJOB}", "-n", namespace)

    def finished() -> dict[str, Any] | None:
        pods = helpers.get(kubectl, "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}")
        done = [p for p in pods["items"] if p["status"].get("phase") in ("Succeeded", "Failed")]
        return done[0] if done else None

    found: dict[str, Any] = await helpers.until(finished, timeout=240, what=f"the pod of Job {job} finished")
    return found


def logs(kubectl: Any, namespace: str, pod: dict[str, Any], container: str) -> str:
    name = pod["metadata"]["name"]
    return str(kubectl("logs", "-n", namespace, name, "-c", container, check=False).stdout)


def drill_condition(kubectl: Any, helpers: Any, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    status = helpers.get(kubectl, "repository", "rest-repo", "-n", namespace).get("status") or {}
    condition = next(c for c in status.get("conditions") or [] if c["type"] == "RestoreDrillSucceeded")
    return condition, status


def gauge(pushgateway: str, name: str, namespace: str) -> list[float]:
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = []
    for line in text.splitlines():
        if line.startswith(name + "{") and f'namespace="{namespace}"' in line:
            values.append(float(line.rsplit(" ", 1)[1]))
    return values


async def test_a_drill_restores_checks_and_runs_the_command_on_the_node(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    """The drill's Job on the real node: init-container ``drill`` restores and verifies as root with the
    account's projected token, busybox's command reads the restored file, ``drill-report`` records the
    pass (condition, lastVerifiedSnapshot, Normal event, gauges); the user's container has no token; a
    failing command fails the next drill with CommandFailed."""
    install = operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=rest_storage(namespace, f"{rest_server}/{namespace}", PASSWORD))
    host_url = f"{rest_backend.host_url}/{namespace}"
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "hello.txt").write_text("hello drill")
    (data / "sub" / "private").write_text("secret-ish")
    (data / "sub" / "private").chmod(0o600)
    restic_output(host_url, PASSWORD, "init")
    backup = restic_output(host_url, PASSWORD, "--json", "backup", "--host=host-0", "--", str(data))
    snapshot = [json.loads(line) for line in backup.splitlines() if '"summary"' in line][-1]["snapshot_id"]
    kubectl("apply", "-f", "-", input_obj=configuration(namespace, data, check_command(data)))

    def scheduled() -> dict[str, Any] | None:
        out = kubectl("get", "cronjob", CRONJOB, "-n", namespace, "-o", "json", "--ignore-not-found").stdout
        return json.loads(out) if out.strip() else None

    cronjob = await helpers.until(scheduled, timeout=60, what=f"CronJob {CRONJOB}")
    pod_spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    command_container = pod_spec["containers"][0]
    assert command_container["name"] == "drill-command"
    assert [m["mountPath"] for m in command_container["volumeMounts"]] == ["/restore-drill"]

    pod = await run_drill(kubectl, helpers, namespace, "drill-pass")

    report = logs(kubectl, namespace, pod, "drill-report")
    verify = logs(kubectl, namespace, pod, "drill")
    assert pod["status"]["phase"] == "Succeeded", verify[-3000:] + report[-3000:]
    assert "hello.txt" in logs(kubectl, namespace, pod, "drill-command")
    condition, status = drill_condition(kubectl, helpers, namespace)
    assert (condition["status"], condition["reason"]) == ("True", "RestoreDrillPassed"), condition
    assert snapshot[:8] in condition["message"]
    assert status["lastVerifiedSnapshot"] == snapshot[:8]
    events = helpers.get(kubectl, "events", "-n", namespace, f"--field-selector=involvedObject.name={BC}")
    assert any(e["reason"] == "RestoreDrillSucceeded" and e["type"] == "Normal" for e in events["items"]), (
        events
    )
    assert gauge(install.pushgateway, "stash_restore_drill_success", namespace) == [1.0]
    assert gauge(install.pushgateway, "stash_restore_drill_files_checked", namespace) == [2.0]
    assert PASSWORD not in verify + report

    failing = json.dumps(["sh", "-c", "echo the check failed > /dev/termination-log; exit 3"])
    patch = json.dumps({"metadata": {"annotations": {"stashlet.dev/restore-drill-command": failing}}})
    kubectl("patch", "backupconfiguration", BC, "-n", namespace, "--type=merge", "-p", patch)

    def updated() -> bool:
        found = scheduled() or {}
        spec = (
            found.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        )
        return bool(spec) and spec["containers"][0].get("command") == json.loads(failing)

    await helpers.until(updated, timeout=60, what="the CronJob to carry the failing command")

    pod = await run_drill(kubectl, helpers, namespace, "drill-fail")

    assert pod["status"]["phase"] == "Failed"
    condition, status = drill_condition(kubectl, helpers, namespace)
    assert (condition["status"], condition["reason"]) == ("False", "CommandFailed"), condition
    assert "container drill-command (image busybox) exited with 3" in condition["message"]
    assert "the check failed" in condition["message"]
    assert status["lastVerifiedSnapshot"] == snapshot[:8]  # the last drill that passed
    assert gauge(install.pushgateway, "stash_restore_drill_success", namespace) == [0.0]
