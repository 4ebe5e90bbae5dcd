"""A Repository's check cadence: annotations read, bad values refused by name, due-ness from status."""

from __future__ import annotations

import datetime as dt

import pytest

from stashlet.agent.backup.check_cadence import (
    DEFAULT_CHECK_INTERVAL,
    CheckSettings,
    CheckSettingsRefused,
    check_due,
    check_settings,
)
from stashlet.api.names import ANNOTATION_CHECK_INTERVAL, ANNOTATION_CHECK_READ_DATA_SUBSET
from stashlet.api.repository import Repository

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def repository(annotations: dict[str, str] | None = None) -> Repository:
    return Repository.from_dict(
        {
            "metadata": {"name": "repo", "namespace": "demo", "annotations": annotations or {}},
            "spec": {"backend": {"local": {"mountPath": "/r"}, "storageSecretName": "s"}},
        }
    )


def test_the_annotation_names_are_in_stash_group() -> None:
    """Like the project's other annotations, in the stash.appscode.com group."""
    assert ANNOTATION_CHECK_INTERVAL == "stash.appscode.com/check-interval"
    assert ANNOTATION_CHECK_READ_DATA_SUBSET == "stash.appscode.com/check-read-data-subset"


def test_without_annotations_a_check_a_day_reading_no_data() -> None:
    """The default: once a day, structure only."""
    assert check_settings(repository()) == CheckSettings(interval=24 * 3600.0, read_data_subset=None)
    assert DEFAULT_CHECK_INTERVAL == 86400.0


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [("24h", 86400.0), ("168h", 604800.0), ("30m", 1800.0), ("0s", 0.0), ("1h30m", 5400.0)],
)
def test_the_interval_is_a_go_duration(interval: str, seconds: float) -> None:
    """check-interval takes a Go duration; 0s checks after every backup."""
    assert check_settings(repository({ANNOTATION_CHECK_INTERVAL: interval})).interval == seconds


@pytest.mark.parametrize("subset", ["10%", "2.5%", "100%", "1/5", "5/5", "500M", "2G", "1024"])
def test_the_subsets_restic_reads_are_taken(subset: str) -> None:
    """check-read-data-subset takes restic's three forms: n/t, a percentage, a size."""
    assert check_settings(repository({ANNOTATION_CHECK_READ_DATA_SUBSET: subset})).read_data_subset == subset


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (ANNOTATION_CHECK_INTERVAL, "daily"),
        (ANNOTATION_CHECK_INTERVAL, "-1h"),
        (ANNOTATION_CHECK_INTERVAL, ""),
        (ANNOTATION_CHECK_INTERVAL, "24 h"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "0%"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "101%"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "6/5"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "0/5"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "0"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "half"),
        (ANNOTATION_CHECK_READ_DATA_SUBSET, "--read-data"),
    ],
)
def test_a_bad_value_is_refused_naming_the_repository_and_annotation(annotation: str, value: str) -> None:
    """A value restic would not read is refused, naming the Repository, the annotation and the value."""
    with pytest.raises(CheckSettingsRefused) as refused:
        check_settings(repository({annotation: value}))
    assert "Repository demo/repo" in refused.value.message
    assert f"{annotation}={value!r}" in refused.value.message
    assert refused.value.reason == "InvalidCheckSettings"


def test_due_when_never_checked() -> None:
    assert check_due(CheckSettings(), None, NOW)


def test_due_once_the_interval_has_passed_since_the_last_check() -> None:
    """Due-ness counts from the status' lastCheckTime."""
    daily = CheckSettings(interval=86400.0)
    assert not check_due(daily, NOW - dt.timedelta(hours=23, minutes=59), NOW)
    assert check_due(daily, NOW - dt.timedelta(hours=24), NOW)
    assert check_due(daily, NOW - dt.timedelta(days=3), NOW)


def test_zero_interval_is_due_every_time() -> None:
    assert check_due(CheckSettings(interval=0.0), NOW, NOW)


def test_a_last_check_in_the_future_is_not_trusted() -> None:
    """A clock gone back (or a status written by a skewed clock) does not postpone checks forever."""
    assert check_due(CheckSettings(), NOW + dt.timedelta(days=2), NOW)
