"""What the observability tests compare against: the metric names the four services export
(read from their metric classes on fresh registries), the dashboards and the rules files, and
the promtool / prometheus binaries (Debian's package, fetched once by deploy/local/tools.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from deploy.local import tools
from services.common.observability.metrics import new_registry
from services.dispatch.metrics import DispatchMetrics
from services.ingest.metrics import IngestMetrics
from services.orchestrator.metrics import OrchestratorMetrics
from services.scoring.metrics import ScoringMetrics

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
DASHBOARDS = sorted((OBS / "grafana").glob("*.json"))
ALERTS = OBS / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("", "_sum", "_count")}  # no `_created` series
# Grafana's variables, replaced by something PromQL parses before promtool checks an expression
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m",
                "${datasource}": "prometheus"}
# function names and keywords a PromQL expression may contain besides metric names
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "irate", "histogram_quantile", "max", "min",
    "avg", "count", "deriv", "delta", "and", "or", "unless", "on", "ignoring", "le",
    "label_replace", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "vector", "time",
}


def registries() -> dict[str, CollectorRegistry]:
    """One registry per service with its metric classes registered."""
    out = {name: new_registry() for name in ("ingest", "scoring", "orchestrator", "dispatch")}
    IngestMetrics(out["ingest"])
    ScoringMetrics(out["scoring"])
    OrchestratorMetrics(out["orchestrator"])
    DispatchMetrics(out["dispatch"])
    return out


def exported_names() -> dict[str, str]:
    """Every series name the services can expose (with `_total`, `_bucket`, ...) → service."""
    names: dict[str, str] = {}
    for service, registry in registries().items():
        for family in registry.collect():
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = service
    return names


def dashboard(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of a dashboard."""
    found = [(f"panel {p.get('title')!r} {t.get('refId')}", t["expr"])
             for p in _walk(doc.get("panels", [])) for t in p.get("targets", []) if "expr" in t]
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found.append((f"variable {var['name']}", query))
    return found


def substitute(expr: str, variables: list[str]) -> str:
    """`expr` with Grafana's variables replaced by values PromQL accepts."""
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", "x").replace(f"${name}", "x")
    return expr


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana `label_values(metric, label)` query, else None."""
    match = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)\s*", query)
    return match.group(1) if match else None


def metric_names(expr: str) -> set[str]:
    """Names in a PromQL expression that are metrics (`nurture_...`), not labels or strings."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    return set(re.findall(r"\bnurture_[a-zA-Z0-9_:]+", without_matchers))


def promtool() -> Path:
    """promtool from Debian's prometheus package (fetched once into .local/tools/)."""
    return tools.promtool()


def prometheus() -> Path:
    return tools.prometheus()
