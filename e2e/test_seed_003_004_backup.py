"""Seeds 003 and 004, end to end with every part real.

The seed manifests as written (the Deployment of three busybox replicas writing ``sample_data`` into a
PVC, the BackupConfiguration ``pause-backup`` with ``keep-last-5``), stashlet installed with its Helm
chart, the pods run by the real node from their images (busybox, the agent image for the ``stash``
sidecar, the operator image for the CronJob's trigger), kube-controller-manager firing the CronJob,
restic, the chart's Pushgateway reached by its Service name. Two departures, both because the seed's
cloud cannot run on this machine: the Repository ``gcs-repo`` points at a restic REST server pod
instead of GCS, and the schedule is ``*/1`` so the test does not wait five minutes.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from typing import Any

import pytest
from e2e.seed import PASSWORD, columns, seed_objects

from stashlet.api import agent_contract
from stashlet.localcluster import tools

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


def objects(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    """Seed 003's objects in ``namespace`` as the seed writes them (three replicas writing ``sample_data``,
    every minute), the Repository's backend the REST server."""
    return seed_objects(
        namespace,
        {"rest": {"url": f"{rest_url}/{namespace}"}},
        replicas=3,
        command="echo sample_data > /source/data/data.txt && sleep 3000",
        schedule="*/1 * * * *",
    )


async def test_seed_003_backup_pause_and_resume(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
) -> None:
    """The whole seed. Ready with the sidecar injected once (one rollout) and the trigger's RBAC; the
    CronJob fires (kube-controller-manager) and its trigger creates a labelled, owned BackupSession;
    the sidecar taking the Lease backs the PVC up and the session Succeeds with its duration. Paused: no
    rollout, the trigger records "Backup Skipped" and creates nothing, a hand-made session is Skipped
    with the seed's Warning event. Resumed: the trigger's next run backs up again. Deleted: the
    Deployment is as it was before injection, and no CronJob, Role or session is left.

    After the first scheduled firing the schedule moves to once a year, and the trigger's later runs are
    Jobs made from the CronJob's own template (``kubectl create job --from=cronjob/...``): the same pod
    the schedule would start, at a moment the test chooses.
    """
    install = operator_for(namespace)
    seed = objects(namespace, rest_server)
    config = seed.pop()
    kubectl("apply", "-f", "-", input_obj=seed)
    get = helpers.get
    before = get(kubectl, "deployment", "stash-demo", "-n", namespace)
    kubectl("apply", "-f", "-", input_obj=config)

    def ready() -> dict[str, Any] | None:
        bc = get(kubectl, "backupconfiguration", "pause-backup", "-n", namespace)
        return dict(bc) if bc.get("status", {}).get("phase") == "Ready" else None

    def agent_roles() -> set[str]:
        """The Roles stashlet made for the sidecar and the trigger (the chart's own are not counted)."""
        found = {r["metadata"]["name"] for r in get(kubectl, "roles", "-n", namespace)["items"]}
        return {n for n in found if n.startswith(("stashlet-sidecar-", "stashlet-trigger-"))}

    def paused_is(value: bool) -> bool:
        bc = get(kubectl, "backupconfiguration", "pause-backup", "-n", namespace)
        return bool(bc["spec"].get("paused", False) is value and ready())

    def set_paused(value: bool) -> None:
        patch = json.dumps({"spec": {"paused": value}})
        kubectl("patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge", "-p", patch)

    bc = await helpers.until(ready, timeout=60, what="BackupConfiguration Ready")
    assert {c["type"]: c["status"] for c in bc["status"]["conditions"]} == {
        "RepositoryFound": "True",
        "BackendSecretFound": "True",
        "BackupTargetFound": "True",
        "ValidationPassed": "True",
        "CronJobCreated": "True",
        "StashSidecarInjected": "True",
        "DedicatedServiceAccount": "False",  # the seed's Deployment runs as default: warned, still Ready
    }
    assert bc["metadata"]["finalizers"] == ["stash.appscode.com"]
    out = kubectl("get", "backupconfiguration", "-n", namespace).stdout
    assert columns(out)[0] == ["NAME", "TASK", "SCHEDULE", "PAUSED", "PHASE", "AGE"]
    assert columns(out)[1][:3] == ["pause-backup", "*/1 * * * *", "Ready"]

    # The Deployment: one rollout, the sidecar exactly once, as the agent contract says.
    deployment = get(kubectl, "deployment", "stash-demo", "-n", namespace)
    assert deployment["metadata"]["generation"] == before["metadata"]["generation"] + 1
    sidecars = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]
    assert len(sidecars) == 1
    assert sidecars[0]["command"] == ["stashlet-agent"]
    assert sidecars[0]["args"][:5] == [
        "sidecar",
        "--invoker-kind=BackupConfiguration",
        "--invoker-name=pause-backup",
        "--target-kind=Deployment",
        "--target-name=stash-demo",
    ]
    assert {e["name"] for e in sidecars[0]["env"]} >= {e["name"] for e in agent_contract.downward_env()}
    assert {"name": "source-data", "mountPath": "/source/data", "readOnly": True} in sidecars[0][
        "volumeMounts"
    ]
    # The CronJob, owned by the configuration; the RBAC of the sidecar and of the trigger.
    cron = get(kubectl, "cronjob", "stash-trigger-pause-backup", "-n", namespace)
    assert cron["spec"]["schedule"] == "*/1 * * * *"
    assert cron["metadata"]["ownerReferences"][0]["uid"] == bc["metadata"]["uid"]
    assert agent_roles() == {"stashlet-sidecar-pause-backup", "stashlet-trigger-pause-backup"}

    pods = await helpers.rolled_out(kubectl, namespace, "stash-demo")
    assert len(pods) == 3
    for pod in pods:
        assert (
            helpers.exec_in(kubectl, namespace, pod, "busybox", "cat", "/source/data/data.txt")
            == "sample_data\n"
        )

    selector = "stash.appscode.com/backup-configuration=pause-backup"
    runs = iter(range(1, 10))

    def trigger_pods() -> set[str]:
        return {p["metadata"]["name"] for p in get(kubectl, "pods", "-n", namespace, "-l", selector)["items"]}

    async def trigger_run(*, scheduled: bool, before: set[str] | None = None) -> dict[str, Any]:
        """The next trigger pod to finish (of those not in ``before``, by default the pods there are now):
        the schedule's, or one of a Job made from the CronJob."""
        before = trigger_pods() if before is None else before
        if not scheduled:
            job = f"by-hand-{next(runs)}"
            kubectl("create", "job", job, "--from=cronjob/stash-trigger-pause-backup", "-n", namespace)
            selection = ["-l", f"batch.kubernetes.io/job-name={job}"]
        else:
            selection = ["-l", selector]

        def finished() -> dict[str, Any] | None:
            for pod in get(kubectl, "pods", "-n", namespace, *selection)["items"]:
                done = pod["status"].get("phase") in ("Succeeded", "Failed")
                if done and pod["metadata"]["name"] not in before:
                    return dict(pod)
            return None

        what = "the CronJob firing" if scheduled else "the trigger Job"

        def seen() -> str:
            """The events (the last lines: the log keeps the end), then the CronJobs, Jobs and pods."""
            events = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
            found = kubectl("get", "cronjobs,jobs,pods", "-n", namespace, "-o", "wide", check=False)
            return f"{events.stdout[-2500:]}{events.stderr}\n{found.stdout}{found.stderr}"

        # Twice in fresh-clone runs (two test workers on two cores) the fired Job's pod had not finished
        # after 150 s, cause not yet known: it gets 300, and a timeout shows the Jobs and pods.
        pod: dict[str, Any] = await helpers.until(
            finished, timeout=300, what=f"{what}'s pod finished", log=seen
        )
        logs = kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "trigger").stdout
        assert pod["status"]["phase"] == "Succeeded", logs
        assert pod["spec"]["serviceAccountName"] == "stashlet-trigger"
        return pod

    # kube-controller-manager fires the CronJob; the trigger names the session after the scheduled time.
    # That firing proves the schedule. The schedule moves to once a year as soon as the CronJob has made
    # its Job (the next firing is most of a minute away, and a slow trigger pod cannot let a second one
    # in), so the trigger's later runs are only the ones this test starts.
    before_firing = trigger_pods()

    def fired_job() -> bool:
        cron = get(kubectl, "cronjob", "stash-trigger-pause-backup", "-n", namespace)
        return bool(cron.get("status", {}).get("lastScheduleTime"))

    await helpers.until(fired_job, timeout=90, what="the CronJob's first firing")
    patch = json.dumps({"spec": {"schedule": "0 0 1 1 *"}})
    kubectl("patch", "backupconfiguration", "pause-backup", "-n", namespace, "--type=merge", "-p", patch)

    def rescheduled() -> bool:
        cron = get(kubectl, "cronjob", "stash-trigger-pause-backup", "-n", namespace)
        return bool(cron["spec"]["schedule"] == "0 0 1 1 *")

    await helpers.until(rescheduled, timeout=30, what="the CronJob rescheduled")
    fired = await trigger_run(scheduled=True, before=before_firing)
    unix = int(fired["metadata"]["labels"]["batch.kubernetes.io/job-name"].rsplit("-", 1)[1]) * 60
    name = f"pause-backup-{unix}"
    made = get(kubectl, "backupsession", name, "-n", namespace)
    assert made["metadata"]["labels"]["stash.appscode.com/backup-configuration"] == "pause-backup"
    assert made["metadata"]["ownerReferences"][0]["uid"] == bc["metadata"]["uid"]
    assert made["spec"]["invoker"] == {
        "apiGroup": "stash.appscode.com",
        "kind": "BackupConfiguration",
        "name": "pause-backup",
    }

    def finished_session() -> dict[str, Any] | None:
        item = get(kubectl, "backupsession", name, "-n", namespace)
        return dict(item) if item.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    session = await helpers.until(finished_session, timeout=120, what=f"BackupSession {name} finished")
    assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"])
    host = session["status"]["targets"][0]["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Succeeded")
    rows = columns(kubectl("get", "backupsession", "-n", namespace).stdout)
    assert rows[0] == ["NAME", "INVOKER-TYPE", "INVOKER-NAME", "PHASE", "DURATION", "AGE"]
    assert rows[1][:4] == [name, "BackupConfiguration", "pause-backup", "Succeeded"]
    assert re.fullmatch(r"\d+(ms|s)|\d+m\d+s", rows[1][4])

    # The Repository's integrity, size and count are written a moment after the session has ended (the
    # first check and `restic stats` run once it has reported).
    def checked_repository() -> list[list[str]] | None:
        rows = columns(kubectl("get", "repository", "-n", namespace).stdout)
        return rows if rows[1][:2] == ["gcs-repo", "true"] else None

    repo_rows = await helpers.until(checked_repository, timeout=60, what="Repository gcs-repo checked")
    assert repo_rows[1][3] == "1"

    # The data in the backend is the PVC's, as plain restic reads it.
    env = {
        "RESTIC_REPOSITORY": f"rest:{rest_backend.host_url}/{namespace}",
        "RESTIC_PASSWORD": PASSWORD,
        "PATH": "/usr/bin:/bin",
    }
    dumped = subprocess.run(
        [
            str(tools.ensure("restic")),
            "--no-cache",
            "--retry-lock=2m",
            "dump",
            "latest",
            "/source/data/data.txt",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    ).stdout
    assert dumped == "sample_data\n"

    # Metrics on the chart's Pushgateway, under the job of this configuration.
    with urllib.request.urlopen(f"{install.pushgateway}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f'job="backupconfiguration-{namespace}-pause-backup"' in text

    # Anyone can curl a sidecar's status API: by pod IP, and through `kubectl port-forward`.
    holder = host["pod"]  # the replica that backed up
    with urllib.request.urlopen(
        f"http://{helpers.pod_ip(kubectl, namespace, holder)}:56789/status", timeout=5
    ) as resp:
        status = json.loads(resp.read())
    assert status["lastResults"][name]["phase"] == "Succeeded"
    with (
        helpers.port_forward(namespace, holder, 56789) as local_port,
        urllib.request.urlopen(f"http://127.0.0.1:{local_port}/status", timeout=5) as resp,
    ):
        assert json.loads(resp.read())["lastResults"][name]["phase"] == "Succeeded"
    # The sidecar's log is the kubelet's, through `kubectl logs`: JSON lines naming the session.
    logs = kubectl("logs", "-n", namespace, holder, "-c", "stash").stdout
    assert any(name in line and line.startswith("{") for line in logs.splitlines())

    # Paused: no rollout; the trigger records "Backup Skipped" and creates nothing.
    generation = get(kubectl, "deployment", "stash-demo", "-n", namespace)["metadata"]["generation"]
    set_paused(True)
    await helpers.until(lambda: paused_is(True), timeout=30, what="paused and Ready")
    await trigger_run(scheduled=False)

    def skip_events() -> list[dict[str, Any]]:
        events = get(kubectl, "events", "-n", namespace, "--field-selector=involvedObject.name=pause-backup")
        return [e for e in events["items"] if e["reason"] == "Backup Skipped"]

    [skipped_event] = await helpers.until(skip_events, timeout=30, what='the "Backup Skipped" event')
    assert skipped_event["type"] == "Normal"
    assert skipped_event["source"]["component"] == "Backup Triggering CronJob"
    assert skipped_event["message"] == (
        f"Skipping creating BackupSession. Reason: Backup Configuration {namespace}/pause-backup is paused."
    )
    described = kubectl("describe", "backupconfiguration", "pause-backup", "-n", namespace).stdout
    assert "Backup Skipped" in described
    assert "Backup Triggering CronJob" in described
    assert [s["metadata"]["name"] for s in get(kubectl, "backupsessions", "-n", namespace)["items"]] == [name]
    assert get(kubectl, "deployment", "stash-demo", "-n", namespace)["metadata"]["generation"] == generation

    # Paused: the hand-made session of the seed is Skipped, with the seed's Warning event.
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "labels": {"stash.appscode.com/backup-configuration": "pause-backup"},
                "name": "instant-backupsession",
                "namespace": namespace,
            },
            "spec": {
                "invoker": {
                    "apiGroup": "stash.appscode.com",
                    "kind": "BackupConfiguration",
                    "name": "pause-backup",
                }
            },
        },
    )

    def skipped() -> bool:
        obj = get(kubectl, "backupsession", "instant-backupsession", "-n", namespace)
        return bool(obj.get("status", {}).get("phase") == "Skipped")

    await helpers.until(skipped, timeout=60, what="instant-backupsession Skipped")
    events = [
        e
        for e in get(kubectl, "events", "-n", namespace)["items"]
        if e["involvedObject"]["name"] == "instant-backupsession"
    ]
    assert events
    assert {(e["type"], e["reason"], e["message"]) for e in events} == {
        ("Warning", "BackupSessionSkipped", "Backup Configuration is paused")
    }
    described = kubectl("describe", "backupsession", "instant-backupsession", "-n", namespace).stdout
    assert "BackupSession Controller" in described

    # Resumed: the trigger's next run takes a second backup.
    set_paused(False)
    known = {name, "instant-backupsession"}
    await helpers.until(lambda: paused_is(False), timeout=30, what="resumed and Ready")
    await trigger_run(scheduled=False)

    def second_success() -> str | None:
        for item in get(kubectl, "backupsessions", "-n", namespace)["items"]:
            if item["metadata"]["name"] not in known and item.get("status", {}).get("phase") == "Succeeded":
                return str(item["metadata"]["name"])
        return None

    await helpers.until(second_success, timeout=180, what="a second successful session")

    # Deleted: the finalizer takes the sidecar out; garbage collection takes the CronJob and sessions.
    kubectl("delete", "backupconfiguration", "pause-backup", "-n", namespace, "--wait=true", "--timeout=60s")
    after = get(kubectl, "deployment", "stash-demo", "-n", namespace)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    revision = "deployment.kubernetes.io/revision"  # the Deployment controller's count of rollouts
    assert {k: v for k, v in (after["metadata"].get("annotations") or {}).items() if k != revision} == {
        k: v for k, v in (before["metadata"].get("annotations") or {}).items() if k != revision
    }
    assert agent_roles() == set()

    def collected() -> bool:
        cronjobs = get(kubectl, "cronjobs", "-n", namespace)["items"]
        return not cronjobs and not get(kubectl, "backupsessions", "-n", namespace)["items"]

    await helpers.until(collected, timeout=60, what="the CronJob and the sessions collected")
