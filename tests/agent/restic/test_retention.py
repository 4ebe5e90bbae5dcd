"""Retention policy -> restic forget arguments, without running restic."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stashlet.agent.errors import RefuseInput
from stashlet.agent.restic.retention import (
    EmptyRetentionPolicy,
    Retention,
    RetentionError,
    RetentionPolicyLike,
    UnscopedRetention,
    forget_args,
    keeps_something,
    names_a_host,
)
from stashlet.api.repository import RetentionPolicy

HOSTS = ["host-0"]


@dataclass
class ModelLike:
    """Shaped like the pydantic RetentionPolicy: mutable attributes, a list of tags, a name."""

    name: str = "keep-last-5"
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_tags: list[str] = field(default_factory=list)
    prune: bool = False
    dry_run: bool = False


def test_every_keep_option_in_order() -> None:
    """Every count becomes its --keep-* flag, tags become --keep-tag, grouping is explicit."""
    policy = Retention(
        keep_last=5,
        keep_hourly=24,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        keep_yearly=3,
        keep_tags=["release", "a,b"],
    )
    assert forget_args(policy, hosts=HOSTS) == [
        "--keep-last",
        "5",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "3",
        "--keep-tag=release",
        "--keep-tag=a,b",
        "--group-by=host,paths",
        "--host=host-0",
    ]


def test_unset_and_zero_counts_are_left_out() -> None:
    """None and 0 mean "not set" (Stash omits zero), so neither produces a flag."""
    assert forget_args(Retention(keep_last=0, keep_daily=3, keep_weekly=None), hosts=HOSTS) == [
        "--keep-daily",
        "3",
        "--group-by=host,paths",
        "--host=host-0",
    ]


def test_minus_one_keeps_everything_in_the_bucket() -> None:
    """-1 is restic's 'unlimited' (restic 0.18 refuses negative numbers on the command line)."""
    assert forget_args(Retention(keep_monthly=-1), hosts=HOSTS)[:2] == ["--keep-monthly", "unlimited"]


@pytest.mark.parametrize("policy", [Retention(), Retention(keep_last=0, keep_tags=[]), Retention(prune=True)])
def test_a_policy_that_keeps_nothing_is_refused(policy: Retention) -> None:
    """A policy with nothing to keep raises instead of building a forget that deletes every snapshot."""
    with pytest.raises(EmptyRetentionPolicy, match="keeps no snapshot") as caught:
        forget_args(policy, hosts=HOSTS)
    assert caught.value.reason == "EmptyRetentionPolicy"
    assert isinstance(caught.value, RefuseInput)


def test_tags_alone_are_a_policy() -> None:
    """A policy with only keepTags keeps something, so it is allowed."""
    assert forget_args(Retention(keep_tags=["monthly"]), hosts=HOSTS) == [
        "--keep-tag=monthly",
        "--group-by=host,paths",
        "--host=host-0",
    ]


def test_filters_prune_and_dry_run() -> None:
    """The host and path filters narrow the snapshots considered (one --host per host, repeated hosts
    once); prune and dry_run add their flags."""
    args = forget_args(
        Retention(keep_last=2, prune=True, dry_run=True),
        hosts=["host-0", "host-1", "host-0"],
        paths=["/source/data", "/etc/app"],
        group_by="host",
    )
    assert args == [
        "--keep-last",
        "2",
        "--group-by=host",
        "--host=host-0",
        "--host=host-1",
        "--path=/source/data",
        "--path=/etc/app",
        "--prune",
        "--dry-run",
    ]


def test_values_cannot_be_read_as_flags() -> None:
    """A value that starts with '-' stays glued to its flag with '='."""
    assert forget_args(Retention(keep_tags=["--remove-all"]), hosts=["-x"])[0] == "--keep-tag=--remove-all"
    assert "--host=-x" in forget_args(Retention(keep_last=1), hosts=["-x"])


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (Retention(keep_last=-2), "keep_last must be a positive count"),
        (Retention(keep_daily=True), "keep_daily must be a positive count"),
        (Retention(keep_tags=[""]), "keep_tags entry '' must name tags: not blank"),
        (Retention(keep_tags=[" \t"]), "must name tags: not blank"),
        (Retention(keep_tags=["a\nb"]), "without a newline or NUL"),
        (Retention(keep_tags=["a\x00b"]), "without a newline or NUL"),
    ],
)
def test_values_restic_would_misread_are_refused(policy: Retention, message: str) -> None:
    """Counts below -1, booleans as counts and empty or multi-line tags raise RetentionError."""
    with pytest.raises(RetentionError, match=message):
        forget_args(policy, hosts=HOSTS)


def test_empty_filters_are_refused() -> None:
    """An empty host or path would widen the filter silently; it is refused."""
    with pytest.raises(RetentionError, match="host"):
        forget_args(Retention(keep_last=1), hosts=[""])
    with pytest.raises(RetentionError, match="path"):
        forget_args(Retention(keep_last=1), hosts=HOSTS, paths=[" "])


def test_a_forget_without_hosts_is_refused() -> None:
    """No host would let one configuration's policy reach every host's snapshots: refused, loudly."""
    with pytest.raises(UnscopedRetention, match="without --host") as caught:
        forget_args(Retention(keep_last=1), hosts=[], paths=["/data"])
    assert caught.value.reason == "UnscopedRetentionPolicy"
    assert isinstance(caught.value, RefuseInput)


def test_a_model_shaped_object_fits_the_protocol() -> None:
    """An object with the API model's attribute names (list tags, plain bools) is accepted as is."""
    model: RetentionPolicyLike = ModelLike(keep_last=5, keep_tags=["x"], prune=True)
    assert forget_args(model, hosts=HOSTS) == [
        "--keep-last",
        "5",
        "--keep-tag=x",
        "--group-by=host,paths",
        "--host=host-0",
        "--prune",
    ]


def test_the_api_model_fits_the_protocol() -> None:
    """The BackupConfiguration's pydantic RetentionPolicy, parsed from its wire form, is accepted as is."""
    policy = RetentionPolicy.from_dict(
        {"name": "keep-last-5", "keepLast": 5, "keepTags": ["gold"], "prune": True}
    )
    assert forget_args(policy, hosts=HOSTS) == [
        "--keep-last",
        "5",
        "--keep-tag=gold",
        "--group-by=host,paths",
        "--host=host-0",
        "--prune",
    ]
    with pytest.raises(EmptyRetentionPolicy):
        forget_args(RetentionPolicy.from_dict({"name": "nothing", "prune": True}), hosts=HOSTS)


def test_keeps_something_detects_keep_options() -> None:
    """The runner's guard sees long --keep-* options and nothing else."""
    assert keeps_something(forget_args(Retention(keep_last=1), hosts=HOSTS))
    assert keeps_something(["--keep-within=1d"])
    assert not keeps_something(["--group-by=host", "--prune"])
    assert not keeps_something([])


def test_names_a_host_detects_a_non_empty_host_filter() -> None:
    """The runner's guard sees --host=VALUE and nothing else."""
    assert names_a_host(forget_args(Retention(keep_last=1), hosts=HOSTS))
    assert not names_a_host(["--keep-last", "1", "--host="])
    assert not names_a_host(["--keep-last", "1", "--host", "host-0"])
    assert not names_a_host([])
