"""The Repository kind (``stash.appscode.com/v1alpha1``) and the policies that come with it."""

import re
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field

from stashlet.api import names
from stashlet.api.backend import Backend
from stashlet.api.common import (
    Bool,
    CelRule,
    Condition,
    Int64,
    KubeModel,
    KubeObject,
    LabelSelector,
    SchemaDefault,
    SchemaLimits,
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


KEEP_COUNTS: Final = ("keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly", "keepYearly")
"""The counting rules of a retention policy, as the wire spells them (restic's ``--keep-*`` counts)."""

KEEP_COUNT_MESSAGE: Final = (
    "must be a count of snapshots to keep, -1 to keep them all (restic's 'unlimited') or 0 for no such rule; "
    "restic refuses any other negative count"
)
KeepCount = Annotated[Int64, CelRule("self >= -1", KEEP_COUNT_MESSAGE)]
"""A ``keep*`` count as restic reads it: n > 0 keeps n, -1 keeps all, 0 (or unset) is no rule."""

KEEP_TAG_PATTERN: Final = r"^[^\x00\n]*[^\x00\t\n\f\r ][^\x00\n]*$"
"""A ``keepTags`` entry: not blank, on one line, no NUL (RE2 and Python alike)."""

KEEP_TAG_MESSAGE: Final = "must name tags: not blank, without a newline or NUL"
KeepTag = Annotated[
    str, SchemaLimits(max_length=256), CelRule(f"self.matches(r'{KEEP_TAG_PATTERN}')", KEEP_TAG_MESSAGE)
]
KEEP_TAGS_LIMITS: Final = SchemaLimits(max_items=100)
"""Bounds that let the API server afford the tags' rule (restic's tags are short; 100 lists is plenty)."""


def keeps_something_rule(policy: str) -> str:
    """CEL that is true when the retention policy at ``policy`` sets a rule that keeps snapshots (a count
    other than 0 or a tag); restic's ``forget`` refuses to run without one."""
    counts = [f"(has({policy}.{count}) && {policy}.{count} != 0)" for count in KEEP_COUNTS]
    return " || ".join([*counts, f"(has({policy}.keepTags) && size({policy}.keepTags) > 0)"])


KEEPS_NOTHING_MESSAGE: Final = (
    "keeps no snapshot: set keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly or keepYearly to a "
    "count other than 0, or keepTags (restic's forget refuses a policy without one)"
)


class RetentionPolicy(KubeModel):
    """Which snapshots to keep (restic ``forget`` flags), and whether to prune unreferenced data.

    A count keeps that many snapshots, -1 keeps every snapshot in its bucket (restic's ``unlimited``), 0 or
    unset is no rule; at least one rule must be set (with the Restic driver: :func:`keeps_something_rule`).
    """

    name: str = Field(description="Name of the policy.")
    keep_last: KeepCount | None = Field(
        default=None, description="Keep the n most recent snapshots (-1: all, 0: no such rule)."
    )
    keep_hourly: KeepCount | None = Field(
        default=None, description="Keep the last snapshot of the n last hours (-1: of every hour)."
    )
    keep_daily: KeepCount | None = Field(
        default=None, description="Keep the last snapshot of the n last days (-1: of every day)."
    )
    keep_weekly: KeepCount | None = Field(
        default=None, description="Keep the last snapshot of the n last weeks (-1: of every week)."
    )
    keep_monthly: KeepCount | None = Field(
        default=None, description="Keep the last snapshot of the n last months (-1: of every month)."
    )
    keep_yearly: KeepCount | None = Field(
        default=None, description="Keep the last snapshot of the n last years (-1: of every year)."
    )
    keep_tags: Annotated[list[KeepTag], KEEP_TAGS_LIMITS] | None = Field(
        default=None,
        description='Keep the snapshots that carry any entry\'s tags (an entry "a,b" needs both).',
    )
    prune: Bool = Field(description="Remove data no snapshot refers to any more.")
    dry_run: Bool | None = Field(default=None, description="Only report what would be removed.")


def retention_problems(
    policy: RetentionPolicy, where: str = "spec.retentionPolicy", *, needs_rule: bool = True
) -> list[str]:
    """What restic would refuse in ``policy`` (the CRD's rules, for an object stored before they existed),
    each naming the field under ``where``; ``needs_rule`` is False where a policy without a rule keeps
    everything (the VolumeSnapshotter driver)."""
    wire = policy.to_dict()
    problems = [
        f"{where}.{count}: {wire[count]} {KEEP_COUNT_MESSAGE}"
        for count in KEEP_COUNTS
        if isinstance(wire.get(count), int) and wire[count] < -1
    ]
    problems += [
        f"{where}.keepTags[{i}]: {tag!r} {KEEP_TAG_MESSAGE}"
        for i, tag in enumerate(policy.keep_tags or [])
        if not re.fullmatch(KEEP_TAG_PATTERN, tag)
    ]
    counts = [wire.get(count) for count in KEEP_COUNTS]
    if needs_rule and not any(counts) and not policy.keep_tags:
        problems.append(f"{where}: {KEEPS_NOTHING_MESSAGE}")
    return problems


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
    last_check_time: Time | None = Field(
        default=None,
        description="When restic check last ran to its verdict (integrity); the next is due a check-interval "
        "after it.",
    )
    references: list[TypedObjectReference] | None = Field(
        default=None, description="Objects that use this Repository."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Observations of the repository; RestoreDrillSucceeded: the last restore drill's "
        "verdict, naming the snapshots it restored and the first file that did not come back as backed up.",
    )
    last_verified_snapshot: str | None = Field(
        default=None,
        description="The newest snapshot the last passed restore drill restored and found complete "
        "(short ID).",
    )
    last_drill_time: Time | None = Field(
        default=None, description="When the last restore drill ended, passed or failed."
    )


class Repository(KubeObject):
    """A restic repository in a backend."""

    api_version: Literal["stash.appscode.com/v1alpha1"] = "stash.appscode.com/v1alpha1"
    kind: Literal["Repository"] = names.KIND_REPOSITORY
    spec: RepositorySpec = Field(description="Backend and usage policy of the repository.")
    status: RepositoryStatus | None = Field(default=None, description="State of the repository.")
