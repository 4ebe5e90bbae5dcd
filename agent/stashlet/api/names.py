"""Names shared by the operator and the agent: API group, labels, annotations, containers, objects.

These are part of the compatibility contract with Stash v1beta1 manifests; change none lightly.
"""

from typing import Final

GROUP: Final = "stash.appscode.com"
V1ALPHA1: Final = "v1alpha1"
V1BETA1: Final = "v1beta1"
API_VERSION_ALPHA: Final = f"{GROUP}/{V1ALPHA1}"
API_VERSION_BETA: Final = f"{GROUP}/{V1BETA1}"

# Plural resource names, as served by the API server.
REPOSITORIES: Final = "repositories"
BACKUP_CONFIGURATIONS: Final = "backupconfigurations"
BACKUP_SESSIONS: Final = "backupsessions"
RESTORE_SESSIONS: Final = "restoresessions"
BACKUP_BLUEPRINTS: Final = "backupblueprints"

KIND_REPOSITORY: Final = "Repository"
KIND_BACKUP_CONFIGURATION: Final = "BackupConfiguration"
KIND_BACKUP_SESSION: Final = "BackupSession"
KIND_RESTORE_SESSION: Final = "RestoreSession"
KIND_BACKUP_BLUEPRINT: Final = "BackupBlueprint"

# Labels.
LABEL_BACKUP_CONFIGURATION: Final = f"{GROUP}/backup-configuration"
LABEL_INVOKER_TYPE: Final = f"{GROUP}/invoker-type"
LABEL_INVOKER_NAME: Final = f"{GROUP}/invoker-name"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "stashlet"

# Auto-backup annotations on workloads (a workload plus a BackupBlueprint gives a BackupConfiguration).
ANNOTATION_BACKUP_BLUEPRINT: Final = f"{GROUP}/backup-blueprint"
ANNOTATION_TARGET_PATHS: Final = f"{GROUP}/target-paths"
ANNOTATION_VOLUME_MOUNTS: Final = f"{GROUP}/volume-mounts"
ANNOTATION_SCHEDULE: Final = f"{GROUP}/schedule"

# What auto-backup writes on the Repository and BackupConfiguration it creates for a workload.
LABEL_CREATED_BY: Final = "app.kubernetes.io/created-by"
CREATED_BY_AUTO_BACKUP: Final = "stash-auto-backup"
ANNOTATION_AUTO_BACKUP_TARGET: Final = f"{GROUP}/auto-backup-target"
"""``<Kind>/<namespace>/<name>`` of the workload the object was created for."""
ANNOTATION_AUTO_BACKUP_BLUEPRINT: Final = f"{GROUP}/auto-backup-blueprint"
"""The BackupBlueprint the object was resolved from."""

# Annotations stashlet writes on what it changes.
ANNOTATION_LAST_APPLIED_INVOKER: Final = f"{GROUP}/last-applied-invoker"
ANNOTATION_INJECTION_HASH: Final = f"{GROUP}/injection-hash"

# Opt-in to back up although the configuration is paused (set on a BackupSession to "true").
ANNOTATION_BACKUP_WHILE_PAUSED: Final = f"{GROUP}/backup-while-paused"

# Set to "false" on a Repository to forbid the agent from initialising a missing restic repository.
ANNOTATION_INIT_REPOSITORY: Final = f"{GROUP}/init-repository"

# On a Repository: how often ``restic check`` runs on it (a Go duration, default ``24h``; ``0s``: after
# every backup; due-ness counts from ``status.lastCheckTime``), and what part of the data it also reads
# (restic's ``--read-data-subset``: ``n/t``, ``x%`` or a size such as ``500M``; unset: the structure only).
ANNOTATION_CHECK_INTERVAL: Final = f"{GROUP}/check-interval"
ANNOTATION_CHECK_READ_DATA_SUBSET: Final = f"{GROUP}/check-read-data-subset"

# Who asked for a BackupSession (the trigger CronJob, the agent's POST /backup, a person).
ANNOTATION_REQUESTED_BY: Final = f"{GROUP}/requested-by"

# On a BackupSession the operator made to retry a failed one (``spec.retryConfig``): the failed session.
ANNOTATION_RETRY_OF: Final = f"{GROUP}/retry-of"

# On what wipes a Repository's backend data (``spec.wipeOut``): the label names the Repository, the Job's
# annotation ``Repository/<name>``.
LABEL_WIPE_OF: Final = f"{GROUP}/wipe-of"
ANNOTATION_WIPE_OF: Final = f"{GROUP}/wipe-of"

FINALIZER: Final = GROUP
# On a Repository with ``spec.wipeOut: true``: its backend data is wiped before the object goes.
FINALIZER_WIPE_OUT: Final = f"{GROUP}/wipe-out"

# Containers, volumes and objects the operator creates.
SIDECAR_CONTAINER: Final = "stash"
INIT_CONTAINER: Final = "stash-init"
TMP_VOLUME: Final = "stash-tmp-dir"
TMP_MOUNT_PATH: Final = "/stash-tmp"
CRONJOB_PREFIX: Final = "stash-trigger-"

DEFAULT_STATUS_PORT: Final = 56789

# The restore init-container's own volumes and the annotations and label that record it (kept apart from
# the sidecar's, so that adding or removing either never touches the other).
INIT_TMP_VOLUME: Final = "stash-init-tmp-dir"
INIT_LOCAL_VOLUME: Final = "stash-init-local"
LABEL_RESTORE_SESSION: Final = f"{GROUP}/restore-session"
ANNOTATION_LAST_APPLIED_RESTORE: Final = f"{GROUP}/last-applied-restore-invoker"
ANNOTATION_RESTORE_INJECTION_HASH: Final = f"{GROUP}/restore-injection-hash"

# The resource-YAML dump (kubedump): task names that mean "dump the resources", run as a Job per session.
KUBEDUMP_TASKS: Final = frozenset({"kubedump-backup-0.1.0", "kubedump-backup"})
LABEL_BACKUP_SESSION: Final = f"{GROUP}/backup-session"
# On a kubedump BackupConfiguration: the binding that lets its Job read what it dumps (to remove it
# when the target moves).
ANNOTATION_KUBEDUMP_BINDING: Final = f"{GROUP}/kubedump-binding"

# Stand-alone PersistentVolumeClaims (Stash's ``pvc-backup`` Task): a Job per session mounts the claim at
# Stash's TARGET_MOUNT_PATH (its ``StashDefaultMountPath``, or ``spec.target.volumeMounts[0].mountPath``)
# as Stash's volume ``stash-volume``, and backs up ``spec.target.paths`` (default: the mount path).
PVC_BACKUP_TASKS: Final = frozenset({"pvc-backup"})
KIND_PERSISTENT_VOLUME_CLAIM: Final = "PersistentVolumeClaim"
TARGET_VOLUME: Final = "stash-volume"
TARGET_MOUNT_PATH: Final = "/stash-data"


def target_mount_path(mount_paths: list[str]) -> str:
    """Where a stand-alone claim is mounted: the first of ``spec.target.volumeMounts``' mount paths, as
    Stash takes it, else :data:`TARGET_MOUNT_PATH`."""
    return mount_paths[0] if mount_paths and mount_paths[0] else TARGET_MOUNT_PATH


# Restores run as Jobs (a RestoreSession naming a PersistentVolumeClaim with the pvc-restore Task, or
# creating claims from ``spec.target.volumeClaimTemplates``): one Job per host, the claims mounted in it
# (a named claim as TARGET_VOLUME at target_mount_path(), as the backup Job mounts it).
PVC_RESTORE_TASKS: Final = frozenset({"pvc-restore"})
RESTORE_JOB_PREFIX: Final = "stash-restore-"
RESTORE_JOB_CONTAINER: Final = "stash-restore"
POD_ORDINAL_VARIABLE: Final = "${POD_ORDINAL}"
"""Replaced by each ordinal (0 .. replicas-1) in a volumeClaimTemplate's name, as Stash does."""


def cronjob_name(backup_configuration: str) -> str:
    """Name of the CronJob that triggers a BackupConfiguration."""
    return f"{CRONJOB_PREFIX}{backup_configuration}"


def lease_name(kind: str, name: str, purpose: str) -> str:
    """Name of the Lease that serialises a workload's backup or restore: ``lock-<kind>-<name>-<purpose>``."""
    if purpose not in ("backup", "restore"):
        raise ValueError(f"lease purpose must be 'backup' or 'restore', not {purpose!r}")
    return f"lock-{kind.lower()}-{name}-{purpose}"


# Event sources as Stash names them (the From column of `kubectl describe`).
COMPONENT_TRIGGER: Final = "Backup Triggering CronJob"
COMPONENT_BACKUP_SESSION: Final = "BackupSession Controller"
COMPONENT_BACKUP_CONFIGURATION: Final = "BackupConfiguration Controller"
COMPONENT_RESTORE_SESSION: Final = "RestoreSession Controller"
COMPONENT_REPOSITORY: Final = "Repository Controller"
COMPONENT_AUTO_BACKUP: Final = "Auto Backup Controller"
COMPONENT_WORKLOAD: Final = "Workload Controller"
COMPONENT_RESTORE_DRILL: Final = "Restore Drill"
