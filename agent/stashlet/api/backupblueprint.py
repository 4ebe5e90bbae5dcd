"""The BackupBlueprint kind (``stash.appscode.com/v1beta1``, cluster-scoped): auto-backup templates.

A blueprint holds a Repository spec and a BackupConfiguration template; string fields may use variables
such as ``${TARGET_NAMESPACE}``, ``${TARGET_KIND}`` and ``${TARGET_NAME}``, resolved per workload.
"""

from typing import Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.backend import Backend
from stashlet.api.common import (
    Bool,
    EmptyDirSettings,
    FreeForm,
    Int32,
    KubeModel,
    KubeObject,
    RuntimeSettings,
    TaskRef,
)
from stashlet.api.repository import RetentionPolicy, UsagePolicy


class BackupBlueprintSpec(KubeModel):
    """The Repository part (backend, usage policy, namespace) and the BackupConfiguration template."""

    # Repository blueprint.
    backend: Backend = Field(description="Backend of the Repositories created from this blueprint.")
    wipe_out: Bool | None = Field(
        default=None, description="Delete the backed up data when a created Repository is deleted."
    )
    usage_policy: UsagePolicy | None = Field(
        default=None, description="The namespaces allowed to use the created Repositories."
    )
    repo_namespace: str | None = Field(
        default=None, description="Namespace for the created Repositories (default: the workload's)."
    )
    backup_namespace: str | None = Field(
        default=None, description="Namespace for the created backup objects (default: the workload's)."
    )
    # BackupConfiguration blueprint.
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


class BackupBlueprint(KubeObject):
    """A cluster-wide template for a workload's Repository and BackupConfiguration."""

    api_version: Literal["stash.appscode.com/v1beta1"] = "stash.appscode.com/v1beta1"
    kind: Literal["BackupBlueprint"] = names.KIND_BACKUP_BLUEPRINT
    spec: BackupBlueprintSpec = Field(description="The Repository and BackupConfiguration templates.")
