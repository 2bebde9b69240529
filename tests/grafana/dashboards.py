"""Reading the Grafana dashboards and provisioning files the way Grafana would use them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"

MODERN_PANEL_TYPES = {
    "timeseries",
    "stat",
    "gauge",
    "state-timeline",
    "table",
    "bargauge",
    "alertlist",
}
# Grafana's built-in interval variables, with values that suit a 1 s scrape interval.
BUILTIN_VARIABLES = {"__rate_interval": "5s", "__interval": "1s", "__range": "1m"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def datasources() -> list[dict[str, Any]]:
    return yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, including those nested in (collapsed) rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def rows(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] == "row"]


def targets(dashboard: dict[str, Any]) -> list[Target]:
    return [
        Target(dashboard["title"], panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def annotation_targets(dashboard: dict[str, Any]) -> list[Target]:
    return [
        Target(dashboard["title"], f"annotation {item['name']}", "-", item["expr"])
        for item in dashboard["annotations"]["list"]
        if item.get("datasource", {}).get("type") == "prometheus"
    ]


def variable_targets(dashboard: dict[str, Any]) -> list[Target]:
    """The series selector inside each `label_values(selector, label)` variable query."""
    found = []
    for variable in dashboard["templating"]["list"]:
        match = LABEL_VALUES.match(variable["definition"])
        assert match, f"{variable['name']}: not label_values(...): {variable['definition']}"
        found.append(
            Target(dashboard["title"], f"variable {variable['name']}", "-", match["selector"])
        )
    return found


def variables_used(expr: str) -> set[str]:
    return {braced or bare for braced, bare in VARIABLE.findall(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """The query Grafana would send with `values` for the dashboard's variables."""
    known = {**BUILTIN_VARIABLES, **values}

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in known:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return known[name]

    return VARIABLE.sub(replace, expr)
