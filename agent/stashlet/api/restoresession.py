"""The RestoreSession kind (``stash.appscode.com/v1beta1``): restore a Repository's data into a target."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.backupconfiguration import DriverSpec
from stashlet.api.common import (
    Condition,
    EmptyDirSettings,
    FreeForm,
    Int32,
    KubeModel,
    ObjectReference,
    PositiveDuration,
    RuntimeSettings,
    TargetRef,
    TaskRef,
    Time,
    V1Beta1Object,
    VolumeMount,
)


class RestorePhase(StrEnum):
    """The phase of a whole RestoreSession."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"
    INVALID = "Invalid"


class HostRestorePhase(StrEnum):
    """The restore phase of one host."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RUNNING = "Running"
    UNKNOWN = "Unknown"


class Rule(KubeModel):
    """What to restore into which hosts."""

    target_hosts: list[str] | None = Field(
        default=None, description="Hosts this rule applies to; empty for every host without a rule."
    )
    source_host: str | None = Field(
        default=None, description="Host whose backed up data is restored; empty for the host itself."
    )
    snapshots: list[str] | None = Field(
        default=None, description="Snapshots to restore (instead of paths); latest when empty."
    )
    paths: list[str] | None = Field(default=None, description="Paths to restore from the latest snapshot.")
    include: list[str] | None = Field(default=None, description="Patterns of files to restore (Restic).")
    exclude: list[str] | None = Field(default=None, description="Patterns of files not to restore (Restic).")


class RestoreTarget(KubeModel):
    """The object the data is restored into."""

    alias: str | None = Field(default=None, description="Identifier the data was backed up under.")
    ref: TargetRef | None = Field(default=None, description="The workload or other object to restore into.")
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, description="Volumes of the target mounted into the stash container."
    )
    replicas: Int32 | None = Field(default=None, description="Number of replicas to restore.")
    volume_claim_templates: list[FreeForm] | None = Field(
        default=None, description="PVCs to create and restore into."
    )
    rules: list[Rule] | None = Field(default=None, description="What to restore into which hosts.")
    args: list[str] | None = Field(default=None, description="Extra arguments for the restore driver.")


class RestoreHooks(KubeModel):
    """Actions run around a restore (``prober.Handler``: exec, httpGet, httpPost, tcpSocket)."""

    pre_restore: FreeForm | None = Field(default=None, description="Run before the restore starts.")
    post_restore: FreeForm | None = Field(default=None, description="Run after the restore completes.")


class RestoreSessionSpec(DriverSpec):
    """What to restore, from which Repository, into which target."""

    repository: ObjectReference | None = Field(
        default=None, description="The Repository the data is restored from."
    )
    task: TaskRef | None = Field(default=None, description="The Task that restores (not for workloads).")
    target: RestoreTarget | None = Field(default=None, description="The object to restore into.")
    rules: list[Rule] | None = Field(default=None, description="Deprecated: use target.rules.")
    runtime_settings: RuntimeSettings | None = Field(
        default=None, description="Settings of the restore init-container or job."
    )
    temp_dir: EmptyDirSettings | None = Field(
        default=None, description="The emptyDir used for temporary files and restic's cache."
    )
    interim_volume_template: FreeForm | None = Field(
        default=None, description="PVC template holding data before it is inserted (job model only)."
    )
    hooks: RestoreHooks | None = Field(default=None, description="Actions run before and after the restore.")
    time_out: PositiveDuration | None = Field(
        default=None, description="Longest the restore may take before it is considered failed, e.g. 30m."
    )


class HostRestoreStats(KubeModel):
    """The restore result of one host."""

    hostname: str | None = Field(default=None, description="Name of the host, e.g. host-0.")
    phase: HostRestorePhase | None = Field(default=None, description="Restore phase of this host.")
    duration: str | None = Field(default=None, description="Time taken to restore this host.")
    error: str | None = Field(default=None, description="Why the restore failed.")


class RestoreSessionStatus(KubeModel):
    """Progress and results of a restore."""

    phase: RestorePhase | None = Field(default=None, description="Overall phase of the restore.")
    total_hosts: Int32 | None = Field(default=None, description="Number of hosts that restore.")
    session_duration: str | None = Field(default=None, description="Total time the restore took.")
    session_deadline: Time | None = Field(default=None, description="The restore fails if not done by then.")
    stats: list[HostRestoreStats] | None = Field(default=None, description="Results of each host.")
    conditions: list[Condition] | None = Field(default=None, description="State of each step.")


class RestoreSession(V1Beta1Object):
    """One restore of a Repository's data into a target."""

    kind: Literal["RestoreSession"] = names.KIND_RESTORE_SESSION
    spec: RestoreSessionSpec = Field(description="What to restore, from where, into what.")
    status: RestoreSessionStatus | None = Field(default=None, description="Progress and results.")
