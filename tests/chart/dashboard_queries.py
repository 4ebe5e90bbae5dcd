"""The Grafana dashboard the chart ships, read as Grafana reads it: its panels' queries and the metric
names they use (shared by the chart test and the live check against a Pushgateway)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "stashlet" / "dashboards" / "stashlet.json"
_METRIC = re.compile(r"\b(stash_[a-z0-9_]+)\b")


def dashboard() -> dict[str, Any]:
    """The dashboard's JSON model."""
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL the dashboard runs: each panel target's ``expr`` and each query variable's query."""
    found = [target["expr"] for panel in model["panels"] for target in panel["targets"]]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def metric_names(model: dict[str, Any]) -> set[str]:
    """The metric names the dashboard's queries read."""
    return {name for query in queries(model) for name in _METRIC.findall(query)}
