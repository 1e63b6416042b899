"""The Grafana dashboards: stable uids, a datasource variable every query uses, every PromQL
expression parsed by promtool, and only metrics the services really export."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.catalogue import (
    ALERTS,
    DASHBOARDS,
    dashboard,
    exported_names,
    expressions,
    label_values_metric,
    metric_names,
    promtool,
    substitute,
)

EXPECTED = {"funnel.json": "nurture-funnel", "programs.json": "nurture-programs",
            "pipeline.json": "nurture-pipeline"}


def check_exprs(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on `exprs`, each written as a recording rule of a temporary file."""
    rules = {"groups": [{"name": "dashboard-exprs", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([str(promtool()), "check", "rules", str(path)],
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_three_dashboards_exist_with_stable_uids() -> None:
    assert {p.name: dashboard(p)["uid"] for p in DASHBOARDS} == EXPECTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_the_datasource_variable(path: Path) -> None:
    doc = dashboard(path)
    variables = doc["templating"]["list"]
    ds = [v for v in variables if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds] == [("datasource", "prometheus")]
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert panels, "a dashboard without panels"
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"]), "panel ids repeat"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for var in variables:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_expression_parses(path: Path, tmp_path: Path) -> None:
    doc = dashboard(path)
    names = [v["name"] for v in doc["templating"]["list"]]
    exprs = []
    for _, expr in expressions(doc):
        metric = label_values_metric(expr)  # Grafana's own function: check its selector
        exprs.append(metric if metric else substitute(expr, names))
    assert all("$" not in e for e in exprs), [e for e in exprs if "$" in e]
    result = check_exprs(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_the_expression_check_rejects_broken_promql(tmp_path: Path) -> None:
    result = check_exprs(['sum by (stage (nurture_orchestrator_leads)'], tmp_path)
    assert result.returncode != 0


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_use_only_exported_metrics(path: Path) -> None:
    exported = exported_names()
    used = {name: where for where, expr in expressions(dashboard(path))
            for name in metric_names(expr)}
    assert used, "no metric found in the dashboard"
    missing = {name: where for name, where in used.items() if name not in exported}
    assert not missing, f"metrics no service exports: {missing}"


def test_the_funnel_dashboard_answers_the_marketing_questions() -> None:
    exprs = " ".join(e for _, e in expressions(dashboard(DASHBOARDS[0].parent / "funnel.json")))
    for needed in ("nurture_orchestrator_leads", "nurture_orchestrator_conversions_total",
                   "nurture_orchestrator_time_in_stage_seconds_bucket",
                   "nurture_orchestrator_sales_cycle_seconds_bucket", 'nurtured'):
        assert needed in exprs


# Counted from the database by every orchestrator replica (each exports the same whole-table
# count) or, for the outbox, from a table every replica of a service shares: summing the
# replicas multiplies the number. They are aggregated with max (or min), never sum.
DB_GAUGES = ("nurture_orchestrator_leads", "nurture_orchestrator_active_enrollments",
             "nurture_orchestrator_timers_pending", "nurture_orchestrator_timers_overdue",
             "nurture_orchestrator_timer_oldest_overdue_seconds",
             "nurture_outbox_pending_records", "nurture_outbox_parked_records")


def aggregations_of(name: str, expr: str) -> list[str]:
    """The aggregation operator directly around each selector of `name` in `expr`."""
    pattern = (r"\b(\w+)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*" + re.escape(name)
               + r"\s*(?:\{[^}]*\})?\s*\)")
    found = re.findall(pattern, expr)
    bare = len(re.findall(r"\b" + re.escape(name) + r"\b", expr))
    return found + ["none"] * (bare - len(found))


def test_aggregations_of_sees_sum_and_bare_selectors() -> None:
    assert aggregations_of("nurture_orchestrator_leads",
                           'sum by (stage) (nurture_orchestrator_leads{stage="x"})') == ["sum"]
    assert aggregations_of("nurture_orchestrator_leads", "nurture_orchestrator_leads") == ["none"]


@pytest.mark.parametrize("path", [*DASHBOARDS, ALERTS], ids=lambda p: p.name)
def test_database_gauges_are_never_summed_over_replicas(path: Path) -> None:
    if path.suffix == ".json":
        exprs = [e for _, e in expressions(dashboard(path))]
    else:
        exprs = [r["expr"] for g in yaml.safe_load(path.read_text())["groups"]
                 for r in g["rules"]]
    checked = 0
    for expr in exprs:
        for name in DB_GAUGES:
            for agg in aggregations_of(name, expr):
                assert agg in ("max", "min"), (path.name, expr)
                checked += 1
    if path.name in ("funnel.json", "pipeline.json", "programs.json"):
        assert checked, "no database gauge in the dashboard"
