"""The shipped Grafana dashboards are valid and read only metrics the worker exports."""

from __future__ import annotations

import re

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.core.metrics import Metrics
from tests.dashboard_exprs import (
    DASHBOARDS,
    dashboard_files,
    iter_panels,
    load_dashboard,
    metric_names,
    panel_exprs,
    rules,
)

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
PANEL_TYPES = {"timeseries", "stat", "bargauge", "table", "heatmap", "gauge", "row"}


def exported_names() -> set[str]:
    """Every sample name the worker's registry can expose, whether or not observed yet."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


EXPORTED = exported_names()


def test_two_dashboards_ship() -> None:
    assert {p.stem for p in dashboard_files()} == {"lookout-overview", "lookout-queries"}


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_dashboard_is_valid_grafana_json(path) -> None:
    dash = load_dashboard(path)
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["uid"] == path.stem and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = iter_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_panels_do_not_overlap(path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in iter_panels(load_dashboard(path)):
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_template_variables_are_only_ones_the_dashboard_defines() -> None:
    for path in dashboard_files():
        dash = load_dashboard(path)
        defined = {v["name"] for v in dash["templating"]["list"]}
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", path.read_text()))
        builtin = {"__rate_interval", "__interval", "__range", "__all"}
        assert used - builtin <= defined, f"{path.name} uses undefined {used - builtin - defined}"


@pytest.mark.parametrize(
    "target", panel_exprs(), ids=lambda t: f"{t.dashboard}:{t.panel_id}{t.ref_id}"
)
def test_panel_metrics_are_exported(target) -> None:
    names = metric_names(target.expr)
    assert names, f"panel {target.panel_title!r} reads no worker metric: {target.expr}"
    assert names <= EXPORTED, f"{target.panel_title!r} reads unknown {names - EXPORTED}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_metrics_are_exported(rule) -> None:
    names = metric_names(rule["expr"])
    assert names <= EXPORTED, f"rule {rule['alert']} reads unknown {names - EXPORTED}"
    assert names or 'job="lookout"' in rule["expr"], rule["alert"]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_metric_name_parser_ignores_strings_and_labels() -> None:
    expr = 'sum by (le) (rate(lookout_stage_seconds_bucket{stage="lookout_fake"}[1m])) or up'
    assert metric_names(expr) == {"lookout_stage_seconds_bucket"}


def test_exported_names_cover_every_declared_metric() -> None:
    assert {"lookout_records_consumed_total", "lookout_stage_seconds_bucket",
            "lookout_consumer_lag", "lookout_worker_up"} <= EXPORTED
    assert "lookout_records_consumed" not in EXPORTED


def test_every_exported_metric_is_shown_somewhere() -> None:
    """A metric nobody can see is a metric nobody watches (Lookout's own; the standard
    process_* / python_* ones are for the usual per-process dashboards)."""
    used = set().union(*(metric_names(t.expr) for t in panel_exprs()))
    families = {n for n in EXPORTED if n.startswith("lookout_") and not n.endswith("_created")}
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    missing = {n for n in families if n not in used and re.sub(r"_(bucket|sum|count)$", "", n)
               not in bases}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_worker_memory_is_on_the_overview() -> None:
    (target,) = [t for t in panel_exprs() if t.panel_title == "Worker memory"]
    assert target.dashboard == "lookout-overview"
    assert "process_resident_memory_bytes" in metric_names(target.expr)
    assert "process_resident_memory_bytes" in EXPORTED


def test_provisioning_points_at_the_dashboards_folder() -> None:
    ds = yaml.safe_load((DASHBOARDS / "provisioning/datasources/prometheus.yml").read_text())
    assert [d["type"] for d in ds["datasources"]] == ["prometheus"]
    prov = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/lookout.yml").read_text())
    assert prov["providers"][0]["type"] == "file"
    assert prov["providers"][0]["options"]["path"].startswith("/var/lib/grafana/dashboards")
