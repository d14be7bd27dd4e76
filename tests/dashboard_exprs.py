"""Every PromQL expression Lookout ships (dashboard panels and alerting rules), for the tests.

Grafana-only macros and template variables are replaced by what Grafana would send, so
Prometheus can parse and evaluate the result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "dashboards"
RULES_FILE = DASHBOARDS / "prometheus" / "lookout-rules.yml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)")


@dataclass(frozen=True)
class PanelExpr:
    """One target of one dashboard panel."""

    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def iter_panels(dashboard: dict) -> list[dict]:
    """All panels, including those nested in collapsed rows."""
    out: list[dict] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def grafana_substitutions(dashboard: dict, rate_interval: str, range_: str) -> dict[str, str]:
    """What Grafana puts in for macros and (all-selected) template variables."""
    subs = {"$__rate_interval": rate_interval, "$__interval": rate_interval, "$__range": range_}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "datasource":
            continue
        value = var.get("allValue") or ".*"
        subs[f"${{{var['name']}}}"] = value
        subs[f"${var['name']}"] = value
    return subs


def render(expr: str, subs: dict[str, str]) -> str:
    for key in sorted(subs, key=len, reverse=True):
        expr = expr.replace(key, subs[key])
    return expr


def panel_exprs(rate_interval: str = "1m", range_: str = "5m") -> list[PanelExpr]:
    out: list[PanelExpr] = []
    for path in dashboard_files():
        dash = load_dashboard(path)
        subs = grafana_substitutions(dash, rate_interval, range_)
        for panel in iter_panels(dash):
            for target in panel.get("targets", []):
                out.append(
                    PanelExpr(
                        path.stem, panel["id"], panel.get("title", ""), target.get("refId", ""),
                        render(target["expr"], subs),
                    )
                )
    return out


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Names of the Lookout metrics an expression reads (string literals ignored)."""
    bare = _STRING.sub('""', expr)
    return {m for m in _NAME.findall(bare) if m.startswith("lookout_")}
