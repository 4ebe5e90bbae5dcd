"""Stand-alone PVC backup (Stash's task ``pvc-backup``), end to end with every part real.

stashlet is installed with its Helm chart. A claim of the node's storage holds a file a pod wrote (under
a subPath, as in Stash's guide); the guide's BackupConfiguration (``task.name: pvc-backup``, the claim as
``target.ref``) gets no sidecar: each BackupSession gets a Job that mounts the claim at ``/stash-data`` and
runs ``stashlet-agent job`` as root; the claim is ReadWriteOnce and held by the writer pod, so the Job is
pinned to that pod's node. The snapshot goes into a restic REST server pod.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e.rest_repository import rest_storage, restic_output

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "pvc-e2e-password"
BC = "nfs-pvc-backup"
CLAIM = "nfs-pvc"


def objects(namespace: str, rest_url: str) -> list[dict[str, Any]]:
    """The Secret and Repository, the claim, the pod writing into it, the guide's configuration."""
    return [
        *rest_storage(namespace, f"{rest_url}/{namespace}", PASSWORD),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "demo-pod-1", "namespace": namespace},
            "spec": {
                "containers": [
                    {
                        "name": "busybox",
                        "image": "busybox",
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "/bin/sh",
                            "-c",
                            "echo 'hello from pod 1.' > /sample/data/hello.txt && sleep 3000",
                        ],
                        "volumeMounts": [
                            {"name": "my-volume", "mountPath": "/sample/data", "subPath": "pod-1/data"}
                        ],
                    }
                ],
                "volumes": [{"name": "my-volume", "persistentVolumeClaim": {"claimName": CLAIM}}],
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": BC, "namespace": namespace},
            "spec": {
                "task": {"name": "pvc-backup"},
                "repository": {"name": "rest-repo"},
                "schedule": "0 0 1 1 *",
                "target": {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": CLAIM}},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            },
        },
    ]


def restic(url: str, *args: str) -> str:
    """Plain restic against the REST server, as the host reaches it."""
    return restic_output(url, PASSWORD, *args)


async def test_the_guides_pvc_backup_runs_as_a_job_on_the_claims_node_and_snapshots_its_files(
    kubectl: Any, namespace: str, operator_for: Any, rest_server: str, rest_backend: Any, helpers: Any
) -> None:
    """The configuration is Ready; the session's Job (its own ServiceAccount, the claim at /stash-data,
    pinned to the writer's node) runs on the real node and ends the session Succeeded as host-0; the
    snapshot holds the file the pod wrote, with its content; the Repository counts it."""
    get = helpers.get
    operator_for(namespace)
    kubectl("apply", "-f", "-", input_obj=objects(namespace, rest_server))

    def written() -> bool:
        pod = get(kubectl, "pod", "demo-pod-1", "-n", namespace)
        return bool(pod.get("status", {}).get("phase") == "Running")

    await helpers.until(written, timeout=120, what="the writer pod Running")
    assert helpers.exec_in(kubectl, namespace, "demo-pod-1", "busybox", "cat", "/sample/data/hello.txt") == (
        "hello from pod 1.\n"
    )
    node = get(kubectl, "pod", "demo-pod-1", "-n", namespace)["spec"]["nodeName"]

    def ready() -> bool:
        bc = get(kubectl, "backupconfiguration", BC, "-n", namespace)
        status = bc.get("status") or {}
        return (
            status.get("phase") == "Ready"
            and status.get("observedGeneration") == bc["metadata"]["generation"]
        )

    await helpers.until(ready, timeout=60, what="the configuration Ready")
    session = f"{BC}-1"
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": session,
                "namespace": namespace,
                "labels": {"stash.appscode.com/backup-configuration": BC},
            },
            "spec": {
                "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": BC}
            },
        },
    )
    job_name = f"stash-backup-{session}"

    def job() -> dict[str, Any] | None:
        out = kubectl("get", "job", job_name, "-n", namespace, "-o", "json", "--ignore-not-found").stdout
        return json.loads(out) if out.strip() else None

    created = await helpers.until(job, timeout=60, what=f"Job {job_name}")
    pod_spec = created["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == f"stashlet-pvc-backup-{BC}"
    assert {
        "name": "stash-volume",
        "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True},
    } in pod_spec["volumes"]
    terms = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [node]

    def finished_pod() -> dict[str, Any] | None:
        pods = get(kubectl, "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job_name}")
        done = [p for p in pods["items"] if p["status"].get("phase") in ("Succeeded", "Failed")]
        return done[0] if done else None

    pod = await helpers.until(finished_pod, timeout=240, what=f"the pod of Job {job_name} finished")
    logs = kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "stash").stdout
    assert pod["status"]["phase"] == "Succeeded", logs[-4000:]
    assert pod["spec"]["nodeName"] == node
    status = get(kubectl, "backupsession", session, "-n", namespace)["status"]
    assert status["phase"] == "Succeeded", json.dumps(status)
    target = status["targets"][0]
    assert target["ref"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": CLAIM}
    assert [(h["hostname"], h["phase"]) for h in target["stats"]] == [("host-0", "Succeeded")]

    host_url = f"{rest_backend.host_url}/{namespace}"
    snapshots = json.loads(restic(host_url, "snapshots", "--json"))
    assert [(s["hostname"], s["paths"]) for s in snapshots] == [("host-0", ["/stash-data"])]
    assert restic(host_url, "dump", "latest", "/stash-data/pod-1/data/hello.txt") == "hello from pod 1.\n"
    repo = get(kubectl, "repository", "rest-repo", "-n", namespace)["status"]
    assert repo["snapshotCount"] == 1
