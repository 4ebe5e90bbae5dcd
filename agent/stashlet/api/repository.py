"""The Repository kind (``stash.appscode.com/v1alpha1``) and the policies that come with it."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.backend import Backend
from stashlet.api.common import (
    Bool,
    CelRule,
    Int64,
    KubeModel,
    KubeObject,
    LabelSelector,
    SchemaDefault,
    Time,
    TypedObjectReference,
)


class FromNamespaces(StrEnum):
    """Which namespaces may use a Repository."""

    ALL = "All"
    SAME = "Same"
    SELECTOR = "Selector"


class AllowedNamespaces(KubeModel):
    """The namespaces allowed to refer to a Repository."""

    cel_rules = (
        CelRule(
            rule="!has(self.from) || self.from != 'Selector' || has(self.selector)",
            message="allowedNamespaces.selector is required when allowedNamespaces.from is Selector",
        ),
    )

    from_: Annotated[FromNamespaces, SchemaDefault(FromNamespaces.SAME.value)] | None = Field(
        default=None,
        alias="from",
        description="All namespaces, the Same namespace only, or those the Selector matches.",
    )
    selector: LabelSelector | None = Field(
        default=None, description="Namespaces allowed when from is Selector."
    )


class UsagePolicy(KubeModel):
    """Who may use a Repository; without one, only its own namespace."""

    allowed_namespaces: AllowedNamespaces | None = Field(
        default=None, description="The namespaces allowed to refer to this Repository."
    )


class RetentionPolicy(KubeModel):
    """Which snapshots to keep (restic ``forget`` flags), and whether to prune unreferenced data."""

    name: str = Field(description="Name of the policy.")
    keep_last: Int64 | None = Field(default=None, description="Keep the n most recent snapshots.")
    keep_hourly: Int64 | None = Field(default=None, description="Keep the last snapshot of the n last hours.")
    keep_daily: Int64 | None = Field(default=None, description="Keep the last snapshot of the n last days.")
    keep_weekly: Int64 | None = Field(default=None, description="Keep the last snapshot of the n last weeks.")
    keep_monthly: Int64 | None = Field(
        default=None, description="Keep the last snapshot of the n last months."
    )
    keep_yearly: Int64 | None = Field(default=None, description="Keep the last snapshot of the n last years.")
    keep_tags: list[str] | None = Field(default=None, description="Keep snapshots with all of these tags.")
    prune: Bool = Field(description="Remove data no snapshot refers to any more.")
    dry_run: Bool | None = Field(default=None, description="Only report what would be removed.")


class RepositorySpec(KubeModel):
    """Where the snapshots are stored and who may use them."""

    backend: Backend = Field(description="The storage where backed up snapshots are stored.")
    wipe_out: Bool | None = Field(
        default=None, description="Delete the backed up data from the backend when the Repository is deleted."
    )
    usage_policy: UsagePolicy | None = Field(
        default=None, description="The namespaces allowed to use this Repository (default: its own)."
    )


class RepositoryStatus(KubeModel):
    """The state of the repository after the last backup."""

    observed_generation: Int64 | None = Field(default=None, description="The generation last observed.")
    first_backup_time: Time | None = Field(default=None, description="When the first backup was taken.")
    last_backup_time: Time | None = Field(default=None, description="When the latest backup was taken.")
    integrity: Bool | None = Field(default=None, description="Result of the last integrity check.")
    total_size: str | None = Field(default=None, description="Size of the repository after the last backup.")
    snapshot_count: Int64 | None = Field(default=None, description="Number of snapshots in the repository.")
    snapshots_removed_on_last_cleanup: Int64 | None = Field(
        default=None, description="Snapshots removed by the retention policy on the last backup."
    )
    references: list[TypedObjectReference] | None = Field(
        default=None, description="Objects that use this Repository."
    )


class Repository(KubeObject):
    """A restic repository in a backend."""

    api_version: Literal["stash.appscode.com/v1alpha1"] = "stash.appscode.com/v1alpha1"
    kind: Literal["Repository"] = names.KIND_REPOSITORY
    spec: RepositorySpec = Field(description="Backend and usage policy of the repository.")
    status: RepositoryStatus | None = Field(default=None, description="State of the repository.")
