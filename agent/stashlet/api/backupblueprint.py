"""The BackupBlueprint kind (``stash.appscode.com/v1beta1``, cluster-scoped): auto-backup templates.

A blueprint holds a Repository spec and a BackupConfiguration template; string fields may use variables
such as ``${TARGET_NAMESPACE}``, ``${TARGET_KIND}`` and ``${TARGET_NAME}``, resolved per workload.
"""

from typing import Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.backend import Backend
from stashlet.api.backupconfiguration import RETENTION_KEEPS_SOMETHING, BackupConfigurationTemplateSpec
from stashlet.api.common import Bool, V1Beta1Object
from stashlet.api.repository import UsagePolicy


class BackupBlueprintSpec(BackupConfigurationTemplateSpec):
    """The Repository part (backend, usage policy, namespace) and the BackupConfiguration template."""

    cel_rules = (RETENTION_KEEPS_SOMETHING,)

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


class BackupBlueprint(V1Beta1Object):
    """A cluster-wide template for a workload's Repository and BackupConfiguration."""

    kind: Literal["BackupBlueprint"] = names.KIND_BACKUP_BLUEPRINT
    spec: BackupBlueprintSpec = Field(description="The Repository and BackupConfiguration templates.")
