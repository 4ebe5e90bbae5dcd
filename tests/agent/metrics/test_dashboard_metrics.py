"""The chart's Grafana dashboard against what a real sidecar pushes: after a real backup session (and
the integrity check that follows it), every metric the dashboard reads is on the Pushgateway, with the
labels its queries select on."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.agent.backup.test_sidecar import Setup, wait_phase, write_tree
from tests.chart.dashboard_queries import dashboard, metric_names
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


def scrape(url: str) -> dict[str, list[dict[str, str]]]:
    """Each metric on the Pushgateway with its samples' labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


def test_every_dashboard_metric_is_pushed_after_a_real_session(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    pushgateway: str,
) -> None:
    """Every metric the dashboard's panels and variables read is on the Pushgateway after one session,
    labelled with the session's namespace and configuration (what the dashboard's variables select)."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    agent = setup.start_agent(
        start_agent, service_account_kubeconfig(namespace, setup.account), pushgateway_url=pushgateway
    )
    done = wait_phase(kubectl, namespace, setup.session("dashboard"), {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", (done["status"], agent.logs()[-3000:])
    wanted = metric_names(dashboard())

    def missing() -> set[str]:
        pushed = scrape(pushgateway)
        return {
            name
            for name in wanted
            if not any(
                labels.get("namespace") == namespace and labels.get("invoker_name") == "app-backup"
                for labels in pushed.get(name, [])
            )
        }

    wait_until(
        lambda: not missing(),
        what="every dashboard metric on the Pushgateway",
        timeout=90,
        log=lambda: f"missing: {sorted(missing())}\n{agent.logs()[-2000:]}",
    )
