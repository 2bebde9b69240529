"""The alerting configs through the tools that read them: promtool and amtool.

`promtool test rules` runs the unit tests in prometheus/tests/ (firing, not firing, `for`
delays, per-container overrides); the checks here also make sure every alert has such tests,
and that the tests would notice a changed threshold.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rules.conftest import ALERTMANAGER_CONFIG, PROMETHEUS_DIR, binary, run_tool

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


ALERTS = {rule["alert"]: rule for rule in rules() if "alert" in rule}


def test_prometheus_config_is_valid_and_loads_every_rule_file() -> None:
    result = run_tool(binary("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"exporter", "webapp", "relay", "loadtest", "prometheus", "alertmanager"}
    assert jobs["exporter"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_rule_file_is_valid(path: Path) -> None:
    result = run_tool(binary("promtool"), "check", "rules", str(path))
    count = sum(len(group["rules"]) for group in yaml.safe_load(path.read_text())["groups"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = run_tool(binary("promtool"), "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


@pytest.mark.parametrize("alertname", sorted(ALERTS))
def test_alert_is_labelled_annotated_and_unit_tested(alertname: str) -> None:
    """Every alert fires in a test and stays quiet in another; a heartbeat (the Watchdog)
    instead fires at every evaluation tested, and has no severity (nobody is paged by it)."""
    rule = ALERTS[alertname]
    heartbeat = rule["labels"].get("heartbeat") == "true"
    assert rule["labels"]["severity"] in ({"none"} if heartbeat else {"critical", "warning"})
    assert {"summary", "description", "runbook"} <= set(rule["annotations"])
    assert "$value" in rule["annotations"]["description"] or alertname == "ContainerMissing"
    cases = [
        case
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alertname
    ]
    assert any(case.get("exp_alerts") for case in cases), "no test where it fires"
    if heartbeat:
        assert len(cases) >= 2 and all(case.get("exp_alerts") for case in cases)
    else:
        assert any(not case.get("exp_alerts") for case in cases), "no test where it stays quiet"


def test_unit_tests_notice_a_changed_default_threshold(tmp_path: Path) -> None:
    """The default lives in one place; moving it changes which containers alert."""
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    thresholds = tmp_path / "rules" / "thresholds.yml"
    text = thresholds.read_text()
    assert "expr: vector(40)" in text
    thresholds.write_text(text.replace("expr: vector(40)", "expr: vector(55)"))
    result = run_tool(
        binary("promtool"), "test", "rules", str(tmp_path / "tests" / "containers_test.yml")
    )
    assert result.returncode != 0
    assert "alertname: ContainerHighCpu" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "config", [ALERTMANAGER_CONFIG, ALERTMANAGER_CONFIG.with_name("alertmanager-ha.yml")]
)
def test_alertmanager_config_is_valid(config: Path) -> None:
    """The shipped config, and the one posting to two relay replicas (compose profile ha)."""
    result = run_tool(binary("amtool"), "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 3 inhibit rules" in result.stdout
    assert " - 4 receivers" in result.stdout


def test_alertmanager_posts_to_the_relay_with_a_token_file() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    paths = {
        "relay-critical": "/webhook",
        "relay-warning": "/webhook",
        "relay-heartbeat": "/heartbeat",
    }
    for receiver in config["receivers"]:
        if receiver["name"] == "direct-email":
            continue
        (webhook,) = receiver["webhook_configs"]
        assert webhook["url"] == f"http://127.0.0.1:9095{paths[receiver['name']]}"
        assert webhook["send_resolved"] is (receiver["name"] != "relay-heartbeat")
        authorization = webhook["http_config"]["authorization"]
        assert authorization == {
            "type": "Bearer",
            "credentials_file": "/etc/alertmanager/relay_token",
        }


def test_inhibitions_name_existing_alerts() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            pattern = re.fullmatch(r'alertname=~"(.+)"', matcher)
            assert pattern, matcher
            names = [name for name in ALERTS if re.fullmatch(pattern.group(1), name)]
            assert names, f"{matcher} matches no alert rule"


ROUTES = [
    ({"alertname": "ContainerDown", "severity": "critical", "name": "web"}, "relay-critical"),
    ({"alertname": "ProbeFailed", "severity": "critical", "probe": "webapp"}, "relay-critical"),
    (
        {"alertname": "ProbeCertificateInvalid", "severity": "critical", "probe": "edge"},
        "relay-critical",
    ),
    ({"alertname": "ContainerHighCpu", "severity": "warning", "name": "web"}, "relay-warning"),
    ({"alertname": "ProbeSlow", "severity": "warning", "probe": "home"}, "relay-warning"),
    ({"alertname": "SomethingElse"}, "relay-warning"),
    ({"alertname": "Watchdog", "severity": "none", "heartbeat": "true"}, "relay-heartbeat"),
    # The relay cannot mail its own death: Alertmanager's own e-mail does.
    ({"alertname": "RelayDown", "severity": "critical", "job": "relay"}, "direct-email"),
    ({"alertname": "RelayCannotSend", "severity": "critical", "backend": "ses"}, "direct-email"),
    ({"alertname": "RelayQueueStalled", "severity": "critical"}, "direct-email"),
    ({"alertname": "RelayDeliveryFailing", "severity": "critical"}, "direct-email"),
    ({"alertname": "AlertmanagerNotificationsFailing", "severity": "critical"}, "direct-email"),
    ({"alertname": "RelayDeadLetters", "severity": "warning"}, "relay-warning"),
]


@pytest.mark.parametrize(
    ("labels", "receiver"), ROUTES, ids=lambda v: v if isinstance(v, str) else v["alertname"]
)
def test_route(labels: dict[str, str], receiver: str) -> None:
    result = run_tool(
        binary("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *(f"{key}={value}" for key, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_critical_alerts_go_at_once_and_warnings_are_grouped() -> None:
    result = run_tool(binary("amtool"), "config", "routes", f"--config.file={ALERTMANAGER_CONFIG}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '{severity="critical"}  receiver: relay-critical' in result.stdout
    assert '{severity="warning"}  receiver: relay-warning' in result.stdout
    routes = {
        route["receiver"]: route
        for route in yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["route"]["routes"]
    }
    critical, warning = routes["relay-critical"], routes["relay-warning"]
    assert critical["group_wait"] == "0s"
    assert critical["group_by"] == ["..."]
    assert warning["group_by"] == ["alertname", "instance", "name"]
    assert warning["group_wait"] == "5s"
