"""The dashboards' JSON model: what Grafana needs to load them and show data without edits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.grafana import dashboards as model
from tests.grafana.conftest import Prometheus

DASHBOARDS = {path.name: model.load(path) for path in model.DASHBOARD_FILES}
ALL = pytest.mark.parametrize("name", sorted(DASHBOARDS))
PROVISIONED = {source["uid"]: source for source in model.datasources()}


def test_both_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {"containers-overview.json", "container-detail.json"}
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)


def test_datasources_have_fixed_uids() -> None:
    assert PROVISIONED["prometheus"]["type"] == "prometheus"
    assert PROVISIONED["prometheus"]["url"].startswith("http://")
    alertmanager = PROVISIONED["alertmanager"]
    assert alertmanager["type"] == "alertmanager"
    assert alertmanager["jsonData"]["implementation"] == "prometheus"


def test_dashboard_provider_reads_files() -> None:
    providers = yaml.safe_load(model.DASHBOARD_PROVIDERS_FILE.read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert Path(providers[0]["options"]["path"]).is_absolute()


@ALL
def test_modern_schema_and_panel_types(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] >= 38
    kinds = {panel["type"] for panel in model.panels(dashboard)}
    assert not kinds - model.MODERN_PANEL_TYPES, "legacy panel types"


@ALL
def test_panel_ids_unique(name: str) -> None:
    dashboard = DASHBOARDS[name]
    ids = [panel["id"] for panel in [*model.rows(dashboard), *model.panels(dashboard)]]
    assert len(ids) == len(set(ids)), ids


@ALL
def test_every_panel_has_datasource_targets_and_unit(name: str) -> None:
    problems = []
    for panel in model.panels(DASHBOARDS[name]):
        title = panel["title"]
        sources = [panel["datasource"]]
        sources += [target.get("datasource", panel["datasource"]) for target in panel["targets"]]
        for source in sources:
            provisioned = PROVISIONED.get(source.get("uid"))
            if provisioned is None or provisioned["type"] != source.get("type"):
                problems.append(f"{title}: datasource {source} is not provisioned")
        if not panel["targets"]:
            problems.append(f"{title}: no targets")
        ref_ids = [target.get("refId") for target in panel["targets"]]
        if not all(ref_ids) or len(set(ref_ids)) != len(ref_ids):
            problems.append(f"{title}: refIds {ref_ids}")
        if not all(target.get("expr", "").strip() for target in panel["targets"]):
            problems.append(f"{title}: empty expr")
        if not panel["fieldConfig"]["defaults"].get("unit"):
            problems.append(f"{title}: no unit")
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{title}: wider than the dashboard")
    assert not problems, "\n".join(problems)


@ALL
def test_template_variables(name: str) -> None:
    dashboard = DASHBOARDS[name]
    defined = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert defined["instance"]["definition"] == "label_values(dockpulse_docker_up, instance)"
    assert defined["container"]["definition"].startswith("label_values(container_up")
    assert defined["container"]["definition"].endswith(", name)")
    for variable in defined.values():
        assert variable["datasource"]["uid"] in PROVISIONED
    queries = [t.expr for t in model.targets(dashboard) + model.annotation_targets(dashboard)]
    used = set().union(*map(model.variables_used, queries))
    assert used <= set(defined) | set(model.BUILTIN_VARIABLES), used


def test_overview_selects_many_containers_detail_one() -> None:
    overview = DASHBOARDS["containers-overview.json"]["templating"]["list"]
    detail = DASHBOARDS["container-detail.json"]["templating"]["list"]
    assert {v["name"]: v["multi"] and v["includeAll"] for v in overview}["container"]
    assert not {v["name"]: v["multi"] for v in detail}["container"]


def test_overview_shows_up_down_timeline_and_stress_windows() -> None:
    overview = DASHBOARDS["containers-overview.json"]
    timelines = [p for p in model.panels(overview) if p["type"] == "state-timeline"]
    up_down = [p for p in timelines if "container_up" in p["targets"][0]["expr"]]
    assert up_down, "no container_up state timeline"
    mappings = up_down[0]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mappings["1"]["text"] == "Up" and mappings["1"]["color"] == "green"
    assert mappings["0"]["text"] == "Down" and mappings["0"]["color"] == "red"
    annotations = [a.get("expr") for a in overview["annotations"]["list"]]
    assert "dockpulse_loadtest_active == 1" in annotations


@ALL
def test_every_query_parses(name: str, prometheus: Prometheus) -> None:
    dashboard = DASHBOARDS[name]
    values = {"instance": "127.0.0.1:9487", "container": "(webapp|postgres)"}
    checked = [
        *model.targets(dashboard),
        *model.annotation_targets(dashboard),
        *model.variable_targets(dashboard),
    ]
    errors = []
    for target in checked:
        answer = prometheus.query(model.substitute(target.expr, values))
        if answer["status"] != "success":
            errors.append(f"{target}: {answer.get('error')}")
    assert not errors, "\n".join(errors)


GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


def test_overview_keeps_hosts_apart() -> None:
    """The overview may show many hosts: a series per container or probe keeps `instance`, and
    its legend names the host, so web on host1 and web on host2 are two lines, told apart."""
    problems = []
    for panel in model.panels(DASHBOARDS["containers-overview.json"]):
        for target in panel["targets"]:
            for labels in GROUPING.findall(target["expr"]):
                kept = {label.strip() for label in labels.split(",")}
                if kept & {"name", "probe"} and "instance" not in kept:
                    problems.append(f"{panel['title']}: by ({labels}) merges hosts")
            legend = target.get("legendFormat", "")
            if ("{{name}}" in legend or "{{probe}}" in legend) and "{{instance}}" not in legend:
                problems.append(f"{panel['title']}: legend {legend!r} does not name the host")
    assert not problems, "\n".join(problems)


def test_detail_shows_one_container_of_one_host() -> None:
    detail = {v["name"]: v for v in DASHBOARDS["container-detail.json"]["templating"]["list"]}
    assert not detail["instance"]["multi"] and not detail["instance"]["includeAll"]
    assert not detail["container"]["multi"] and not detail["container"]["includeAll"]
    overview = json.dumps(DASHBOARDS["containers-overview.json"])
    # The status table's link opens the row's own host, not the overview's selection.
    assert "var-instance=${__data.fields.Host}&var-container=${__data.fields.Container}" in (
        overview
    )
