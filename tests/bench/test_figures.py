"""The benches' pure helpers: percentiles, the agent's log lines, /proc fields, other benches' output,
tables. No bench runs here and nothing is timed."""

from __future__ import annotations

import json
import math

import pytest
from bench.figures import RESTIC_START_LOGGER as RUNNER
from bench.figures import SessionCost

from bench import figures


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(10, 0, -1)]  # 10..1, unsorted on purpose
    assert figures.percentile(values, 0) == 1
    assert figures.percentile(values, 50) == 5.5
    assert figures.percentile(values, 100) == 10
    assert figures.percentile([float(v) for v in range(1, 101)], 99) == pytest.approx(99.01)
    assert figures.percentile([0.25], 99) == 0.25


def test_p99_of_fifty_sessions_lies_between_the_two_slowest() -> None:
    latencies = [0.030] * 48 + [0.100, 0.400]
    assert figures.percentile(latencies, 50) == pytest.approx(0.030)
    assert figures.percentile(latencies, 99) == pytest.approx(0.100 + 0.51 * 0.300)


@pytest.mark.parametrize(("values", "p"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_what_has_none(values: list[float], p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        figures.percentile(values, p)


def test_median_skips_unknown_values() -> None:
    assert figures.median_or_none([3.0, None, 1.0, math.nan, 2.0]) == 2.0
    assert figures.median_or_none([None, math.nan]) is None


def line(msg: str, time: str = "2026-12-05T12:00:00.500+00:00", logger: str = "x", **extra: object) -> str:
    return json.dumps({"time": time, "level": "info", "logger": logger, "msg": msg, **extra})


def test_log_entries_keep_the_json_lines_only() -> None:
    text = "\n".join(
        [line("one"), "Traceback (most recent call last):", '{"broken', "[1, 2]", line("two"), ""]
    )
    assert [e["msg"] for e in figures.log_entries(text)] == ["one", "two"]


def test_restic_start_is_the_first_running_line_at_or_after_the_creation() -> None:
    entries = figures.log_entries(
        "\n".join(
            [
                line("running /r/restic --json backup", time="2026-12-05T12:00:00.100+00:00", logger=RUNNER),
                line("host backup started", time="2026-12-05T12:00:01.010+00:00"),
                line("running restic forget", time="2026-12-05T12:00:01.020+00:00", logger="stashlet.b"),
                line(
                    "running /r/restic --json --cache-dir=/tmp/c cat config",
                    time="2026-12-05T12:00:01.030+00:00",
                    logger=RUNNER,
                ),
                line(
                    "running /r/restic --json backup --host=host-0 -- /d",
                    time="2026-12-05T12:00:02+00:00",
                    logger=RUNNER,
                ),
            ]
        )
    )
    created = figures.entry_time({"time": "2026-12-05T12:00:01+00:00"})
    start = figures.first_restic_start(entries, created)
    assert start is not None
    assert figures.entry_time(start) - created == pytest.approx(0.030)
    assert figures.restic_command(start) == "cat"
    assert figures.first_restic_start(entries, created + 5) is None


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/r/restic", "--json", "--cache-dir=/c", "backup", "--host=h", "--", "/d"], "backup"),
        (["restic", "--cache-dir", "/c", "-o", "s3.region=x", "--json", "stats", "--mode=raw-data"], "stats"),
        (["restic", "--no-cache", "cat", "config"], "cat"),
        (["restic", "--json"], ""),
    ],
)
def test_restic_subcommand_skips_global_options_and_their_values(argv: list[str], command: str) -> None:
    assert figures.restic_subcommand(argv) == command


def test_entry_time_reads_the_offset() -> None:
    utc = figures.entry_time({"time": "2026-12-05T12:00:00.250+00:00"})
    assert figures.entry_time({"time": "2026-12-05T13:00:00.250+01:00"}) == utc


def test_session_cost_reads_the_agents_line_for_that_session() -> None:
    entries = figures.log_entries(
        "\n".join(
            [
                line(figures.SESSION_COST_MSG, session="bench/small-0-1", own_seconds=9.0),
                line(
                    figures.SESSION_COST_MSG,
                    session="bench/small-0-2",
                    session_seconds=3.5,
                    restic_seconds=3.25,
                    restic_processes=2,
                    own_seconds=0.25,
                    restic_max_rss_kib=65536,
                ),
            ]
        )
    )
    assert figures.session_cost(entries, "small-0-2") == SessionCost(3.5, 3.25, 2, 0.25, 65536)
    assert figures.session_cost(entries, "bench/small-0-2") == SessionCost(3.5, 3.25, 2, 0.25, 65536)


def test_session_cost_never_invents_a_figure() -> None:
    entries = figures.log_entries(
        line(figures.SESSION_COST_MSG, session="bench/a-1", own_seconds="fast", restic_processes=True)
    )
    assert figures.session_cost(entries, "a-1") == SessionCost(None, None, None, None, None)
    assert figures.session_cost(entries, "a-2") is None
    assert (
        figures.session_cost(figures.log_entries(line("host backup recorded", session="bench/a-1")), "a-1")
        is None
    )


def test_proc_status_fields() -> None:
    status = "Name:\tpython3\nVmHWM:\t   90312 kB\nVmRSS:\t   88100 kB\n"
    assert figures.proc_status_kib(status, "VmRSS") == 88100
    assert figures.proc_status_kib(status, "VmHWM") == 90312
    assert figures.proc_status_kib(status, "VmSwap") is None
    assert figures.process_kib("self", "VmRSS")  # this very process
    assert figures.process_kib(2**22 + 12345, "VmRSS") is None  # beyond pid_max: no such process


def test_load_average_is_three_numbers() -> None:
    assert len([float(v) for v in figures.load_average().split()]) == 3


OPERATOR_OUTPUT = """\
configurations            1000 (workers 8)
objects created               21.3 s (kubectl, before the operator starts)
first Ready                    1.2 s
all Ready                     48.7 s   1000/1000     20.5 /s
rolled exactly once       999/1000
all deleted (finalizers)      30.1 s
operator CPU to Ready         40.2 s   (55.0 s with the deletions)
operator peak RSS            131.5 MiB
load average                  3.10 (the machine's, at the end)
"""


def test_operator_ready_output_is_read_line_by_line() -> None:
    assert figures.operator_ready_figures(OPERATOR_OUTPUT) == {
        "count": 1000,
        "all_ready_s": 48.7,
        "ready": 1000,
        "rolled_once": 999,
        "peak_rss_mib": 131.5,
        "cpu_to_ready_s": 40.2,
    }
    assert set(figures.operator_ready_figures("Traceback ...").values()) == {None}


def test_unknown_figures_print_as_na() -> None:
    assert figures.fmt(None) == figures.NA
    assert figures.fmt(math.nan, ".1f", " s") == figures.NA
    assert figures.fmt(0.1234, ".3f", " s") == "0.123 s"
    assert figures.ratio(3.0, 2.0) == 1.5
    assert figures.ratio(None, 2.0) is None
    assert figures.ratio(1.0, 0.0) is None


def test_markdown_table_lines_up_its_columns() -> None:
    table = figures.markdown_table(["set", "ratio"], [["large", "1.10x"], ["unchanged re-run", "1.05x"]])
    assert table.splitlines() == [
        "| set              | ratio |",
        "| ---------------- | ----- |",
        "| large            | 1.10x |",
        "| unchanged re-run | 1.05x |",
    ]
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        figures.markdown_table(["a", "b"], [["1", "2", "3"]])
