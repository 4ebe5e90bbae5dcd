"""Repositories Stash wrote, restored through stashlet on the real node.

The repositories are made the way Stash makes them (:mod:`tests.stash_written`: plain restic at the
pinned version, run as Stash's wrapper runs it, inside a private root where each pod's volume sits at its
mount path, so the snapshots name ``/source/data`` as a pod's would): one per path and session, Stash's
host names, its forget. One is in restic's format 1 (older Stash), one in format 2. Both live on the
REST server pod. stashlet (the chart) injects ``stash-init`` into a Deployment with two volumes and into
an aliased StatefulSet of three; the kubelet runs it from the agent image; every file comes back byte for
byte with its mode, and plain restic, given only the Secret's values, still reads both repositories whole.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import rest_storage, restic_output
from e2e.seed import manifest
from tests.stash_written import StashRestic, stash_host

from stashlet.localcluster import tools

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "stash-wrote-this"
SECRET = "stash-secret"
DEPLOYMENT = "app"
STATEFULSET = "db"
ALIAS = "my-db"
DEPLOYMENT_PATHS = ("/source/data", "/source/config")
STS_PATH = "/source/data"
REPLICAS = 3


def busybox(mounts: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "name": "busybox",
        "image": "busybox",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "3600"],
        "volumeMounts": mounts,
    }


def claim(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def workloads(namespace: str) -> list[dict[str, Any]]:
    """A Deployment with two claims (``/source/data``, ``/source/config``) and a StatefulSet of three,
    each pod with its own claim at ``/source/data``."""
    mounts = [{"name": path.rsplit("/", 1)[1], "mountPath": path} for path in DEPLOYMENT_PATHS]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {
                    "containers": [busybox(mounts)],
                    "volumes": [
                        {"name": m["name"], "persistentVolumeClaim": {"claimName": f"{m['name']}-pvc"}}
                        for m in mounts
                    ],
                },
            },
        },
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": STATEFULSET, "namespace": namespace},
        "spec": {
            "replicas": REPLICAS,
            "serviceName": STATEFULSET,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": STATEFULSET}},
            "template": {
                "metadata": {"labels": {"app": STATEFULSET}},
                "spec": {"containers": [busybox([{"name": "data", "mountPath": STS_PATH}])]},
            },
            "volumeClaimTemplates": [
                {k: v for k, v in claim(namespace, "data").items() if k in ("metadata", "spec")}
            ],
        },
    }
    return [*(claim(namespace, f"{m['name']}-pvc") for m in mounts), deployment, statefulset]


def restore_session(
    namespace: str, name: str, kind: str, workload: str, repository: str, paths: list[str], **target: Any
) -> dict[str, Any]:
    """A RestoreSession as a Stash user wrote it: the workload, its volumes, one rule with the paths."""
    mounts = [{"name": path.rsplit("/", 1)[1], "mountPath": path} for path in paths]
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": {"name": repository},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": kind, "name": workload},
                "volumeMounts": mounts,
                "rules": [{"paths": paths}],
                **target,
            },
        },
    }


def write_data(root: Path, seed: str) -> None:
    """Text, random bytes, an empty file, a private file, nesting, a symlink."""
    (root / "deep" / "er").mkdir(parents=True, exist_ok=True)
    (root / "data.txt").write_text(f"{seed}\n")
    (root / "blob.bin").write_bytes(os.urandom(200_000))
    (root / "empty").write_bytes(b"")
    (root / "deep" / "er" / "notes.md").write_text(f"# {seed}\n" * 50)
    secret = root / "deep" / "private.key"
    secret.write_bytes(os.urandom(64))
    secret.chmod(0o600)
    link = root / "link"
    if not link.is_symlink():
        link.symlink_to("deep/er/notes.md")


def answers(url: str) -> bool:
    """The server at ``url`` answers HTTP from this host (a fresh Service's rules may lag its pod)."""
    try:
        with urllib.request.urlopen(f"{url}/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def snapshot_ids(url: str, password: str) -> list[tuple[str, str, tuple[str, ...]]]:
    listed = json.loads(restic_output(url, password, "snapshots", "--json", "--no-lock"))
    return sorted((s["id"], s["hostname"], tuple(s["paths"])) for s in listed)


async def statefulset_rolled_out(kubectl: Any, helpers: Any, namespace: str) -> None:
    """The StatefulSet's template carries ``stash-init`` and every replica runs it, Ready."""

    def done() -> bool:
        sts = helpers.get(kubectl, "statefulset", STATEFULSET, "-n", namespace)
        init = [c["name"] for c in sts["spec"]["template"]["spec"].get("initContainers") or []]
        status = sts.get("status") or {}
        return (
            "stash-init" in init
            and status.get("observedGeneration") == sts["metadata"]["generation"]
            and status.get("updatedReplicas") == REPLICAS
            and status.get("readyReplicas") == REPLICAS
            and status.get("currentRevision") == status.get("updateRevision")
        )

    await helpers.until(done, timeout=240, what=f"the rollout of {namespace}/{STATEFULSET} with stash-init")


async def test_stash_written_repositories_restore_byte_for_byte(
    kubectl: Any, namespace: str, operator_for: Any, rest_backend: Any, helpers: Any, tmp_path: Path
) -> None:
    """Format 1, a Deployment (host-0) with two paths backed up twice and Stash's forget run: stash-init
    restores each path from its own latest snapshot. Format 2, a StatefulSet of three with alias my-db
    (hosts my-db-0..2): each pod restores its own host's data into its own claim. Both RestoreSessions
    Succeed with Stash's host names; plain restic with only the Secret's password finds the same
    snapshots and checks every byte of both repositories."""
    operator_for(namespace)
    await helpers.until(
        lambda: answers(rest_backend.host_url), timeout=60, what="the REST server from this host"
    )
    restic = tools.ensure("restic")
    dep_url, sts_url = (f"{rest_backend.host_url}/{namespace}/{name}" for name in ("dep", "sts"))
    dep_source = {path: tmp_path / f"dep{path.replace('/', '-')}" for path in DEPLOYMENT_PATHS}
    sts_source = [tmp_path / f"sts-{i}" for i in range(REPLICAS)]

    v1 = StashRestic(restic, f"rest:{dep_url}", PASSWORD)
    v1.init(version=1)
    for session in ("monday", "tuesday"):
        for path, source in dep_source.items():
            source.mkdir(exist_ok=True)
            write_data(source, f"{session} {path}")
        v1.backup(stash_host("Deployment"), list(DEPLOYMENT_PATHS), volumes=dep_source)
    v1.forget({"keepLast": 5, "prune": True})
    v2 = StashRestic(restic, f"rest:{sts_url}", PASSWORD)
    v2.init(version=2)
    for i, source in enumerate(sts_source):
        source.mkdir()
        write_data(source, f"ordinal {i}")
        host = stash_host("StatefulSet", pod=f"{STATEFULSET}-{i}", alias=ALIAS)
        v2.backup(host, [STS_PATH], volumes={STS_PATH: source})
    assert (v1.config_version(), v2.config_version()) == (1, 2)
    before = {url: snapshot_ids(url, PASSWORD) for url in (dep_url, sts_url)}
    assert sorted(h for _, h, _ in before[sts_url]) == [f"{ALIAS}-{i}" for i in range(REPLICAS)]
    assert len(before[dep_url]) == 4

    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            *rest_storage(
                namespace, f"{rest_backend.pod_url}/{namespace}/dep", PASSWORD, name="dep-repo", secret=SECRET
            ),
            *rest_storage(
                namespace, f"{rest_backend.pod_url}/{namespace}/sts", PASSWORD, name="sts-repo", secret=SECRET
            ),
            *workloads(namespace),
        ],
    )
    await helpers.rolled_out(kubectl, namespace, DEPLOYMENT, container="busybox")
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            restore_session(
                namespace, "dep-restore", "Deployment", DEPLOYMENT, "dep-repo", list(DEPLOYMENT_PATHS)
            ),
            restore_session(
                namespace, "sts-restore", "StatefulSet", STATEFULSET, "sts-repo", [STS_PATH], alias=ALIAS
            ),
        ],
    )

    [pod] = await helpers.rolled_out(kubectl, namespace, DEPLOYMENT, container="stash-init")
    await statefulset_rolled_out(kubectl, helpers, namespace)

    init_log = kubectl("logs", "-n", namespace, pod, "-c", "stash-init").stdout
    for path, source in dep_source.items():
        volume = await helpers.pvc_path(kubectl, namespace, f"{path.rsplit('/', 1)[1]}-pvc")
        assert manifest(volume) == manifest(source), (path, init_log[-3000:])
    for i, source in enumerate(sts_source):
        volume = await helpers.pvc_path(kubectl, namespace, f"data-{STATEFULSET}-{i}")
        assert manifest(volume) == manifest(source), f"{STATEFULSET}-{i}"

    def finished(name: str) -> dict[str, Any] | None:
        status = helpers.get(kubectl, "restoresession", name, "-n", namespace).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    dep = await helpers.until(lambda: finished("dep-restore"), timeout=60, what="dep-restore finished")
    sts = await helpers.until(lambda: finished("sts-restore"), timeout=60, what="sts-restore finished")
    assert (dep["phase"], [(s["hostname"], s["phase"]) for s in dep["stats"]]) == (
        "Succeeded",
        [("host-0", "Succeeded")],
    ), json.dumps(dep)
    assert (sts["phase"], sorted((s["hostname"], s["phase"]) for s in sts["stats"])) == (
        "Succeeded",
        [(f"{ALIAS}-{i}", "Succeeded") for i in range(REPLICAS)],
    ), json.dumps(sts)

    secret = helpers.get(kubectl, "secret", SECRET, "-n", namespace)
    password = base64.b64decode(secret["data"]["RESTIC_PASSWORD"]).decode()
    for url in (dep_url, sts_url):
        assert snapshot_ids(url, password) == before[url]
        restic_output(url, password, "check", "--read-data")
