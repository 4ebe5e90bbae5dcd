"""Benchmark: the resource dump of a namespace with 5,000 ConfigMaps, backed up through stashlet's code,
against a bare ``restic backup`` of the same folder.

    .venv/bin/python -m bench.kubedump_5000 [--counts 1000,5000] [--json-out FILE]

It starts its own control plane (``stashlet.localcluster``), creates 1,000 and 5,000 ConfigMaps of a few
hundred bytes in two namespaces (concurrently), then, in a fresh child process per namespace (so its peak
RSS is the dump's own), times ``kubedump.dump()`` and the backup of the folder with stashlet's restic
runner (``Restic.backup``: ``--json``, streamed, parsed) into a fresh repository; and times a bare
``restic backup`` of the same folder into another fresh repository. Prints the figures and ratios; the
peak RSS at 1,000 and 5,000 objects shows whether memory stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.figures import process_kib
from bench.kubeapi import Api

from stashlet.agent.kubedump.dump import DumpOptions, DumpScope, dump
from stashlet.agent.restic.backend import build_repository
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.kube.client import new_api_client
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
CONCURRENCY = 16


def vm_hwm_mib(pid: str) -> float:
    """Peak resident memory of process ``pid`` ("self" for this one), in MiB, from /proc (Linux).

    Not ``getrusage``: its ``ru_maxrss`` survives ``exec`` and so counts the forking parent's memory.
    """
    return (process_kib(pid, "VmHWM") or 0) / 1024


def restic_env(repo: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}


def restic_init(binary: Path, repo: Path) -> None:
    subprocess.run([str(binary), "--no-cache", "init"], env=restic_env(repo), check=True, capture_output=True)


def create_configmaps(kubeconfig: Path, namespace: str, count: int) -> float:
    """``count`` ConfigMaps of ~300 bytes, created ``CONCURRENCY`` at a time; seconds taken."""
    api = Api(kubeconfig)

    def one(i: int) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i:05d}", "labels": {"bench": "kubedump"}},
            "data": {
                "settings.ini": f"[section]\nindex={i}\n" + "option=value-with-some-length\n" * 8,
                "mode": "benchmark",
            },
        }
        api.create(f"/api/v1/namespaces/{namespace}/configmaps", body)

    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started


async def child(args: argparse.Namespace) -> dict[str, Any]:
    """Dump one namespace and back the folder up with stashlet's restic runner; figures as a dict."""
    out, repo = Path(args.out), Path(args.repo)
    rss_before = vm_hwm_mib("self")
    api = await new_api_client(args.kubeconfig)
    started = time.monotonic()
    try:
        report = await dump(api, DumpScope("namespace", namespace=args.namespace), DumpOptions(), out)
    finally:
        await api.close()
    dumped = time.monotonic()
    rss_after_dump = vm_hwm_mib("self")
    repository = build_repository(
        {"local": {"mountPath": str(repo.parent), "subPath": repo.name}, "storageSecretName": "s"},
        {"RESTIC_PASSWORD": PASSWORD.encode()},
        files_dir=str(repo.parent / "files"),
    )
    restic = Restic(ResticSettings(binary=args.restic), repository)
    summary = await restic.backup([str(out)], host="host-0")
    finished = time.monotonic()
    return {
        "objects": report.objects,
        "bytes": report.bytes,
        "files": summary.total_files_processed,
        "dump_s": dumped - started,
        "backup_s": finished - dumped,
        "rss_before_mb": rss_before,
        "rss_after_dump_mb": rss_after_dump,
        "peak_rss_mb": vm_hwm_mib("self"),
    }


def run_child(kubeconfig: Path, namespace: str, out: Path, repo: Path, restic: Path) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.kubedump_5000",
        "--child",
        f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}",
        f"--out={out}",
        f"--repo={repo}",
        f"--restic={restic}",
    ]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def bare_backup(restic: Path, repo: Path, folder: Path) -> tuple[float, float]:
    """Seconds of a plain ``restic backup`` of ``folder``, and restic's peak RSS (MiB, sampled)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(restic), "--no-cache", "backup", "--quiet", "--host=host-0", str(folder)],
        env=restic_env(repo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(OSError, ValueError):  # the process is exiting
            peak = max(peak, vm_hwm_mib(str(process.pid)))
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"restic backup exited {process.returncode}")
    return elapsed, peak


def measure(plane: ControlPlane, work: Path, restic: Path, namespace: str, count: int) -> dict[str, Any]:
    plane.kubectl("create", "namespace", namespace)
    wait_for_default_service_account(plane, namespace)
    create_s = create_configmaps(plane.kubeconfig, namespace, count)
    ours, bare = work / f"{namespace}-ours", work / f"{namespace}-bare"
    restic_init(restic, ours)
    restic_init(restic, bare)
    out = work / f"{namespace}-dump"
    figures = run_child(plane.kubeconfig, namespace, out, ours, restic)
    figures["create_s"] = create_s
    figures["bare_backup_s"], figures["restic_peak_rss_mb"] = bare_backup(restic, bare, out)
    return figures


def report(count: int, f: dict[str, Any]) -> None:
    total = f["dump_s"] + f["backup_s"]
    print(f"\n== {count} ConfigMaps (created in {f['create_s']:.1f}s, {count / f['create_s']:.0f}/s)")
    print(
        f"  objects dumped           {f['objects']} ({f['bytes'] / 1024:.0f} KiB of YAML, {f['files']} files)"
    )
    print(f"  dump                     {f['dump_s']:.2f}s ({f['objects'] / f['dump_s']:.0f} objects/s)")
    print(f"  backup (stashlet runner) {f['backup_s']:.2f}s")
    print(f"  dump + backup            {total:.2f}s")
    print(f"  bare restic backup       {f['bare_backup_s']:.2f}s")
    print(f"  ratio dump+backup / bare restic      {total / f['bare_backup_s']:.2f}x")
    print(f"  ratio stashlet backup / bare restic  {f['backup_s'] / f['bare_backup_s']:.2f}x")
    print(f"  ratio dump / bare restic             {f['dump_s'] / f['bare_backup_s']:.2f}x")
    print(
        f"  peak RSS of the process: {f['rss_before_mb']:.0f} MiB after imports, "
        f"{f['rss_after_dump_mb']:.0f} MiB after the dump, {f['peak_rss_mb']:.0f} MiB after the backup; "
        f"restic's own (bare run): {f['restic_peak_rss_mb']:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--namespace")
    parser.add_argument("--out")
    parser.add_argument("--repo")
    parser.add_argument("--restic")
    parser.add_argument(
        "--counts", default="1000,5000", help="ConfigMaps per namespace, one namespace each (comma-separated)"
    )
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args))))
        return
    restic = tools.ensure("restic")
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="stashlet-bench-kubedump-") as tmp:
        work = Path(tmp)
        plane = ControlPlane(work / "plane")
        plane.start()
        try:
            found = {count: measure(plane, work, restic, f"bench-{count}", count) for count in counts}
        finally:
            plane.stop()
    for count, figures in found.items():
        report(count, figures)
    if len(counts) > 1:
        small, big = found[counts[0]], found[counts[-1]]
        growth = big["rss_after_dump_mb"] - small["rss_after_dump_mb"]
        print(
            f"\npeak RSS after the dump grows {growth:+.0f} MiB from {counts[0]:,} to {counts[-1]:,} objects"
        )
    if args.json_out:
        by_count = {str(count): figures for count, figures in found.items()}
        args.json_out.write_text(json.dumps(by_count, indent=2))


if __name__ == "__main__":
    main()
