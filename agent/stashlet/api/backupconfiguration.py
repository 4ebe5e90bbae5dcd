"""The BackupConfiguration kind (``stash.appscode.com/v1beta1``): what to back up, where and when."""

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.common import (
    Bool,
    CelRule,
    Condition,
    Driver,
    Duration,
    EmptyDirSettings,
    FreeForm,
    Int32,
    Int64,
    KubeModel,
    ObjectReference,
    PositiveDuration,
    RuntimeSettings,
    SchemaLimits,
    TargetRef,
    TaskRef,
    V1Beta1Object,
    VolumeMount,
)
from stashlet.api.repository import KEEPS_NOTHING_MESSAGE, RetentionPolicy, keeps_something_rule

REPOSITORY_UNLESS_SNAPSHOTTER = CelRule(
    rule="has(self.repository) || (has(self.driver) && self.driver == 'VolumeSnapshotter')",
    message="spec.repository is required unless spec.driver is VolumeSnapshotter",
)
"""Restic needs a Repository; only the VolumeSnapshotter driver works without one."""

RETENTION_KEEPS_SOMETHING = CelRule(
    rule=f"!has(self.retentionPolicy) || {keeps_something_rule('self.retentionPolicy')}",
    message=KEEPS_NOTHING_MESSAGE,
    field_path=".retentionPolicy",
)
"""restic's ``forget`` refuses a policy without a rule (BackupBlueprints make Restic configurations)."""

RESTIC_RETENTION_KEEPS_SOMETHING = RETENTION_KEEPS_SOMETHING._replace(
    rule="(has(self.driver) && self.driver == 'VolumeSnapshotter') || " + RETENTION_KEEPS_SOMETHING.rule,
    message=KEEPS_NOTHING_MESSAGE + "; only the VolumeSnapshotter driver keeps every snapshot without one",
)
"""The same for a BackupConfiguration: the VolumeSnapshotter driver takes a policy without a rule as
Stash does (it removes nothing)."""


class DriverSpec(KubeModel):
    """The driver of a backup or a restore, and the rule that Restic needs the spec's ``repository``.

    BackupConfiguration's and RestoreSession's specs start from this; each declares its ``repository``
    (where the snapshots go, or come from) in its own words.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (REPOSITORY_UNLESS_SNAPSHOTTER,)

    driver: Driver | None = Field(default=None, description="Restic (default) or VolumeSnapshotter.")


TARGET_PATH_MESSAGE = (
    "must be an absolute path: restic records a snapshot's paths absolute, and the retention policy finds "
    "the target's snapshots by them"
)
TargetPath = Annotated[
    str, SchemaLimits(max_length=4096), CelRule("self.startsWith('/')", TARGET_PATH_MESSAGE)
]
"""A path to back up, in the agent's container (``/source/data``)."""


class BackupTarget(KubeModel):
    """The object to back up, and which of its data."""

    alias: str | None = Field(
        default=None, description="Identifier of the backed up data in the repository (the restic host)."
    )
    ref: TargetRef | None = Field(default=None, description="The workload or other object to back up.")
    paths: list[TargetPath] | None = Field(default=None, description="Absolute file paths to back up.")
    exclude: list[str] | None = Field(default=None, description="Patterns of files to leave out (Restic).")
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, description="Volumes of the target mounted into the stash container."
    )
    replicas: Int32 | None = Field(default=None, description="Number of replicas whose data is backed up.")
    snapshot_class_name: str | None = Field(
        default=None, description="VolumeSnapshotClass to use with the VolumeSnapshotter driver."
    )
    args: list[str] | None = Field(default=None, description="Extra arguments for the backup driver.")


def target_path_problems(target: BackupTarget | None) -> list[str]:
    """``spec.target.paths`` entries that are not absolute (in an object stored before the CRD's rule)."""
    paths = target.paths if target is not None else None
    return [
        f"spec.target.paths[{i}]: {path!r} {TARGET_PATH_MESSAGE}"
        for i, path in enumerate(paths or [])
        if not path.startswith("/")
    ]


class BackupHooks(KubeModel):
    """Actions run around a backup session (``prober.Handler``: exec, httpGet, httpPost, tcpSocket)."""

    pre_backup: FreeForm | None = Field(default=None, description="Run before the backup starts.")
    post_backup: FreeForm | None = Field(default=None, description="Run after the backup completes.")


class RetryConfig(KubeModel):
    """How a failed backup session is retried."""

    max_retry: Int32 | None = Field(default=None, description="Maximum number of retries.")
    delay: Duration | None = Field(
        default=None, description="Wait before the next retry, a Go duration, e.g. 5m (none: at once)."
    )


class BackupInvokerPhase(StrEnum):
    """The phase of a BackupConfiguration."""

    READY = "Ready"
    NOT_READY = "NotReady"
    INVALID = "Invalid"


class BackupConfigurationTemplateSpec(KubeModel):
    """The part of a BackupConfiguration's spec that a BackupBlueprint carries as its template.

    Auto-backup fills these fields of the BackupConfiguration it makes for a workload from the blueprint's
    (with the blueprint's variables resolved).
    """

    schedule: str | None = Field(default=None, description="Cron schedule of the backup sessions.")
    task: TaskRef | None = Field(
        default=None, description="The Task that takes the backup (not for workloads)."
    )
    retention_policy: RetentionPolicy = Field(description="Which old snapshots to keep.")
    runtime_settings: RuntimeSettings | None = Field(
        default=None, description="Settings of the stash sidecar or backup job."
    )
    temp_dir: EmptyDirSettings | None = Field(
        default=None, description="The emptyDir used for temporary files and restic's cache."
    )
    interim_volume_template: FreeForm | None = Field(
        default=None, description="PVC template holding data before upload (job model only)."
    )
    backup_history_limit: Int32 | None = Field(
        default=None, description="Number of finished BackupSessions to keep (default 1)."
    )
    hooks: BackupHooks | None = Field(default=None, description="Actions run before and after a backup.")
    time_out: PositiveDuration | None = Field(
        default=None, description="Longest a backup may take before it is considered failed, e.g. 30m."
    )
    retry_config: RetryConfig | None = Field(default=None, description="How a failed backup is retried.")


class BackupConfigurationSpec(DriverSpec, BackupConfigurationTemplateSpec):
    """What to back up, into which Repository, on which schedule, and what to keep."""

    cel_rules = (REPOSITORY_UNLESS_SNAPSHOTTER, RESTIC_RETENTION_KEEPS_SOMETHING)

    repository: ObjectReference | None = Field(
        default=None, description="The Repository the snapshots go to."
    )
    paused: Bool | None = Field(default=None, description="When true, no backup is taken.")
    target: BackupTarget | None = Field(default=None, description="The object to back up.")


class BackupConfigurationStatus(KubeModel):
    """Whether the backup is set up."""

    phase: BackupInvokerPhase | None = Field(default=None, description="Ready, NotReady or Invalid.")
    observed_generation: Int64 | None = Field(default=None, description="The generation last observed.")
    conditions: list[Condition] | None = Field(default=None, description="State of each setup step.")


class BackupConfiguration(V1Beta1Object):
    """A scheduled backup of one target into one Repository."""

    kind: Literal["BackupConfiguration"] = names.KIND_BACKUP_CONFIGURATION
    spec: BackupConfigurationSpec = Field(description="What, where, when, and what to keep.")
    status: BackupConfigurationStatus | None = Field(default=None, description="Setup state.")
