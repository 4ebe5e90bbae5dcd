"""bench.scale_model: the inputs are read from a run's figures as documented, and the projections scale
them as the model says. The figures below are made up to check the arithmetic, not measured."""

from __future__ import annotations

from typing import Any

import pytest
from bench.scale_model import CONFIGS_PER_NAMESPACE, REPLICAS, inputs, project

from bench import scale_model


def figures() -> dict[str, Any]:
    def fan(mode: str, agents: int, received: float) -> dict[str, Any]:
        return {
            "mode": mode,
            "agents": agents,
            "replicas": 10,
            "received_per_session": received,
            "bytes_per_event": 2000.0,
            "idle_requests_per_agent_s": 0.3,
            "idle_apiserver_millicores_per_agent": 0.5,
            "apiserver_rss_per_agent_kib": 40.0,
        }

    def op(configs: int, rss: float) -> dict[str, Any]:
        return {
            "configs": configs,
            "operator_peak_rss_mib": rss,
            "objects_per_config": 7.0,
            "all_ready_s": configs * 0.03,
            "rest_kcm_millicores": 20.0,
            "rest_requests_per_config_s": 0.001,
        }

    return {
        "fan_out": [fan("namespace", 200, 250.0), fan("selected", 10, 5.0), fan("selected", 200, 50.0)],
        "operator": [op(1000, 130.0), op(200, 90.0)],
        "pushgateway": {
            "job_series_per_config": 20.0,
            "series_per_host": 21.0,
            "series_per_config": 62.0,
            "scrape_bytes": 6_200_000,
            "series": 62_000,
            "rss_per_config_kib": 62.0,
        },
        "real_agent": {"requests_per_session": 17.0, "requests_per_session_per_extra_replica": 6.0},
    }


def test_inputs_come_from_the_largest_selected_run_and_the_operator_runs() -> None:
    found = inputs(figures())
    assert found.events_per_session_per_replica == 5.0  # 50 received a session over 10 replicas
    assert found.operator_mib_per_config == pytest.approx(40.0 / 800)
    assert found.operator_mib_base == pytest.approx(130.0 - 1000 * 40.0 / 800)
    assert found.ready_s_per_config == pytest.approx(0.03)
    assert found.kcm_millicores_per_1000_cronjobs == pytest.approx(20.0)
    assert found.scrape_bytes_per_series == pytest.approx(100.0)
    assert found.gateway_kib_per_series == pytest.approx(1.0)


def test_projection_scales_each_cost_with_its_unit() -> None:
    found = inputs(figures())
    small, large = project(found, 1000), project(found, 10_000)
    assert large.agents == 10 * small.agents == 10_000 * REPLICAS
    assert large.idle_requests_s == pytest.approx(20_000 * 0.3)
    assert small.session_events_day == pytest.approx(100_000 * 5.0 * REPLICAS)
    assert small.session_events_day_before == pytest.approx(small.session_events_day * CONFIGS_PER_NAMESPACE)
    assert small.session_events_day == large.session_events_day  # the same sessions a day
    # each session: the replica that backs up, and each further replica waiting for the Lease
    assert small.session_requests_s == pytest.approx(100_000 * (17.0 + (REPLICAS - 1) * 6.0) / 86_400)
    assert large.gateway_series == pytest.approx(10_000 * (20.0 + 21.0))
    assert large.operator_mib == pytest.approx(80.0 + 10_000 * 0.05)
    assert large.etcd_objects == pytest.approx(10_000 * (7.0 + 5))


def test_report_names_the_shape_it_assumes() -> None:
    text = scale_model.report(inputs(figures()))
    assert "| 1,000 workloads | 10,000 workloads |" in text
    assert f"{REPLICAS} replicas each" in text and "100,000 sessions a day" in text


def test_a_rate_below_the_quiet_windows_counts_as_none() -> None:
    """Idle and at-rest rates are differences against a quiet window; a negative one is noise."""
    found = figures()
    found["fan_out"][2]["idle_requests_per_agent_s"] = -0.002
    found["operator"][0]["rest_requests_per_config_s"] = -0.01
    i = inputs(found)
    assert (i.idle_requests_per_agent_s, i.rest_requests_per_config_s) == (0.0, 0.0)
    assert project(i, 10_000).operator_requests_s == 0.0
