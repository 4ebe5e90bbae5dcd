"""BackupConfiguration -> the CronJob ``stash-trigger-<bc>`` that runs ``stashlet-operator trigger``: pure.

The CronJob is owned by the configuration (garbage collection removes it with it) and is never
suspended: when the configuration is paused the trigger still runs, records a "Backup Skipped" event and
creates nothing. Jobs may overlap (``concurrencyPolicy: Allow``): a trigger is quick, and a stuck one
must not swallow the next schedule.
"""

from __future__ import annotations

from typing import Any

from stashlet.api import agent_contract, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.operator.core.objects import labels_cover, managed_labels, owned_by, owner_reference
from stashlet.operator.settings import OperatorSettings

TRIGGER_CONTAINER = "trigger"
FLAG_NAMESPACE = "--namespace"
ENV_JOB_NAME = "JOB_NAME"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def trigger_args(bc: BackupConfiguration) -> list[str]:
    """The trigger container's ``args`` (its command is ``stashlet-operator``)."""
    return [
        agent_contract.MODE_TRIGGER,
        f"{agent_contract.FLAG_INVOKER_KIND}={names.KIND_BACKUP_CONFIGURATION}",
        f"{agent_contract.FLAG_INVOKER_NAME}={bc.metadata.name}",
        f"{FLAG_NAMESPACE}={bc.metadata.namespace}",
    ]


def build_cronjob(bc: BackupConfiguration, settings: OperatorSettings) -> dict[str, Any]:
    """The trigger CronJob for ``bc`` (its schedule is ``spec.schedule``, as written)."""
    labels = managed_labels(bc)
    container: dict[str, Any] = {
        "name": TRIGGER_CONTAINER,
        "image": settings.operator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [agent_contract.OPERATOR_COMMAND],
        "args": trigger_args(bc),
        "env": [
            {
                "name": ENV_JOB_NAME,
                "valueFrom": {
                    "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}
                },
            }
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": names.cronjob_name(bc.metadata.name or ""),
            "namespace": bc.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(bc)],
        },
        "spec": {
            "schedule": bc.spec.schedule,
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 3,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": settings.trigger_service_account,
                            "restartPolicy": "Never",
                            "containers": [container],
                        },
                    },
                },
            },
        },
    }


def _pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        cronjob.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or {}
    )
    return spec


def cronjob_patch(
    existing: dict[str, Any], desired: dict[str, Any], bc: BackupConfiguration
) -> dict[str, Any] | None:
    """The merge patch that brings ``existing`` to ``desired``, or None when it is up to date."""
    ours, theirs = _pod_spec(desired), _pod_spec(existing)
    containers = theirs.get("containers") or []
    up_to_date = (
        existing.get("spec", {}).get("schedule") == desired["spec"]["schedule"]
        and len(containers) == 1
        and all(
            containers[0].get(k) == ours["containers"][0].get(k)
            for k in ("name", "image", "command", "args", "env")
        )
        and theirs.get("serviceAccountName") == ours.get("serviceAccountName")
        and owned_by(existing, bc)
        and labels_cover(existing, desired["metadata"]["labels"])
    )
    if up_to_date:
        return None
    return {
        "metadata": {
            "labels": desired["metadata"]["labels"],
            "ownerReferences": desired["metadata"]["ownerReferences"],
        },
        "spec": desired["spec"],
    }
