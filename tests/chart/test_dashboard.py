"""The chart's Grafana dashboard: shipped only when asked, as the ConfigMap Grafana's sidecar loads, and
reading only gauges the agent exposes (tests/agent/metrics/test_dashboard_metrics.py checks them against
a live Pushgateway after a real session)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chart.dashboard_queries import DASHBOARD, dashboard, metric_names, queries
from tests.chart.helm import Helm, find

from stashlet.agent.metrics import catalog


def test_no_dashboard_unless_enabled(helm: Helm) -> None:
    """By default no ConfigMap is rendered."""
    assert not [o for o in helm.render() if o["kind"] == "ConfigMap"]


def test_enabled_dashboard_is_a_configmap_the_grafana_sidecar_loads(helm: Helm, tmp_path: Path) -> None:
    """Enabled: one ConfigMap with the sidecar's label (and the labels given), in the namespace given,
    whose data is the dashboard file byte for byte."""
    objects = helm.render("--set", "grafanaDashboard.enabled=true")
    config = find(objects, "ConfigMap", "stashlet-dashboard")
    assert config["metadata"]["namespace"] == "stashlet-system"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["labels"]["app.kubernetes.io/instance"] == "stashlet"
    assert config["data"]["stashlet.json"] == DASHBOARD.read_text().rstrip("\n")
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"dashboards": "backup"},
            "annotations": {"grafana_folder": "Backups"},
        }
    }
    config = find(helm.render(values=values, tmp=tmp_path), "ConfigMap", "stashlet-dashboard")
    assert config["metadata"]["namespace"] == "monitoring"
    assert config["metadata"]["labels"]["dashboards"] == "backup"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"  # helm merges maps: null removes it
    assert config["metadata"]["annotations"] == {"grafana_folder": "Backups"}


def test_every_query_reads_gauges_the_agent_exposes() -> None:
    """Each metric a panel or variable reads is one of the catalogue's gauges (Stash's names); every
    panel has a query, a unique id and fits Grafana's 24-column grid; the data source is a variable."""
    model = dashboard()
    exposed = {
        name for spec in vars(catalog).values() if isinstance(spec, catalog.MetricSpec) for name in spec.names
    }
    used = metric_names(model)
    assert used, queries(model)
    assert used <= exposed, used - exposed
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert json.loads(json.dumps(model)) == model
