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

import base64
import json
import re
import subprocess
import urllib.request
from typing import Any

import pytest

from stashlet.localcluster import tools

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "changeit"


def seed_objects(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    """Seed 003's objects in ``namespace`` (the Repository's backend: the REST server)."""
    labels = {"app": "stash-demo"}
    return [
        {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "metadata": {"name": "source-pvc", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"labels": labels, "name": "stash-demo", "namespace": namespace},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "name": "busybox"},
                    "spec": {
                        "containers": [
                            {
                                "args": ["echo sample_data > /source/data/data.txt && sleep 3000"],
                                "command": ["/bin/sh", "-c"],
                                "image": "busybox",
                                "imagePullPolicy": "IfNotPresent",
                                "name": "busybox",
                                "volumeMounts": [{"mountPath": "/source/data", "name": "source-data"}],
                            }
                        ],
                        "restartPolicy": "Always",
                        "volumes": [
                            {"name": "source-data", "persistentVolumeClaim": {"claimName": "source-pvc"}}
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gcs-secret", "namespace": namespace},
            "data": {"RESTIC_PASSWORD": base64.b64encode(PASSWORD.encode()).decode()},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "gcs-repo", "namespace": namespace},
            "spec": {
                "backend": {"rest": {"url": f"{rest_url}/{namespace}"}, "storageSecretName": "gcs-secret"}
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "pause-backup", "namespace": namespace},
            "spec": {
                "repository": {"name": "gcs-repo"},
                "schedule": "*/1 * * * *",
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"},
                    "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
                    "paths": ["/source/data"],
                },
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            },
        },
    ]


def columns(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


async def test_seed_003_backup_pause_and_resume(
    kubectl: Any,
    namespace: str,
    operator_for: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
) -> None:
    """The operator injects the sidecar; the busybox replicas write their data; the CronJob fires, its
    trigger creates the session, the lease-holding sidecar backs the PVC up and the session Succeeds with
    its duration; paused, a hand-made session is Skipped with the seed's Warning event; resumed, the next
    firing backs up again."""
    install = operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=seed_objects(namespace, rest_server))
    get = helpers.get

    def ready() -> bool:
        bc = get(kubectl, "backupconfiguration", "pause-backup", "-n", namespace)
        return bool(bc.get("status", {}).get("phase") == "Ready")

    await helpers.until(ready, timeout=60, what="BackupConfiguration Ready")
    out = kubectl("get", "backupconfiguration", "-n", namespace).stdout
    assert columns(out)[0] == ["NAME", "TASK", "SCHEDULE", "PAUSED", "PHASE", "AGE"]
    assert columns(out)[1][:3] == ["pause-backup", "*/1 * * * *", "Ready"]

    pods = await helpers.rolled_out(kubectl, namespace, "stash-demo")
    assert len(pods) == 3
    for pod in pods:
        assert (
            helpers.exec_in(kubectl, namespace, pod, "busybox", "cat", "/source/data/data.txt")
            == "sample_data\n"
        )

    async def fire_trigger() -> str:
        selector = "stash.appscode.com/backup-configuration=pause-backup"
        before = {
            p["metadata"]["name"] for p in get(kubectl, "pods", "-n", namespace, "-l", selector)["items"]
        }

        def new_trigger_pod() -> str | None:
            items = get(kubectl, "pods", "-n", namespace, "-l", selector)["items"]
            fresh = [p["metadata"]["name"] for p in items if p["metadata"]["name"] not in before]
            return fresh[0] if fresh else None

        pod = await helpers.until(new_trigger_pod, timeout=100, what="the CronJob firing")

        def completed() -> str | None:
            phase = get(kubectl, "pod", pod, "-n", namespace)["status"].get("phase")
            return phase if phase in ("Succeeded", "Failed") else None

        assert await helpers.until(completed, timeout=60, what="the trigger pod completing") == "Succeeded"
        return str(pod)

    await fire_trigger()

    def finished_session() -> dict[str, Any] | None:
        for item in get(kubectl, "backupsessions", "-n", namespace)["items"]:
            if item.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return dict(item)
        return None

    session = await helpers.until(finished_session, timeout=120, what="a finished BackupSession")
    assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"])
    name = session["metadata"]["name"]
    assert re.fullmatch(r"pause-backup-\d{10}", name)
    host = session["status"]["targets"][0]["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Succeeded")
    rows = columns(kubectl("get", "backupsession", "-n", namespace).stdout)
    assert rows[0] == ["NAME", "INVOKER-TYPE", "INVOKER-NAME", "PHASE", "DURATION", "AGE"]
    assert rows[1][:4] == [name, "BackupConfiguration", "pause-backup", "Succeeded"]
    assert re.fullmatch(r"\d+(ms|s)|\d+m\d+s", rows[1][4])
    repo_rows = columns(kubectl("get", "repository", "-n", namespace).stdout)
    assert repo_rows[1][:2] == ["gcs-repo", "true"]
    assert repo_rows[1][3] == "1"

    # The data in the backend is the PVC's, as plain restic reads it.
    env = {
        "RESTIC_REPOSITORY": f"rest:{rest_backend.host_url}/{namespace}",
        "RESTIC_PASSWORD": PASSWORD,
        "PATH": "/usr/bin:/bin",
    }
    dumped = subprocess.run(
        [str(tools.ensure("restic")), "--no-cache", "dump", "latest", "/source/data/data.txt"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert dumped == "sample_data\n"

    # Metrics on the chart's Pushgateway, under the job of this configuration.
    with urllib.request.urlopen(f"{install.pushgateway}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f'job="backupconfiguration-{namespace}-pause-backup"' in text

    # Anyone can curl a sidecar's status API: by pod IP, and through `kubectl port-forward`.
    holder = get(kubectl, "lease", "lock-deployment-stash-demo-backup", "-n", namespace)["spec"][
        "holderIdentity"
    ]
    with urllib.request.urlopen(
        f"http://{helpers.pod_ip(kubectl, namespace, holder)}:56789/status", timeout=5
    ) as resp:
        status = json.loads(resp.read())
    assert status["leader"] is True
    assert status["lastResults"][name]["phase"] == "Succeeded"
    with (
        helpers.port_forward(namespace, holder, 56789) as local_port,
        urllib.request.urlopen(f"http://127.0.0.1:{local_port}/status", timeout=5) as resp,
    ):
        assert json.loads(resp.read())["lastResults"][name]["phase"] == "Succeeded"
    # The sidecar's log is the kubelet's, through `kubectl logs`: JSON lines naming the session.
    logs = kubectl("logs", "-n", namespace, holder, "-c", "stash").stdout
    assert any(name in line and line.startswith("{") for line in logs.splitlines())

    # Paused: the hand-made session of the seed is Skipped, with the seed's Warning event.
    kubectl(
        "patch",
        "backupconfiguration",
        "pause-backup",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"paused": true}}',
    )
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

    # Resumed: the next firing takes a second backup.
    kubectl(
        "patch",
        "backupconfiguration",
        "pause-backup",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"paused": false}}',
    )
    await fire_trigger()

    def second_success() -> bool:
        items = get(kubectl, "backupsessions", "-n", namespace)["items"]
        return sum(1 for i in items if i.get("status", {}).get("phase") == "Succeeded") >= 2 or any(
            i.get("status", {}).get("phase") == "Succeeded"
            and i["metadata"]["name"] != name
            and i["metadata"]["name"] != "instant-backupsession"
            for i in items
        )

    await helpers.until(second_success, timeout=180, what="a second successful session")
