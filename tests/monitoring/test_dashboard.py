"""The Grafana dashboard and provisioning: well-formed, and every query reads series that exist."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.monitoring.promql import GPU_ONLY, GRAFANA_DIR, dashboard_expressions, metric_names, rules


def _dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA_DIR / "dashboards" / "facerec.json").read_text()))


@pytest.mark.unit
def test_metric_names_are_extracted_from_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (route, le) "
        '(rate(facerec_http_request_duration_seconds_bucket{route=~"/v1.*"}[1m])))'
        " / clamp_min(sum without (model) (nv_inference_exec_count offset 1h30m), 1e-9)"
        " and on (instance) up == 1"
    )
    assert metric_names(expr) == {
        "facerec_http_request_duration_seconds_bucket",
        "nv_inference_exec_count",
        "up",
    }
    assert metric_names("triton:average_batch_size:ratio_rate1m > 4") == {
        "triton:average_batch_size:ratio_rate1m"
    }


@pytest.mark.unit
def test_provisioning_points_the_dashboard_at_its_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in datasources["datasources"] if d["type"] == "prometheus"}
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "facerec.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            # A heading: an open row's panels follow it at the top level.
            assert not panel.get("targets") and not panel.get("panels"), panel["title"]
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]


@pytest.mark.unit
def test_dashboard_covers_what_operators_need() -> None:
    reads = set().union(*(metric_names(e) for _, e in dashboard_expressions(_dashboard())))
    assert "facerec:http_requests:rate1m" in reads  # throughput
    assert {f"facerec:http_request_duration_seconds:p{q}_1m" for q in (50, 95, 99)} <= reads
    assert "facerec:http_requests_5xx:ratio_rate5m" in reads  # errors
    assert "triton:average_batch_size:ratio_rate1m" in reads
    assert "triton:queue_seconds_per_request:ratio_rate1m" in reads
    jobs = {"queue_length", "items", "items_per_second", "retries", "dead_letters"}
    assert {f"facerec_job_{name}" for name in jobs} <= reads


@pytest.mark.integration
def test_every_query_reads_series_that_exist(known_names: set[str]) -> None:
    for title, expr in dashboard_expressions(_dashboard()):
        unknown = metric_names(expr) - known_names - GPU_ONLY
        assert not unknown, f"panel {title!r} reads unknown series {sorted(unknown)} in {expr!r}"


@pytest.mark.integration
def test_every_rule_reads_series_that_exist(known_names: set[str]) -> None:
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known_names - GPU_ONLY
        assert not unknown, f"rule {rule.get('record') or rule.get('alert')} reads unknown {sorted(unknown)}"
