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

#: Prefixes of the metrics a worker exports: its own and prometheus_client's standard ones.
WORKER_PREFIXES = ("lookout_", "process_", "python_")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''  # string literal
    r"|\[[^\]]*\]|\{[^}]*\}"                        # range / subquery, label matchers
    r"|\d+(?:\.\d+)?(?:e[+-]?\d+|[smhdwy]+)*"           # number or duration
    r"|[A-Za-z_:][\w:]*|\S"                            # identifier, any other character
)
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_LABEL_LIST = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}


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


@dataclass(frozen=True)
class Selector:
    """One vector selector of a PromQL expression, as Grafana's dashboard linter sees it."""

    name: str  # "" for a bare `{...}` selector
    matchers: dict[str, tuple[str, str]]  # label -> (operator, value)
    range: str | None  # what is between [ and ], if a range selector
    enclosing: str  # the function or aggregation whose parentheses hold it ("" if none)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of `expr`.

    A small tokenizer rather than a PromQL parser (none ships for Python): enough for the
    expressions Lookout writes, and it errs towards finding too many selectors, not too few.
    """
    tokens = _TOKEN.findall(expr)
    out: list[Selector] = []
    stack: list[str] = []  # opener of each open parenthesis
    last_call = ""
    i = 0
    while i < len(tokens):
        tok, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in _LABEL_LIST and nxt == "(":
            i = tokens.index(")", i) + 1  # skip the label list
            continue
        if tok == "(":
            stack.append(last_call)
            last_call = ""
        elif tok == ")":
            if stack:
                stack.pop()
        elif re.fullmatch(r"[A-Za-z_:][\w:]*", tok) and tok not in _KEYWORDS:
            if nxt == "(" or nxt in _LABEL_LIST:
                last_call = tok  # a function or an aggregation (maybe with `by (...)` first)
            else:
                i = _selector(tokens, i, tok, stack, out)
                continue
        elif tok.startswith("{"):
            i = _selector(tokens, i - 1, "", stack, out)
            continue
        i += 1
    return out


def _selector(tokens: list[str], i: int, name: str, stack: list[str],
              out: list[Selector]) -> int:
    """Append the selector whose name is token `i` (or nothing); return the next index."""
    i += 1
    braces = ""
    if i < len(tokens) and tokens[i].startswith("{"):
        braces, i = tokens[i], i + 1
    range_ = None
    if i < len(tokens) and tokens[i].startswith("["):
        range_, i = tokens[i][1:-1].strip(), i + 1
    matchers = {m[0]: (m[1], m[2]) for m in _MATCHER.findall(braces)}
    out.append(Selector(name, matchers, range_, stack[-1] if stack else ""))
    return i


def metric_names(expr: str) -> set[str]:
    """Names of the worker's metrics an expression reads (string literals ignored)."""
    return {s.name for s in selectors(expr) if s.name.startswith(WORKER_PREFIXES)}
