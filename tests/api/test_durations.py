"""Durations as Stash's status fields hold them: Go durations and restic's clock form, both ways."""

from __future__ import annotations

import pytest

from stashlet.api.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m2.5s", 62.5),
        ("4h0m0s", 14400.0),
        ("350ms", 0.35),
        ("1.5µs", 1.5e-6),  # Go writes the micro sign
        ("2us", 2e-6),
        ("0s", 0.0),
        ("0", 0.0),
        ("12", 12.0),
        ("12.5", 12.5),
        ("1:02", 62.0),
        ("0:00", 0.0),
        ("1:02:03", 3723.0),
    ],
)
def test_parse_duration_reads_go_and_clock_forms(text: str, seconds: float) -> None:
    """parse_duration reads Go durations (session/host durations) and restic's m:ss (processing time)."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1m2", "1:2:3:4", "abc", "1 m"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    """parse_duration raises ValueError on what is neither a Go duration, m:ss nor a number."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.85, "850ms"), (0.0, "0ms"), (39.4, "39s"), (125.0, "2m5s"), (3603.2, "1h0m3s"), (14400.0, "4h0m0s")],
)
def test_format_duration_writes_go_durations(seconds: float, text: str) -> None:
    """format_duration writes Go's form, whole seconds (ms below one second); parse_duration reads it back."""
    assert format_duration(seconds) == text
    expected = round(seconds, 3) if seconds < 1 else round(seconds)
    assert parse_duration(text) == pytest.approx(expected)
