"""bench.all's summary of every figure of issue 15, and that every bench module imports. Nothing runs a
bench and nothing is timed: the figures below are made up to check the table, not measured."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from bench.agent_vs_restic import SessionResult, SetFigures
from bench.figures import NA, SessionCost

from bench import all as bench_all

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_bench_module_imports(path: Path) -> None:
    module = importlib.import_module(f"bench.{path.stem}")
    if path.stem not in ("figures", "kubeapi"):
        assert callable(module.main)


def test_every_bench_is_run_full_and_quick() -> None:
    runs = bench_all.runs(rounds=2)
    assert tuple(runs) == bench_all.BENCHES
    for name, run in runs.items():
        assert run.quick != run.full, name
        target = run.argv[1] if run.argv[0] == "-m" else run.argv[0]
        found = BENCH / (target.removeprefix("bench.") + ".py") if run.argv[0] == "-m" else Path(target)
        assert found.is_file(), f"{name}: {found}"
    assert "--rounds=2" in runs["agent"].argv
    assert "--rounds=2" in runs["restore"].argv
    assert not any(arg.startswith("--rounds") for arg in runs["restore"].quick)  # the rounds asked for
    assert "--count=1000" in bench_all.runs(rounds=None)["operator"].full


def agent_figures(ratio: float, own_s: float | None) -> dict[str, Any]:
    sets = {
        label: {
            "bare_s": 2.0,
            "agent_s": 2.0 * ratio,
            "ratio": ratio,
            "own_s": own_s,
            "restic_processes": 2,
            "processes_after": 1,
            "after_s": 0.7,
        }
        for label in bench_all.SETS
    }
    return {
        "sets": sets,
        "latency": {"sessions": 50, "p50_ms": 40.0, "p99_ms": 320.0},
        "idle_rss_mib": 40.0,
        "peak_rss_mib": 52.0,
        "restic_peak_rss_mib": 70.0,
        "restic_peak_source": "sampled",
    }


def rows(found: dict[str, dict[str, Any] | None]) -> dict[str, list[str]]:
    return {figure.what: figure.row() for figure in bench_all.summary(found)}


def test_summary_holds_every_figure_beside_its_target() -> None:
    table = rows(
        {
            "agent": agent_figures(1.1, 0.3),
            "restore": {"ratio": 1.2, "agent_s": 6.0, "bare_s": 5.0},
            "kubedump": {
                "1000": {"dump_s": 0.5, "backup_s": 0.9, "bare_backup_s": 0.7},
                "5000": {"dump_s": 1.0, "backup_s": 1.0, "bare_backup_s": 1.0},
            },
            "operator": {
                "count": 1000,
                "all_ready_s": 48.7,
                "ready": 1000,
                "rolled_once": 999,
                "peak_rss_mib": 160,
            },
        }
    )
    large = table["sidecar large: agent session / bare `restic backup`"]
    assert large == [large[0], "1.10x (2.20 s / 2.00 s)", "<= 1.15x", "yes"]
    assert table["sidecar small: agent's own time per session (restic processes; after Succeeded)"][1:] == [
        "300 ms (2; 1 for 0.70 s)",
        "<= 250 ms",
        "no",
    ]
    assert table["BackupSession creation -> restic start, p50 over 50 sessions"][1:] == [
        "40 ms",
        "<= 100 ms",
        "yes",
    ]
    assert table["BackupSession creation -> restic start, p99 over 50 sessions"][-1] == "no"
    assert table["sidecar idle RSS (VmRSS)"][-1] == "yes"
    assert table["sidecar peak RSS (VmHWM), restic apart"][1:] == [
        "52.0 MiB",
        "<= idle + 10 MiB (50.0 MiB)",
        "no",
    ]
    assert table["restic's own peak RSS in the sidecar (sampled)"][1:] == ["70.0 MiB", "reported", NA]
    assert table["restore: stash-init / bare `restic restore`"][1] == "1.20x (6.00 s / 5.00 s)"
    assert table["kubedump 5,000 objects: dump + backup (/ bare `restic backup`)"][1:] == [
        "2.00 s (2.00x)",
        "no regression (2.5 s before)",
        "yes",
    ]
    assert table["operator: 1,000 BackupConfigurations Ready"][1:] == [
        "48.7 s (1000 Ready)",
        "<= 60 s",
        "yes",
    ]
    assert table["operator: peak RSS"][-1] == "no"
    assert table["operator: workloads rolled exactly once"][1:] == ["999/1000", "all", "no"]


def test_a_bench_not_run_shows_na_and_no_verdict() -> None:
    figures = bench_all.summary({"agent": None})
    assert len(figures) == 16
    for figure in figures:
        assert figure.met is None, figure
        assert NA in figure.value, figure


def test_a_missing_agent_cost_line_stays_na() -> None:
    table = rows({"agent": agent_figures(1.0, None)})
    assert table["sidecar large: agent's own time per session (restic processes; after Succeeded)"][1:] == [
        "n/a (2; 1 for 0.70 s)",
        "<= 250 ms",
        NA,
    ]


def session(wall_s: float, cost: SessionCost | None, processes: int, after_s: float) -> SessionResult:
    return SessionResult(
        wall_s, cost, None, "", ["backup"] * processes, after_s, ["stats"] if after_s else []
    )


def test_set_medians_over_rounds() -> None:
    figures = SetFigures()
    figures.add(2.0, session(2.4, SessionCost(2.4, 2.0, 2, 0.2, None), 2, 0.0))
    figures.add(1.0, session(1.5, None, 2, 0.7))
    figures.add(4.0, session(4.0, SessionCost(4.0, 3.5, 3, 0.4, 1024), 3, 0.8))
    summary = figures.summary()
    assert summary["bare_s"] == 2.0
    assert summary["agent_s"] == 2.4
    assert summary["ratios"] == pytest.approx([1.2, 1.5, 1.0])
    assert summary["ratio"] == pytest.approx(1.2)
    assert summary["own_s"] == pytest.approx(0.3)  # the two rounds that logged it
    assert summary["restic_processes"] == 2.5
    assert summary["sampled_processes"] == 2
    assert summary["after_s"] == 0.7
    assert summary["processes_after"] == 1
    assert summary["commands_after"] == [[], ["stats"], ["stats"]]
