"""Prometheus and Alertmanager behind the demo's web configs: Prometheus alerts through its
credentials, nothing without them, and `dockpulse reload` checks the rules before reloading
both (a broken edit is one line and the running rules stay)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from dockpulse_relay.compose.chart import alert_charts
from dockpulse_relay.intake.payload import parse_notification
from dockpulse_stack.web_access import USER, write_web_configs
from testkit.helpers import wait_until
from testkit.local_stack import LocalStack, copy_rules, prometheus_config
from tests.relay.payloads import alert, notification

pytestmark = pytest.mark.slow  # starts a real Prometheus / Alertmanager of its own

SECRETS = {
    "PROMETHEUS_PASSWORD": "prom-test-password",
    "ALERTMANAGER_PASSWORD": "am-test-pw",
    "EXPORTER_PASSWORD": "exporter-test-pw",
}


def dockpulse_reload(rules: Path, prometheus: str, alertmanager: str, credentials: Path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dockpulse_stack.cli",
            "reload",
            f"--rules={rules}",
            f"--prometheus={prometheus}",
            f"--alertmanager={alertmanager}",
            f"--credentials={credentials}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_web_configs_pass_promtool(tmp_path: Path) -> None:
    paths = write_web_configs(tmp_path / "web", SECRETS)
    configs = [paths[f"{server}-web"] for server in ("prometheus", "alertmanager", "exporter")]
    result = subprocess.run(["promtool", "check", "web-config", *map(str, configs)], timeout=30)
    assert result.returncode == 0
    before = paths["prometheus-web"].read_text()
    write_web_configs(tmp_path / "web", SECRETS)  # same passwords: files left as they were
    assert paths["prometheus-web"].read_text() == before


def test_prometheus_and_alertmanager_behind_web_configs_and_reload(tmp_path: Path) -> None:
    web = write_web_configs(tmp_path / "web", SECRETS)
    prometheus_auth = (USER, SECRETS["PROMETHEUS_PASSWORD"])
    alertmanager_auth = (USER, SECRETS["ALERTMANAGER_PASSWORD"])
    rules = tmp_path / "rules"
    with LocalStack(tmp_path) as stack:
        alertmanager = stack.alertmanager(
            "http://127.0.0.1:9",  # no relay: the alerts stay in Alertmanager
            flags=[f"--web.config.file={web['alertmanager-web']}"],
            request_options={"auth": alertmanager_auth},
        )
        fast = copy_rules(rules, {"ExporterDown": "0s"})
        config = prometheus_config(1, [alertmanager.port], "none", fast, "1s")
        config["alerting"]["alertmanagers"][0]["basic_auth"] = {
            "username": USER,
            "password_file": str(web["alertmanager_password"]),
        }
        prometheus = stack.prometheus(
            config,
            flags=(f"--web.config.file={web['prometheus-web']}", "--web.enable-lifecycle"),
            request_options={"auth": prometheus_auth},
        )

        def alerts_in_alertmanager() -> list[str]:
            alerts = requests.get(
                f"{alertmanager.url}/api/v2/alerts", auth=alertmanager_auth, timeout=5
            ).json()
            return [alert["labels"]["alertname"] for alert in alerts]

        # ExporterDown (nothing on port 1): Prometheus got in with alerting's basic_auth
        assert "ExporterDown" in wait_until(alerts_in_alertmanager, timeout=60)
        # Nothing without credentials: quit, reload, silences, alerts, queries.
        for method, url in [
            ("POST", f"{prometheus.url}/-/quit"),
            ("POST", f"{prometheus.url}/-/reload"),
            ("GET", f"{prometheus.url}/api/v1/query?query=up"),
            ("POST", f"{alertmanager.url}/api/v2/silences"),
            ("POST", f"{alertmanager.url}/api/v2/alerts"),
            ("POST", f"{alertmanager.url}/-/reload"),
        ]:
            assert requests.request(method, url, json=[], timeout=5).status_code == 401, url

        def last_reload() -> str:
            answer = requests.get(
                f"{prometheus.url}/api/v1/status/runtimeinfo", auth=prometheus_auth, timeout=5
            )
            return answer.json()["data"]["lastConfigTime"]

        def rule_names() -> list[str]:
            answer = requests.get(f"{prometheus.url}/api/v1/rules", auth=prometheus_auth)
            groups = answer.json()["data"]["groups"]
            return sorted(rule["name"] for group in groups for rule in group["rules"])

        urls = (prometheus.url, alertmanager.url, web["prometheus_password"].parent)
        before = last_reload()
        result = dockpulse_reload(rules, *urls)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("reloaded") == 2
        assert wait_until(lambda: last_reload() > before, timeout=10)

        running, reloaded_at = rule_names(), last_reload()
        broken = rules / "alerting.yml"
        edited = yaml.safe_load(broken.read_text())
        edited["groups"][0]["rules"].append({"alert": "Broken", "expr": "rate(up[1m]"})
        broken.write_text(yaml.safe_dump(edited))
        result = dockpulse_reload(rules, *urls)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "rules do not load, nothing was reloaded" in lines[0], lines
        assert rule_names() == running and "Broken" not in running
        assert last_reload() == reloaded_at

        # The relay's graph queries get in with the credentials, and only with them.
        down = alert(severity="critical")
        down["generatorURL"] = f"{prometheus.url}/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        alerts = parse_notification(json.dumps(notification(down)).encode())
        [drawn] = alert_charts(prometheus.url, alerts, window=60, auth=prometheus_auth)
        assert drawn.png is not None, drawn.reason
        [refused] = alert_charts(prometheus.url, alerts, window=60)
        assert refused.png is None and "401" in refused.reason
