"""Seeds 003 and 004's objects, built in one place for every backend the end-to-end tests use.

The seed's PVC ``source-pvc``, the busybox Deployment ``stash-demo`` mounting it at ``/source/data``, the
Secret ``gcs-secret``, the Repository ``gcs-repo``, the BackupConfiguration ``pause-backup`` (keep-last-5)
and seed 004's RestoreSession ``deployment-restore``: as the seeds write them, with the Repository's
backend, the Secret's keys, replicas, schedule and ``runtimeSettings`` as each test needs; and the data
helpers the tests share (a tree of every kind of file, its manifest, a wipe).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from e2e.manifests import KEEP_LAST_5, NEVER, backup_session

PASSWORD = "changeit"
APP = "stash-demo"
SECRET = "gcs-secret"
REPOSITORY = "gcs-repo"
CONFIGURATION = "pause-backup"
RESTORE = "deployment-restore"
MOUNT = "/source/data"


def b64(value: bytes | str) -> str:
    """A Secret's ``data`` value."""
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def seed_objects(
    namespace: str,
    backend: dict[str, Any],
    *,
    secret: dict[str, bytes | str] | None = None,
    secret_name: str = SECRET,
    repository: str = REPOSITORY,
    replicas: int = 1,
    command: str = "sleep 3000",
    schedule: str = NEVER,
    retention: dict[str, Any] | None = None,
    runtime_settings: dict[str, Any] | None = None,
    host_aliases: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Seed 003's objects in ``namespace``, the BackupConfiguration last: the Repository's ``backend``
    (e.g. ``{"gcs": {...}}``), the Secret's keys besides ``RESTIC_PASSWORD``, the Secret's and the
    Repository's names (a backend's guide names them otherwise), the Deployment's replicas and shell
    ``command``, the schedule (by default one that never fires), the retention policy (keep-last-5),
    ``runtime_settings`` and the pods' ``hostAliases``."""
    labels = {"app": APP}
    configuration: dict[str, Any] = {
        "repository": {"name": repository},
        "schedule": schedule,
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "volumeMounts": [{"name": "source-data", "mountPath": MOUNT}],
            "paths": [MOUNT],
        },
        "retentionPolicy": retention or KEEP_LAST_5,
    }
    if runtime_settings:
        configuration["runtimeSettings"] = runtime_settings
    pod: dict[str, Any] = {"hostAliases": host_aliases} if host_aliases else {}
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
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
            "metadata": {"labels": labels, "name": APP, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "name": "busybox"},
                    "spec": {
                        **pod,
                        "containers": [
                            {
                                "args": [command],
                                "command": ["/bin/sh", "-c"],
                                "image": "busybox",
                                "imagePullPolicy": "IfNotPresent",
                                "name": "busybox",
                                "volumeMounts": [{"mountPath": MOUNT, "name": "source-data"}],
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
            "metadata": {"name": secret_name, "namespace": namespace},
            "data": {
                key: b64(value) for key, value in {"RESTIC_PASSWORD": PASSWORD, **(secret or {})}.items()
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": repository, "namespace": namespace},
            "spec": {"backend": {**backend, "storageSecretName": secret_name}},
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": CONFIGURATION, "namespace": namespace},
            "spec": configuration,
        },
    ]


def restore_session(
    namespace: str, *, repository: str = REPOSITORY, runtime_settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Seed 004's RestoreSession of the Deployment's volume (``runtime_settings`` as the backup's)."""
    spec: dict[str, Any] = {
        "repository": {"name": repository},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "volumeMounts": [{"name": "source-data", "mountPath": MOUNT}],
            "rules": [{"paths": [MOUNT]}],
        },
    }
    if runtime_settings:
        spec["runtimeSettings"] = runtime_settings
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": RESTORE, "namespace": namespace},
        "spec": spec,
    }


async def backed_up_and_checked(
    kubectl: Any, helpers: Any, namespace: str, session: str, *, repository: str = REPOSITORY
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A hand-made BackupSession ``session`` of ``pause-backup``, waited for: it Succeeds with the
    retention policy applied, the repository's check that follows verifies it, and the Repository's
    status shows integrity and a snapshot count. The session and the Repository's status."""
    get = helpers.get

    def phase() -> str | None:
        return (get(kubectl, "backupsession", session, "-n", namespace).get("status") or {}).get("phase")

    kubectl("apply", "-f", "-", input_obj=backup_session(namespace, session, CONFIGURATION))
    await helpers.until(lambda: phase() in ("Succeeded", "Failed"), timeout=120, what=f"backup {session}")
    done: dict[str, Any] = get(kubectl, "backupsession", session, "-n", namespace)
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"])
    assert conditions(done)["RetentionPolicyApplied"][0] == "True"
    verified = await helpers.until(
        lambda: conditions(get(kubectl, "backupsession", session, "-n", namespace)).get(
            "RepositoryIntegrityVerified"
        ),
        timeout=120,
        what="the integrity check",
    )
    assert verified[0] == "True", verified

    def checked() -> dict[str, Any] | None:
        status = get(kubectl, "repository", repository, "-n", namespace).get("status") or {}
        return status if status.get("integrity") is True and status.get("snapshotCount") else None

    status: dict[str, Any] = await helpers.until(checked, timeout=60, what=f"{repository}'s status")
    return done, status


def write_data(root: Path) -> None:
    """Files of several kinds: text, random bytes, empty, private, nested, a symlink."""
    (root / "data.txt").write_text("sample_data\n")
    (root / "blob.bin").write_bytes(os.urandom(300_000))
    (root / "empty").write_bytes(b"")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "notes.md").write_text("# notes\n" * 50)
    private = root / "deep" / "private.key"
    private.write_bytes(os.urandom(64))
    private.chmod(0o600)
    (root / "link").symlink_to("deep/er/notes.md")


def manifest(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry below ``root``: its type, permission bits and content (a symlink's target)."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            found[rel] = ("link", 0, os.readlink(path).encode())
        elif stat.S_ISDIR(info.st_mode):
            found[rel] = ("dir", stat.S_IMODE(info.st_mode), b"")
        else:
            found[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return found


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """An object's conditions: status and reason by type."""
    return {c["type"]: (c["status"], c["reason"]) for c in (obj.get("status") or {}).get("conditions") or []}


def wipe(root: Path) -> None:
    """Empty ``root`` (the folder itself stays)."""
    for path in root.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def init_exit_codes(pod: dict[str, Any]) -> dict[str, int]:
    """The exit codes of a pod's finished init-containers, by name."""
    return {
        s["name"]: s["state"]["terminated"]["exitCode"]
        for s in (pod.get("status") or {}).get("initContainerStatuses") or []
        if "terminated" in (s.get("state") or {})
    }


def columns(text: str) -> list[list[str]]:
    """``kubectl get``'s table as rows of cells."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]
