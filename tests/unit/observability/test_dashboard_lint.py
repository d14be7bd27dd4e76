"""Grafana's dashboard linter rules (github.com/grafana/dashboard-linter), on every dashboard,
variable, panel and target Lookout ships.

The rules, and why they matter here:
- job and instance variables, and a `job=~"$job", instance=~"$instance"` matcher in every
  query: two deployments (or a test and a production job) sharing one Prometheus are
  otherwise summed into one line;
- one `datasource` variable labelled "Data source"; query variables reload on time change;
- dashboards are not editable in the UI: they are provisioned from this repository, and an
  edit made in Grafana is lost on the next provisioning;
- every panel has a unit; `rate()` ranges are `$__rate_interval`; counters are read only
  through rate/irate/increase;
- `schemaVersion` is the one Grafana 12 (the Compose file's Grafana) writes, so Grafana does
  not migrate the JSON on every load and an export diffs cleanly against the repository.
"""

from __future__ import annotations

import pytest

from tests.dashboard_exprs import dashboard_files, iter_panels, load_dashboard, selectors

SCHEMA_VERSION = 41
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana's unit ids that fit Lookout's panels (a subset of Grafana's valueFormats
#: categories.ts, which the linter checks against).
UNITS = {"none", "short", "percent", "percentunit", "s", "ms", "bytes", "decbytes", "reqps",
         "ops", "cps", "rps", "wps", "dateTimeAsIso", "dtdurations", "bool"}
VARIABLE_FUNCTIONS = ("label_values(", "label_names(", "metrics(", "query_result(")

DASHBOARDS = {path.stem: load_dashboard(path) for path in dashboard_files()}
PANELS = [(name, panel) for name, dash in DASHBOARDS.items()
          for panel in iter_panels(dash) if panel["type"] != "row"]
TARGETS = [(name, panel, target) for name, panel in PANELS for target in panel["targets"]]


def variables(dash: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def unit(panel: dict) -> str | None:
    """The unit an override sets, else the default one (the order the linter reads them)."""
    config = panel.get("fieldConfig", {})
    for override in config.get("overrides", []):
        for prop in override.get("properties", []):
            if prop["id"] == "unit":
                return prop["value"]
    return config.get("defaults", {}).get("unit")


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_is_provisioned_code_at_the_current_schema(name) -> None:
    dash = DASHBOARDS[name]
    assert dash["editable"] is False, "provisioned dashboards are edited in the repository"
    assert dash["schemaVersion"] == SCHEMA_VERSION


@pytest.mark.parametrize("name", DASHBOARDS)
def test_one_datasource_variable_labelled_data_source(name) -> None:
    sources = [v for v in DASHBOARDS[name]["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["label"], v["query"]) for v in sources] == [
        ("datasource", "Data source", "prometheus")]


@pytest.mark.parametrize("label", ["job", "instance"])
@pytest.mark.parametrize("name", DASHBOARDS)
def test_job_and_instance_variables(name, label) -> None:
    var = variables(DASHBOARDS[name]).get(label)
    assert var is not None, f"{name} has no {label} variable"
    assert var["type"] == "query" and var["datasource"] == DATASOURCE
    assert var["label"] == label.title()
    assert var["multi"] is True and var["includeAll"] is True and var["allValue"] == ".+"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_query_variables_use_label_functions_and_reload_on_time_change(name) -> None:
    for var in DASHBOARDS[name]["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query.startswith(VARIABLE_FUNCTIONS), f"{var['name']}: {query}"
        assert var["refresh"] == 2, f"{var['name']} must refresh on time range change"
        assert var["datasource"] == DATASOURCE, var["name"]


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=lambda p: p if isinstance(p, str)
                         else p["title"])
def test_every_panel_has_a_unit_title_and_description(name, panel) -> None:
    assert unit(panel) in UNITS, f"{panel['title']!r} has unit {unit(panel)!r}"
    assert panel["title"] and panel["description"]
    assert panel["datasource"] == DATASOURCE


@pytest.mark.parametrize(("name", "panel", "target"), TARGETS,
                         ids=lambda p: p if isinstance(p, str) else p.get("title", p.get("refId")))
def test_every_selector_is_scoped_to_the_chosen_job_and_instance(name, panel, target) -> None:
    found = selectors(target["expr"])
    assert found, target["expr"]
    for sel in found:
        assert sel.matchers.get("job") == ("=~", "$job"), f"{sel.name} in {target['expr']}"
        assert sel.matchers.get("instance") == ("=~", "$instance"), \
            f"{sel.name} in {target['expr']}"


@pytest.mark.parametrize(("name", "panel", "target"), TARGETS,
                         ids=lambda p: p if isinstance(p, str) else p.get("title", p.get("refId")))
def test_rates_use_rate_interval_and_counters_are_rated(name, panel, target) -> None:
    for sel in selectors(target["expr"]):
        if sel.enclosing in {"rate", "irate"}:
            assert sel.range == "$__rate_interval", f"{sel.name} in {target['expr']}"
        if sel.name.endswith("_total"):
            assert sel.range and sel.enclosing in {"rate", "irate", "increase"}, \
                f"counter {sel.name} read raw in {target['expr']}"


def test_the_scope_check_catches_an_unscoped_query() -> None:
    (sel,) = selectors('sum(rate(lookout_alerts_total{job=~"$job"}[$__rate_interval]))')
    assert sel.matchers == {"job": ("=~", "$job")}
    assert "instance" not in sel.matchers
