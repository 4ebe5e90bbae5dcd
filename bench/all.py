"""Every bench in one run, and one table of every figure issue 15 names, beside its target.

    .venv/bin/python -m bench.all [--quick] [--only agent,restore,kubedump,operator] [--rounds N]
        [--out DIR]

Runs, one after another, each as its own process (so each starts and stops its own control plane, and
one's memory is not another's): ``bench.agent_vs_restic`` (the sidecar against bare ``restic backup``:
three sets, the agent's own time, creation -> restic start, the agent's RSS), ``bench.restore_vs_restic``
(stash-init against bare ``restic restore``), ``bench.kubedump_5000`` (the resource dump of 5,000
ConfigMaps against bare ``restic backup`` of the same folder) and ``bench/operator_ready.py`` (1,000
BackupConfigurations to Ready). Each bench's own output goes to the terminal as it runs and to
``DIR/<bench>.log``; its figures to ``DIR/<bench>.json``; the summary, a Markdown table, to the terminal
and ``DIR/summary.md``. ``--quick`` scales every bench down for a smoke run (its figures are not the
issue's). Exit status 1 when a bench failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import NA, fmt

from bench import figures

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("agent", "restore", "kubedump", "operator")
SETS = ("large", "small", "unchanged re-run")


@dataclass(frozen=True)
class Run:
    """How one bench is run, full size and scaled down."""

    argv: list[str]
    full: list[str]
    quick: list[str]
    json: bool = True
    """Whether it writes ``--json-out``; operator_ready.py only prints, and is read from its output."""


def runs(rounds: int | None) -> dict[str, Run]:
    """Every bench; ``rounds`` (None: each bench's own default) for the agent and restore benches."""
    rounds_arg = [f"--rounds={rounds}"] if rounds else []
    return {
        "agent": Run(["-m", "bench.agent_vs_restic", *rounds_arg], [], ["--quick"]),
        "restore": Run(
            ["-m", "bench.restore_vs_restic", *rounds_arg],
            [],
            ["--large-mb=16", "--small-files=1000", *([] if rounds else ["--rounds=1"])],
        ),
        "kubedump": Run(["-m", "bench.kubedump_5000"], ["--counts=1000,5000"], ["--counts=1000"]),
        "operator": Run(
            [str(REPO_ROOT / "bench" / "operator_ready.py")], ["--count=1000"], ["--count=100"], json=False
        ),
    }


def run_bench(name: str, run: Run, quick: bool, out: Path) -> tuple[dict[str, Any] | None, int, float]:
    """Run bench ``name``, its output streamed to the terminal and ``out/<name>.log``; (its figures or
    None, its exit status, its seconds)."""
    argv = [sys.executable, *run.argv, *(run.quick if quick else run.full)]
    result = out / f"{name}.json"
    if run.json:
        argv.append(f"--json-out={result}")
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    lines: list[str] = []
    with (out / f"{name}.log").open("w") as log:
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            log.write(line)
            lines.append(line)
        code = process.wait()
    seconds = time.monotonic() - started
    if run.json:
        found = json.loads(result.read_text()) if code == 0 and result.exists() else None
    else:
        parsed = figures.operator_ready_figures("".join(lines))
        found = parsed if parsed["all_ready_s"] is not None else None
    return found, code, seconds


# --- the summary ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row: what, the value shown, the issue's target, and whether it is met (None: no rule or no
    value)."""

    what: str
    value: str
    target: str
    met: bool | None = None

    def row(self) -> list[str]:
        verdict = NA if self.met is None else ("yes" if self.met else "no")
        return [self.what, self.value, self.target, verdict]


def _check(value: float | None, rule: Callable[[float], bool]) -> bool | None:
    return None if value is None else rule(value)


def _get(found: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(found, dict):
            return None
        found = found.get(key)
    return found


def agent_rows(agent: dict[str, Any] | None) -> list[Figure]:
    rows = []
    for label in SETS:
        s = _get(agent, "sets", label)
        ratio = _get(s, "ratio")
        rows.append(
            Figure(
                f"sidecar {label}: agent session / bare `restic backup`",
                f"{fmt(ratio, '.2f', 'x')} ({fmt(_get(s, 'agent_s'), '.2f', ' s')} / "
                f"{fmt(_get(s, 'bare_s'), '.2f', ' s')})",
                "<= 1.15x",
                _check(ratio, lambda r: r <= 1.15),
            )
        )
    for label in SETS:
        s = _get(agent, "sets", label)
        own = _get(s, "own_s")
        rows.append(
            Figure(
                f"sidecar {label}: agent's own time per session (restic processes; after Succeeded)",
                f"{fmt(own * 1000 if own is not None else None, '.0f', ' ms')} "
                f"({fmt(_get(s, 'restic_processes'), '.0f')}; "
                f"{fmt(_get(s, 'processes_after'), '.0f')} for {fmt(_get(s, 'after_s'), '.2f', ' s')})",
                "<= 250 ms",
                _check(own, lambda o: o <= 0.25),
            )
        )
    p50, p99 = _get(agent, "latency", "p50_ms"), _get(agent, "latency", "p99_ms")
    sessions = _get(agent, "latency", "sessions")
    over = f" over {sessions} sessions" if sessions else ""
    idle, peak = _get(agent, "idle_rss_mib"), _get(agent, "peak_rss_mib")
    return [
        *rows,
        Figure(
            f"BackupSession creation -> restic start, p50{over}",
            fmt(p50, ".0f", " ms"),
            "<= 100 ms",
            _check(p50, lambda v: v <= 100),
        ),
        Figure(
            f"BackupSession creation -> restic start, p99{over}",
            fmt(p99, ".0f", " ms"),
            "<= 300 ms",
            _check(p99, lambda v: v <= 300),
        ),
        Figure(
            "sidecar idle RSS (VmRSS)", fmt(idle, ".1f", " MiB"), "<= 45 MiB", _check(idle, lambda v: v <= 45)
        ),
        Figure(
            "sidecar peak RSS (VmHWM), restic apart",
            fmt(peak, ".1f", " MiB"),
            f"<= idle + 10 MiB ({fmt(idle + 10 if idle is not None else None, '.1f', ' MiB')})",
            None if idle is None or peak is None else peak <= idle + 10,
        ),
        Figure(
            f"restic's own peak RSS in the sidecar ({_get(agent, 'restic_peak_source') or NA})",
            fmt(_get(agent, "restic_peak_rss_mib"), ".1f", " MiB"),
            "reported",
        ),
    ]


def summary(found: dict[str, dict[str, Any] | None]) -> list[Figure]:
    """Every figure of the issue from the benches' results (a bench not run or failed shows n/a)."""
    restore = found.get("restore")
    dump_runs = found.get("kubedump") or {}
    largest = max(dump_runs, key=int) if dump_runs else None
    dump = dump_runs.get(largest) if largest else None
    dump_total = _get(dump, "dump_s") + _get(dump, "backup_s") if dump else None
    dump_ratio = figures.ratio(dump_total, _get(dump, "bare_backup_s"))
    op = found.get("operator")
    count = int(op["count"]) if op and op.get("count") else None
    ready_s, op_rss = _get(op, "all_ready_s"), _get(op, "peak_rss_mib")
    rolled, ready = _get(op, "rolled_once"), _get(op, "ready")
    configs = f"{count:,}" if count else "1,000"
    objects = f"{int(largest):,}" if largest else "5,000"
    return [
        *agent_rows(found.get("agent")),
        Figure(
            "restore: stash-init / bare `restic restore`",
            f"{fmt(_get(restore, 'ratio'), '.2f', 'x')} ({fmt(_get(restore, 'agent_s'), '.2f', ' s')} / "
            f"{fmt(_get(restore, 'bare_s'), '.2f', ' s')})",
            "no regression (1.27x before)",
            _check(_get(restore, "ratio"), lambda r: r <= 1.27),
        ),
        Figure(
            f"kubedump {objects} objects: dump + backup (/ bare `restic backup`)",
            f"{fmt(dump_total, '.2f', ' s')} ({fmt(dump_ratio, '.2f', 'x')})",
            "no regression (2.5 s before)",
            _check(dump_total, lambda t: t <= 2.5),
        ),
        Figure(
            f"operator: {configs} BackupConfigurations Ready",
            f"{fmt(ready_s, '.1f', ' s')} ({fmt(ready, '.0f')} Ready)",
            "<= 60 s",
            None if ready_s is None else ready_s <= 60 and ready == count,
        ),
        Figure(
            "operator: peak RSS", fmt(op_rss, ".1f", " MiB"), "<= 150 MiB", _check(op_rss, lambda v: v <= 150)
        ),
        Figure(
            "operator: workloads rolled exactly once",
            f"{fmt(rolled, '.0f')}/{count or NA}",
            "all",
            None if rolled is None or count is None else rolled == count,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every bench scaled down: a smoke run")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"a comma-separated subset of {BENCHES}")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the agent and restore benches")
    parser.add_argument(
        "--out", type=Path, default=None, help="where logs and figures go (default: a new temp dir)"
    )
    args = parser.parse_args()
    chosen = [b for b in args.only.split(",") if b]
    if unknown := set(chosen) - set(BENCHES):
        parser.error(
            f"--only: no bench named {', '.join(sorted(unknown))} (the benches: {', '.join(BENCHES)})"
        )
    out = args.out or Path(tempfile.mkdtemp(prefix="stashlet-bench-all-"))
    out.mkdir(parents=True, exist_ok=True)
    load_before = figures.load_average()
    found: dict[str, dict[str, Any] | None] = {}
    failed: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for name, run in runs(args.rounds).items():
        if name not in chosen:
            continue
        found[name], code, seconds[name] = run_bench(name, run, args.quick, out)
        if code != 0:
            failed[name] = code
    load_after = figures.load_average()
    table = figures.markdown_table(["figure", "measured", "target", "met"], [f.row() for f in summary(found)])
    restic = _get(found.get("agent"), "restic_version") or NA
    lines = [
        "Scaled down (--quick): a smoke run, not the issue's sizes.\n" if args.quick else "",
        table,
        "",
        f"load average (1, 5, 15 min): before {load_before}, after {load_after}; {restic}",
        "bench wall times: " + ", ".join(f"{n} {s:.0f} s" for n, s in seconds.items()),
    ]
    if failed:
        lines.append(
            "FAILED: " + ", ".join(f"{n} (exit {c}; see {out / (n + '.log')})" for n, c in failed.items())
        )
    text = "\n".join(lines)
    print("\n" + text)
    (out / "summary.md").write_text(text + "\n")
    print(f"\nlogs, figures and this summary: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
