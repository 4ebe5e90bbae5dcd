"""What ``bench.scale`` reads from the cluster's processes and servers: the API server's ``/metrics``
(requests, watch events and their bytes, open watches), the objects of a namespace, a process's CPU and
memory from ``/proc``, a Pushgateway's groups and series; and status writes as merge patches."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.kubeapi import Api, ApiError
from prometheus_client.parser import text_string_to_metric_families

SESSIONS_RESOURCE = "backupsessions"


def scrape(url: str, api: Api | None = None) -> str:
    """The text at ``url`` (``api``'s server and credentials when given)."""
    request = urllib.request.Request(url, headers=api.headers if api else {})
    with urllib.request.urlopen(request, context=api.ssl if api else None, timeout=60) as answer:
        return str(answer.read().decode())


def patch_status(api: Api, path: str, status: dict[str, Any]) -> None:
    """Merge ``status`` into the object's status (its ``/status`` subresource), as an agent's write."""
    body = json.dumps({"status": status}).encode()
    headers = {**api.headers, "Content-Type": "application/merge-patch+json"}
    request = urllib.request.Request(f"{api.server}{path}/status", data=body, method="PATCH", headers=headers)
    try:
        with urllib.request.urlopen(request, context=api.ssl, timeout=60) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise ApiError(f"PATCH {path}/status: {exc.code} {exc.read().decode(errors='replace')}") from exc


@dataclass(frozen=True)
class ApiServerMetrics:
    """One scrape of kube-apiserver's ``/metrics``, reduced to what the bench compares."""

    requests: float
    """``apiserver_request_total``, every client, verb and resource."""
    session_watch_events: float
    """``apiserver_watch_events_total`` of BackupSessions: events sent, once per watcher each."""
    session_watch_bytes: float
    """``apiserver_watch_events_sizes`` (sum) of BackupSessions: the bytes of those events."""
    session_watches: float
    """Watches of BackupSessions open (``apiserver_longrunning_requests``, verb WATCH)."""

    @classmethod
    def parse(cls, text: str) -> ApiServerMetrics:
        requests = events = sizes = watches = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                about_sessions = SESSIONS_RESOURCE in (labels.get("resource", ""), labels.get("kind", ""))
                if sample.name == "apiserver_request_total":
                    requests += sample.value
                elif sample.name == "apiserver_watch_events_total" and about_sessions:
                    events += sample.value
                elif sample.name == "apiserver_watch_events_sizes_sum" and about_sessions:
                    sizes += sample.value
                elif (
                    sample.name == "apiserver_longrunning_requests"
                    and labels.get("verb") == "WATCH"
                    and about_sessions
                ):
                    watches += sample.value
        return cls(requests, events, sizes, watches)

    @classmethod
    def read(cls, api: Api) -> ApiServerMetrics:
        return cls.parse(scrape(f"{api.server}/metrics", api))


def namespace_objects(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str
) -> Counter[str]:
    """Every object of ``namespace`` (each kind that may be listed, events once), counted by kind."""
    kinds = kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k != "events.events.k8s.io"]
    listed = kubectl("get", ",".join(kinds), "-n", namespace, "-o", "name", "--ignore-not-found").stdout
    return Counter(line.split("/", 1)[0] for line in listed.split())


def objects_added(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """Objects there after that were not before, by kind (only the kinds that grew)."""
    return {kind: n - before[kind] for kind, n in sorted(after.items()) if n > before[kind]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field_name: str = "VmRSS") -> float:
    """A memory figure of ``/proc/<pid>/status`` (VmRSS now, VmHWM the peak) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field_name} for pid {pid}")


@dataclass(frozen=True)
class GatewayContents:
    """What a Pushgateway holds: its groups, the stash series in them, and its exposition's size."""

    groups: int
    series: int
    host_series: int
    """The series in host groups (grouping key ``hostname``); the rest are the jobs' own."""
    scrape_bytes: int

    @classmethod
    def read(cls, url: str) -> GatewayContents:
        groups = json.loads(scrape(f"{url}/api/v1/metrics"))["data"]
        text = scrape(f"{url}/metrics")
        series = [line for line in _samples(text.splitlines()) if line.startswith("stash_")]
        host = sum(1 for line in series if 'hostname="' in line)
        return cls(len(groups), len(series), host, len(text.encode()))


def _samples(lines: Iterable[str]) -> Iterable[str]:
    return (line for line in lines if line and not line.startswith("#"))


def main() -> int:
    """``python -m bench.scale_cluster KUBECONFIG``: one scrape of that API server, summarised."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kubeconfig", type=Path)
    args = parser.parse_args()
    found = ApiServerMetrics.read(Api(args.kubeconfig))
    print(f"requests answered            {found.requests:.0f}")
    events, size = found.session_watch_events, found.session_watch_bytes
    print(f"BackupSession watch events   {events:.0f} ({size:.0f} bytes)")
    print(f"BackupSession watches open   {found.session_watches:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
