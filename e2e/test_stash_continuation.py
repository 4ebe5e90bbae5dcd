"""A repository Stash wrote, continued by stashlet on the real node.

Stash's sessions are made the way Stash makes them (:mod:`tests.stash_written`: plain restic at the pinned
version, run as Stash's wrapper runs it, in a private root where the pod's volumes sit at their mount
paths, so the snapshots name ``/source/data`` and ``/source/config`` as the pod's would; one snapshot per
path and session, the alias as host, its unscoped ``forget`` after each session) on the REST server pod.
Then stashlet (the chart) injects its ``stash`` sidecar into the same Deployment under the same
BackupConfiguration, and one BackupSession continues the chain: one snapshot per path, Stash's host, each
with Stash's last snapshot of its path as parent; its retention removes exactly what Stash's own
``forget`` would have removed from the same snapshots (real ``restic forget --dry-run`` with Stash's flags,
on a copy of the repository's config, keys and snapshot files read through the REST server's API).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import rest_storage, restic_output
from tests.stash_written import StashRestic, stash_host

from stashlet.localcluster import tools

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "stash-wrote-this"
APP = "app"
ALIAS = "my-app"
PATHS = ("/source/data", "/source/config")
POLICY = {"name": "keep-last-2", "keepLast": 2, "prune": True}
REST_V2 = "application/vnd.x.restic.rest.v2"


def workload(namespace: str) -> list[dict[str, Any]]:
    """A Deployment whose pod mounts two claims, at ``/source/data`` and ``/source/config``."""
    mounts = [{"name": path.rsplit("/", 1)[1], "mountPath": path} for path in PATHS]
    claims = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{m['name']}-pvc", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        for m in mounts
    ]
    container = {
        "name": "busybox",
        "image": "busybox",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "3600"],
        "volumeMounts": mounts,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": m["name"], "persistentVolumeClaim": {"claimName": f"{m['name']}-pvc"}}
                        for m in mounts
                    ],
                },
            },
        },
    }
    return [*claims, deployment]


def backup_configuration(namespace: str) -> dict[str, Any]:
    """The BackupConfiguration the Stash user had: alias, two paths, keepLast 2 with prune."""
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "app-backup", "namespace": namespace},
        "spec": {
            "repository": {"name": "rest-repo"},
            "schedule": "0 0 1 1 *",
            "target": {
                "alias": ALIAS,
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "paths": list(PATHS),
                "volumeMounts": [{"name": p.rsplit("/", 1)[1], "mountPath": p} for p in PATHS],
            },
            "retentionPolicy": POLICY,
        },
    }


def download(url: str, kind: str) -> dict[str, bytes]:
    """Every file of ``kind`` (``keys``, ``snapshots``) in the repository at ``url``, through the REST API."""
    listing = urllib.request.Request(f"{url}/{kind}/", headers={"Accept": REST_V2})
    with urllib.request.urlopen(listing, timeout=30) as response:
        names = [entry["name"] for entry in json.loads(response.read())]
    files = {}
    for name in names:
        with urllib.request.urlopen(f"{url}/{kind}/{name}", timeout=30) as response:
            files[name] = response.read()
    return files


def snapshot_view(url: str, into: Path, extra: dict[str, bytes]) -> Path:
    """A local repository holding what ``forget`` reads of the one at ``url`` (config, keys, snapshots),
    plus the snapshot files ``extra``."""
    with urllib.request.urlopen(f"{url}/config", timeout=30) as response:
        config = response.read()
    into.mkdir()
    (into / "config").write_bytes(config)
    for kind, files in (
        ("keys", download(url, "keys")),
        ("snapshots", {**extra, **download(url, "snapshots")}),
    ):
        (into / kind).mkdir()
        for name, content in files.items():
            (into / kind / name).write_bytes(content)
    for folder in ("index", "data", "locks"):
        (into / folder).mkdir()
    return into


async def test_stashlet_continues_a_stash_written_repository_on_the_node(
    kubectl: Any, namespace: str, operator_for: Any, rest_backend: Any, helpers: Any, tmp_path: Path
) -> None:
    """Three Stash sessions of an aliased Deployment with two paths (keepLast 2), then stashlet's first
    session: per path one snapshot of host ``my-app`` whose parent is Stash's last of that path; two
    removed, the same two Stash's forget removes from the same snapshots; plain restic with the Secret's
    password checks the repository."""
    restic = tools.ensure("restic")
    url = f"{rest_backend.host_url}/{namespace}/continued"
    operator_for(namespace)
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            *rest_storage(namespace, f"{rest_backend.pod_url}/{namespace}/continued", PASSWORD),
            *workload(namespace),
        ],
    )
    await helpers.rolled_out(kubectl, namespace, APP, container="busybox")
    volumes = {
        path: await helpers.pvc_path(kubectl, namespace, f"{path.rsplit('/', 1)[1]}-pvc") for path in PATHS
    }
    stash = StashRestic(restic, f"rest:{url}", PASSWORD)
    stash.init()
    host = stash_host("Deployment", alias=ALIAS)
    for day in ("monday", "tuesday", "wednesday"):
        for path, folder in volumes.items():
            (folder / f"{day}.txt").write_text(f"{day} {path}\n")
        stash.backup(host, list(PATHS), volumes=volumes)
        stash.forget(POLICY)
    before = {s["id"]: s for s in stash.snapshots()}
    assert sorted(tuple(s["paths"]) for s in before.values()) == sorted([(p,) for p in PATHS] * 2)
    saved = download(url, "snapshots")

    kubectl("apply", "-f", "-", input_obj=backup_configuration(namespace))
    await helpers.rolled_out(kubectl, namespace, APP, container="stash")
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {
                "name": "first-stashlet",
                "namespace": namespace,
                "labels": {"stash.appscode.com/backup-configuration": "app-backup"},
            },
            "spec": {
                "invoker": {
                    "apiGroup": "stash.appscode.com",
                    "kind": "BackupConfiguration",
                    "name": "app-backup",
                }
            },
        },
    )

    def finished() -> dict[str, Any] | None:
        status = helpers.get(kubectl, "backupsession", "first-stashlet", "-n", namespace).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = await helpers.until(finished, timeout=180, what="BackupSession first-stashlet finished")
    assert status["phase"] == "Succeeded", json.dumps(status)
    entry = status["targets"][0]["stats"][0]
    assert entry["hostname"] == host
    assert [s["path"] for s in entry["snapshots"]] == list(PATHS)

    after = {s["id"]: s for s in stash.snapshots()}
    new = [s for s in after.values() if s["id"] not in before]
    assert sorted((s["hostname"], tuple(s["paths"])) for s in new) == sorted((host, (p,)) for p in PATHS)
    for snapshot in new:
        stash_last = max(
            (s for s in before.values() if s["paths"] == snapshot["paths"]), key=lambda s: s["time"]
        )
        assert snapshot["parent"] == stash_last["id"], snapshot
        assert snapshot["summary"]["files_new"] == 0

    view = snapshot_view(url, tmp_path / "view", saved)
    groups = StashRestic(restic, str(view), PASSWORD).forget({**POLICY, "prune": False, "dryRun": True})
    stash_removes = {s["id"] for g in groups for s in g.get("remove") or []}
    stashlet_removed = (set(before) | {s["id"] for s in new}) - set(after)
    assert len(stashlet_removed) == 2
    assert stashlet_removed == stash_removes
    restic_output(url, PASSWORD, "check", "--read-data")
