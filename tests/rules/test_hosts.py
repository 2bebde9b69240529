"""Many Docker hosts: the exporters Prometheus scrapes come from a targets file the user edits,
and no rule mixes two hosts' containers (promtool proves it on data in
prometheus/tests/multi_host_test.yml; these checks keep new rules in line)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.rules.conftest import PROMETHEUS_DIR

AGGREGATION = re.compile(
    r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile)\s*"
    r"(?:(by|without)\s*\(([^)]*)\))?\s*\("
)
RULES = [
    rule
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
]


def rule_id(rule: dict[str, Any]) -> str:
    return rule.get("alert") or rule["record"]


def test_exporters_come_from_the_targets_file() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    exporter = next(job for job in config["scrape_configs"] if job["job_name"] == "exporter")
    assert "static_configs" not in exporter
    (sd_config,) = exporter["file_sd_configs"]
    assert sd_config["files"] == ["targets/exporters.yml"]  # next to prometheus.yml
    groups = yaml.safe_load((PROMETHEUS_DIR / "targets" / "exporters.yml").read_text())
    targets = [target for group in groups for target in group["targets"]]
    assert targets == ["127.0.0.1:9487"]  # the compose stack's own exporter
    assert all(set(group) <= {"targets", "labels"} for group in groups)


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_every_aggregation_keeps_the_host(rule: dict[str, Any]) -> None:
    """`max by (name)` would merge web on host1 with web on host2; every aggregation of a rule
    keeps `instance` (a constant like vector(40) aggregates nothing)."""
    for match in AGGREGATION.finditer(rule["expr"]):
        _operator, clause, labels = match.groups()
        kept = {label.strip() for label in (labels or "").split(",")}
        assert clause == "by" and "instance" in kept, f"{match.group(0)} drops the host"


# The Watchdog is the heartbeat of the alert path itself, not about any host.
@pytest.mark.parametrize(
    "rule", [r for r in RULES if r.get("alert", "Watchdog") != "Watchdog"], ids=rule_id
)
def test_every_alert_names_its_host(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert "$labels.instance" in annotations["summary"]  # the mail's summary line
    assert "$labels.instance" in annotations["description"]
