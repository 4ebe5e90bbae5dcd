"""A restore drill's restic side against bare ``restic ls`` + ``restic restore --verify`` of one snapshot.

Generates ``--files`` small files (in folders of 1,000), backs them up once with plain restic as host-0,
then, ``--rounds`` times and alternately, drills that snapshot:

- bare: ``restic ls --json <id>`` (its output discarded) then ``restic restore --verify <id> --target T``;
- drill: a fresh Python process running the drill agent's restic side on the same snapshot
  (:class:`~stashlet.agent.drill.restore.DrillRestore`: the same two restic commands, the listing streamed
  into its SQLite file, the restored tree compared with it), which must find no problem.

The scratch folder is wiped and the page cache's dirty pages written back before every run, and the two
sides take turns going first. Prints the wall times per round, the median ratio
drill/bare, the drill process's peak RSS (restic apart) and restic's: the drill's memory is meant not
to grow with the snapshot, so a run at two sizes (``--files 20000,200000``) shows whether it does.

    .venv/bin/python -m bench.drill_vs_restic [--files 20000,200000] [--rounds 3] [--work-dir DIR]
        [--json-out FILE]

No control plane: the drill's API side (reading its configuration, recording the verdict) is a handful of
requests, measured by the drill's own tests, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.figures import process_kib

from stashlet.agent.drill.restore import DrillRestore
from stashlet.agent.restic import output as rj
from stashlet.agent.restic.backend import build_repository
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.localcluster import tools

PASSWORD = "bench-password"
HOST = "host-0"


def restic_env(repo: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}


def generate(root: Path, files: int) -> None:
    """``files`` files of 64 to 4,160 bytes in folders of 1,000."""
    for i in range(files):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07d}").write_bytes(os.urandom(64 + (i * 37) % 4097))


def backup(restic: Path, repo: Path, data: Path) -> rj.Snapshot:
    env = restic_env(repo)
    subprocess.run([str(restic), "--no-cache", "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(restic), "--no-cache", "--host", HOST, "backup", str(data)],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(restic), "--no-cache", "--json", "snapshots"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    [snapshot] = rj.parse_snapshots(out)
    return snapshot


class PeakSampler:
    """The highest VmHWM seen of the processes a callable names, sampled every 50 ms."""

    def __init__(self, pids: Any) -> None:
        self.pids = pids
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for pid in self.pids():
                self.peak = max(self.peak, (process_kib(pid, "VmHWM") or 0) / 1024)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def restic_pids() -> list[int]:
    """The restic processes running now (the bench's: nothing else runs restic during it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(entry, "comm").read_text().strip() == "restic":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def bare(restic: Path, repo: Path, snapshot: rj.Snapshot, scratch: Path) -> dict[str, float]:
    env = restic_env(repo)
    cache = ["--cache-dir", str(scratch.parent / "bare-cache")]
    started = time.monotonic()
    with PeakSampler(restic_pids) as sampler:
        subprocess.run(
            [str(restic), *cache, "--json", "ls", snapshot.id], env=env, check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            [str(restic), *cache, "restore", "--verify", "--target", str(scratch / HOST), snapshot.id],
            env=env,
            check=True,
            capture_output=True,
        )
    return {"seconds": time.monotonic() - started, "restic_rss_mib": sampler.peak}


def drill(restic: Path, repo: Path, snapshot: rj.Snapshot, scratch: Path) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.drill_vs_restic", "--child", str(restic), str(repo), snapshot.id]
    started = time.monotonic()
    with PeakSampler(restic_pids) as sampler:
        out = subprocess.run([*argv, str(scratch)], check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(out.splitlines()[-1])
    return {**figures, "seconds": time.monotonic() - started, "restic_rss_mib": sampler.peak}


async def child(restic_path: str, repo: str, snapshot_id: str, scratch: str) -> None:
    """The drill's restic side on one snapshot, in this fresh process; prints its figures as JSON."""
    backend = {
        "local": {"mountPath": str(Path(repo).parent), "subPath": Path(repo).name},
        "storageSecretName": "s",
    }
    repository = build_repository(
        backend, {"RESTIC_PASSWORD": PASSWORD.encode()}, files_dir=f"{scratch}-files"
    )
    settings = ResticSettings(binary=restic_path, cache_dir=f"{scratch}-cache")
    restic = Restic(settings, repository)
    [snapshot] = [s for s in await restic.snapshots(no_lock=True) if s.id == snapshot_id]
    started = time.monotonic()
    result = await DrillRestore(restic, "bench/repo", "bench/drill").host(HOST, [snapshot], Path(scratch))
    if result.mismatch_count:
        raise SystemExit(f"the drill found {result.mismatch_count} problems: {result.mismatches}")
    figures = {
        "drill_seconds": time.monotonic() - started,
        "files": result.files,
        "rss_mib": (process_kib("self", "VmHWM") or 0) / 1024,
    }
    print(json.dumps(figures))


def measure(restic: Path, work: Path, files: int, rounds: int) -> dict[str, Any]:
    data, repo, scratch = work / "data", work / "repo", work / "scratch"
    generate(data, files)
    snapshot = backup(restic, repo, data)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "drill": []}
    sides = [("bare", bare), ("drill", drill)]
    for i in range(rounds):
        for name, run in sides if i % 2 == 0 else sides[::-1]:  # each side goes first in turn
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            os.sync()  # the last run's files written back (and the wipe's) before the clock starts
            runs[name].append(run(restic, repo, snapshot, scratch))
    shutil.rmtree(work)
    ratios = [d["seconds"] / b["seconds"] for b, d in zip(runs["bare"], runs["drill"], strict=True)]
    return {
        "files": files,
        "rounds": runs,
        "ratio_median": statistics.median(ratios),
        "drill_rss_mib": max(d["rss_mib"] for d in runs["drill"]),
        "restic_rss_mib": max(r["restic_rss_mib"] for rs in runs.values() for r in rs),
    }


def report(f: dict[str, Any]) -> None:
    print(f"\n{f['files']:,} files, one snapshot, {len(f['rounds']['bare'])} rounds")
    for i, (b, d) in enumerate(zip(f["rounds"]["bare"], f["rounds"]["drill"], strict=True), 1):
        print(f"  round {i}: bare ls + restore --verify {b['seconds']:.2f} s, drill {d['seconds']:.2f} s")
    print(f"  drill / bare restic, median: {f['ratio_median']:.2f}x")
    drill_rss, restic_rss = f["drill_rss_mib"], f["restic_rss_mib"]
    print(f"  peak RSS: the drill's Python process {drill_rss:.1f} MiB, restic {restic_rss:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--files", default="20000,200000", help="comma-separated snapshot sizes in files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(*args.child))
        return
    restic = tools.ensure("restic")
    base = Path(tempfile.mkdtemp(prefix="stashlet-drill-bench-", dir=args.work_dir))
    results = []
    try:
        for count in (int(c) for c in args.files.split(",")):
            results.append(measure(restic, base / str(count), count, args.rounds))
            report(results[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if len(results) > 1:
        growth = results[-1]["drill_rss_mib"] - results[0]["drill_rss_mib"]
        print(
            f"\nthe drill's peak RSS grows {growth:+.1f} MiB from {results[0]['files']:,} "
            f"to {results[-1]['files']:,} files"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
