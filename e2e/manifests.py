"""The objects the end-to-end tests apply on the real node, built in one place: a busybox Deployment with
a scratch volume, a BackupConfiguration of it, and a hand-made BackupSession (as the trigger makes them)."""

from __future__ import annotations

from typing import Any

NEVER = "0 0 1 1 *"
"""A schedule that does not fire during a test: sessions are made by hand."""
KEEP_LAST_5 = {"name": "keep-last-5", "keepLast": 5, "prune": True}


def busybox_deployment(
    namespace: str,
    command: list[str],
    *,
    name: str = "app",
    container: str = "app",
    mount_path: str = "/data",
    volume: str = "data",
    replicas: int = 1,
    **pod_spec: Any,
) -> dict[str, Any]:
    """Deployment ``name`` of one busybox container running ``command`` with an emptyDir ``volume`` at
    ``mount_path``; ``pod_spec`` adds pod fields (e.g. ``terminationGracePeriodSeconds``)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **pod_spec,
                    "containers": [
                        {
                            "name": container,
                            "image": "busybox",
                            "imagePullPolicy": "IfNotPresent",
                            "command": command,
                            "volumeMounts": [{"name": volume, "mountPath": mount_path}],
                        }
                    ],
                    "volumes": [{"name": volume, "emptyDir": {}}],
                },
            },
        },
    }


def backup_configuration(
    namespace: str,
    name: str,
    *,
    repository: str,
    workload: str = "app",
    mount_path: str = "/data",
    volume: str = "data",
    args: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """BackupConfiguration ``name`` of Deployment ``workload``'s ``volume`` (at ``mount_path``) into
    ``repository``, never scheduled, keeping the last 5; ``spec`` adds or replaces spec fields."""
    target: dict[str, Any] = {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
        "volumeMounts": [{"name": volume, "mountPath": mount_path}],
        "paths": [mount_path],
    }
    if args:
        target["args"] = args
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": metadata,
        "spec": {
            "repository": {"name": repository},
            "schedule": NEVER,
            "target": target,
            "retentionPolicy": KEEP_LAST_5,
            **spec,
        },
    }


def backup_session(namespace: str, name: str, configuration: str) -> dict[str, Any]:
    """BackupSession ``name`` of ``configuration``, labelled as the trigger labels it."""
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "stash.appscode.com/backup-configuration": configuration,
                "stash.appscode.com/invoker-type": "BackupConfiguration",
                "stash.appscode.com/invoker-name": configuration,
            },
        },
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": configuration,
            }
        },
    }
