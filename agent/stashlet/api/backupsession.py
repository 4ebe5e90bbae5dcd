"""The BackupSession kind (``stash.appscode.com/v1beta1``): one run of a backup, and its results."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.common import Bool, Condition, Int32, Int64, KubeModel, TargetRef, Time, V1Beta1Object


class BackupSessionPhase(StrEnum):
    """The phase of a whole BackupSession."""

    PENDING = "Pending"
    SKIPPED = "Skipped"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class TargetPhase(StrEnum):
    """The backup phase of one target of a session."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class HostBackupPhase(StrEnum):
    """The state of one host's backup: Running while restic works (stashlet), then the result."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class BackupProgress(KubeModel):
    """Live progress of a running host backup, from restic's JSON status messages (stashlet)."""

    percent_done: float | None = Field(default=None, description="Fraction done, 0 to 1.")
    total_files: Int64 | None = Field(default=None, description="Files found so far.")
    files_done: Int64 | None = Field(default=None, description="Files processed so far.")
    total_bytes: Int64 | None = Field(default=None, description="Bytes found so far.")
    bytes_done: Int64 | None = Field(default=None, description="Bytes processed so far.")
    seconds_elapsed: Int64 | None = Field(default=None, description="Seconds since the backup started.")
    seconds_remaining: Int64 | None = Field(default=None, description="restic's estimate of the rest.")
    error_count: Int64 | None = Field(default=None, description="Files that could not be read so far.")


class BackupInvokerRef(KubeModel):
    """The BackupConfiguration (or BackupBatch) that invoked a session."""

    api_group: str | None = Field(default=None, description="API group of the invoker: stash.appscode.com.")
    kind: str = Field(description="Kind of the invoker, e.g. BackupConfiguration.")
    name: str = Field(description="Name of the invoker.")


class BackupSessionSpec(KubeModel):
    """Which invoker this session runs."""

    invoker: BackupInvokerRef = Field(description="The BackupConfiguration that invoked this session.")
    retry_left: Int32 | None = Field(default=None, description="Retries left if this session fails.")


class FileStats(KubeModel):
    """File counts of one snapshot, as restic reports them."""

    total_files: Int64 | None = Field(default=None, description="Files backed up.")
    new_files: Int64 | None = Field(default=None, description="Files new since the last backup.")
    modified_files: Int64 | None = Field(default=None, description="Files modified since the last backup.")
    unmodified_files: Int64 | None = Field(default=None, description="Files unchanged since the last backup.")


class SnapshotStats(KubeModel):
    """Statistics of one snapshot a host took in this session."""

    name: str | None = Field(default=None, description="Name of the snapshot.")
    path: str | None = Field(default=None, description="The directory backed up in this snapshot.")
    total_size: str | None = Field(default=None, description="Size of the data in the directory.")
    uploaded: str | None = Field(default=None, description="Size of the data uploaded to the backend.")
    processing_time: str | None = Field(default=None, description="Time taken to process the data.")
    file_stats: FileStats | None = Field(default=None, description="File counts of the snapshot.")


class HostBackupStats(KubeModel):
    """The backup result of one host (a replica, an ordinal or a node)."""

    hostname: str | None = Field(default=None, description="Name of the host, e.g. host-0.")
    phase: HostBackupPhase | None = Field(default=None, description="Succeeded or Failed.")
    snapshots: list[SnapshotStats] | None = Field(default=None, description="Snapshots taken by this host.")
    duration: str | None = Field(default=None, description="Time taken to back up this host.")
    error: str | None = Field(default=None, description="Why the backup failed.")
    reason: str | None = Field(default=None, description="Machine-readable failure reason (stashlet).")
    pod: str | None = Field(
        default=None, description="The pod whose agent ran this host's backup (stashlet)."
    )
    progress: BackupProgress | None = Field(default=None, description="Live progress while Running.")


class BackupTargetStatus(KubeModel):
    """The backup state of one target of a session."""

    ref: TargetRef | None = Field(default=None, description="The target.")
    total_hosts: Int32 | None = Field(default=None, description="Number of hosts that back up this target.")
    phase: TargetPhase | None = Field(default=None, description="Backup phase of this target.")
    stats: list[HostBackupStats] | None = Field(default=None, description="Results of each host.")
    pre_backup_actions: list[str] | None = Field(default=None, description="Steps to run before the backup.")
    post_backup_actions: list[str] | None = Field(default=None, description="Steps to run after the backup.")
    conditions: list[Condition] | None = Field(
        default=None, description="State of each step for this target."
    )


class BackupSessionStatus(KubeModel):
    """Progress and results of a session."""

    phase: BackupSessionPhase | None = Field(default=None, description="Overall phase of the session.")
    session_duration: str | None = Field(default=None, description="Total time the session took.")
    session_deadline: Time | None = Field(default=None, description="The session fails if not done by then.")
    targets: list[BackupTargetStatus] | None = Field(default=None, description="State of each target.")
    conditions: list[Condition] | None = Field(default=None, description="State of each session-wide step.")
    retried: Bool | None = Field(default=None, description="Whether this failed session was retried.")
    next_retry: Time | None = Field(default=None, description="When the failed session is retried.")


class BackupSession(V1Beta1Object):
    """One backup run of a BackupConfiguration."""

    kind: Literal["BackupSession"] = names.KIND_BACKUP_SESSION
    spec: BackupSessionSpec = Field(description="The invoker of this session.")
    status: BackupSessionStatus | None = Field(default=None, description="Progress and results.")
