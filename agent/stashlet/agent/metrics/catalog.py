"""The catalogue of Stash's gauges: names, help texts, label names.

Learnt from Stash's ``pkg/restic/metrics.go`` (``Namespace: "stash"``, a subsystem, a name); each gauge
is exposed under both ``stash_`` and ``stash_appscode_com_`` (``PREFIXES``), so dashboards and alerts
written for either keep working. Two help texts differ from Stash's on purpose: Stash gives both "last
success time" gauges the duration's text, ours say what they hold. Two gauges are not Stash's:
``repository_last_backup_time_seconds`` (the Repository's LAST-SUCCESSFUL-BACKUP column) and
``repository_last_check_time_seconds`` (its ``lastCheckTime``: the integrity gauge is as old as that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PREFIXES: Final = ("stash", "stash_appscode_com")
"""Both name prefixes every gauge is exposed under."""

INVOKER_LABELS: Final = ("invoker_kind", "invoker_name", "namespace", "driver", "repository")
HOST_LABEL: Final = "host"
GROUPING_KEY_HOST: Final = "hostname"


@dataclass(frozen=True)
class MetricSpec:
    """One Stash gauge: subsystem, name and help text; exposed once per prefix."""

    subsystem: str
    name: str
    help: str

    @property
    def names(self) -> tuple[str, ...]:
        """The full names, one per prefix (``stash_backup_session_success``, ...)."""
        return tuple(f"{prefix}_{self.subsystem}_{self.name}" for prefix in PREFIXES)


# Backup session.
BACKUP_SESSION_SUCCESS = MetricSpec(
    "backup", "session_success", "Indicates whether the entire backup session was succeeded or not"
)
BACKUP_SESSION_DURATION = MetricSpec(
    "backup", "session_duration_seconds", "Indicates total time taken to complete the entire backup session"
)
BACKUP_TARGET_COUNT = MetricSpec(
    "backup",
    "target_count_total",
    "Indicates the total number of target that was backed up in this backup session",
)
BACKUP_LAST_SUCCESS = MetricSpec(
    "backup",
    "last_success_time_seconds",
    "Indicates the time (in unix epoch) when the last backup session succeeded",
)
# Backup target.
BACKUP_TARGET_SUCCESS = MetricSpec(
    "backup", "target_success", "Indicates whether the backup for a target has succeeded or not"
)
BACKUP_TARGET_HOST_COUNT = MetricSpec(
    "backup",
    "target_host_count_total",
    "Indicates the total number of hosts that was backed up for this target",
)
BACKUP_TARGET_LAST_SUCCESS = MetricSpec(
    "backup",
    "target_last_success_time_seconds",
    "Indicates the time (in unix epoch) when the last backup of this target succeeded",
)
# Backup host.
HOST_BACKUP_SUCCESS = MetricSpec(
    "backup", "host_backup_success", "Indicates whether the backup for a host succeeded or not"
)
HOST_BACKUP_DURATION = MetricSpec(
    "backup",
    "host_backup_duration_seconds",
    "Indicates total time taken to complete the backup process for a host",
)
HOST_DATA_SIZE = MetricSpec(
    "backup", "host_data_size_bytes", "Total size of the target data to backup for a host (in bytes)"
)
HOST_DATA_UPLOADED = MetricSpec(
    "backup", "host_data_uploaded_bytes", "Amount of data uploaded to the repository for a host (in bytes)"
)
HOST_DATA_PROCESSING_TIME = MetricSpec(
    "backup", "host_data_processing_time_seconds", "Total time taken to process the target data for a host"
)
HOST_FILES_TOTAL = MetricSpec(
    "backup", "host_files_total", "Total number of files that has been backed up for a host"
)
HOST_FILES_NEW = MetricSpec(
    "backup", "host_files_new", "Total number of new files that has been created since last backup for a host"
)
HOST_FILES_MODIFIED = MetricSpec(
    "backup",
    "host_files_modified",
    "Total number of files that has been modified since last backup for a host",
)
HOST_FILES_UNMODIFIED = MetricSpec(
    "backup",
    "host_files_unmodified",
    "Total number of files that has not been changed since last backup for a host",
)
# Repository.
REPOSITORY_INTEGRITY = MetricSpec(
    "repository", "integrity", "Result of repository integrity check after last backup"
)
REPOSITORY_SIZE = MetricSpec(
    "repository", "size_bytes", "Indicates size of repository after last backup (in bytes)"
)
REPOSITORY_SNAPSHOT_COUNT = MetricSpec(
    "repository", "snapshot_count", "Indicates number of snapshots stored in the repository"
)
REPOSITORY_SNAPSHOT_CLEANED = MetricSpec(
    "repository",
    "snapshot_cleaned",
    "Indicates number of old snapshots cleaned up according to retention policy on last backup session",
)
# Not in Stash: the Repository's LAST-SUCCESSFUL-BACKUP column as a gauge.
REPOSITORY_LAST_BACKUP = MetricSpec(
    "repository",
    "last_backup_time_seconds",
    "Indicates the time (in unix epoch) of the latest backup in the repository",
)
# Not in Stash: when ``restic check`` last reached its verdict (the Repository's ``lastCheckTime``); checks
# run on their own cadence, so the integrity gauge is as old as this.
REPOSITORY_LAST_CHECK = MetricSpec(
    "repository",
    "last_check_time_seconds",
    "Indicates the time (in unix epoch) restic check last ran to its verdict on the repository",
)
# Restore session.
RESTORE_SESSION_SUCCESS = MetricSpec(
    "restore", "session_success", "Indicates whether the entire restore session was succeeded or not"
)
RESTORE_SESSION_DURATION = MetricSpec(
    "restore",
    "session_duration_seconds",
    "Indicates the total time taken to complete the entire restore session",
)
RESTORE_TARGET_COUNT = MetricSpec(
    "restore",
    "target_count_total",
    "Indicates the total number of targets that was restored in this restore session",
)
# Restore target.
RESTORE_TARGET_SUCCESS = MetricSpec(
    "restore", "target_success", "Indicates whether the restore for a target has succeeded or not"
)
RESTORE_TARGET_HOST_COUNT = MetricSpec(
    "restore",
    "target_host_count_total",
    "Indicates the total number of hosts that was restored for this restore target",
)
# Restore host.
HOST_RESTORE_SUCCESS = MetricSpec(
    "restore", "host_restore_success", "Indicates whether the restore process was succeeded for a host"
)
HOST_RESTORE_DURATION = MetricSpec(
    "restore",
    "host_restore_duration_seconds",
    "Indicates the total time taken to complete the restore process for a host",
)
# Not in Stash: restore drills (``stashlet.dev/restore-drill-schedule``), pushed under the configuration's
# job.
RESTORE_DRILL_SUCCESS = MetricSpec(
    "restore_drill",
    "success",
    "Indicates whether the last restore drill restored the latest snapshots completely (and its command "
    "passed)",
)
RESTORE_DRILL_LAST_VERIFIED = MetricSpec(
    "restore_drill",
    "last_verified_time_seconds",
    "Indicates the time (in unix epoch) when a restore drill last passed",
)
RESTORE_DRILL_FILES_CHECKED = MetricSpec(
    "restore_drill",
    "files_checked",
    "Indicates the number of files the last restore drill restored and checked",
)
RESTORE_DRILL_DURATION = MetricSpec(
    "restore_drill", "duration_seconds", "Indicates the total time taken by the last restore drill"
)
DRILL_METRICS: Final = (
    RESTORE_DRILL_SUCCESS,
    RESTORE_DRILL_LAST_VERIFIED,
    RESTORE_DRILL_FILES_CHECKED,
    RESTORE_DRILL_DURATION,
)
"""The restore drill's gauges (stashlet's own: not in :data:`ALL_METRICS`, which is Stash's catalogue)."""

ALL_METRICS: Final = (
    BACKUP_SESSION_SUCCESS,
    BACKUP_SESSION_DURATION,
    BACKUP_TARGET_COUNT,
    BACKUP_LAST_SUCCESS,
    BACKUP_TARGET_SUCCESS,
    BACKUP_TARGET_HOST_COUNT,
    BACKUP_TARGET_LAST_SUCCESS,
    HOST_BACKUP_SUCCESS,
    HOST_BACKUP_DURATION,
    HOST_DATA_SIZE,
    HOST_DATA_UPLOADED,
    HOST_DATA_PROCESSING_TIME,
    HOST_FILES_TOTAL,
    HOST_FILES_NEW,
    HOST_FILES_MODIFIED,
    HOST_FILES_UNMODIFIED,
    REPOSITORY_INTEGRITY,
    REPOSITORY_SIZE,
    REPOSITORY_SNAPSHOT_COUNT,
    REPOSITORY_SNAPSHOT_CLEANED,
    REPOSITORY_LAST_BACKUP,
    REPOSITORY_LAST_CHECK,
    RESTORE_SESSION_SUCCESS,
    RESTORE_SESSION_DURATION,
    RESTORE_TARGET_COUNT,
    RESTORE_TARGET_SUCCESS,
    RESTORE_TARGET_HOST_COUNT,
    HOST_RESTORE_SUCCESS,
    HOST_RESTORE_DURATION,
)


def metric_names() -> list[str]:
    """Every gauge name stashlet can push, both prefixes."""
    return [name for spec in ALL_METRICS for name in spec.names]
