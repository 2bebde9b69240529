"""Many Docker hosts on real components: two private dockerds stand in for two hosts, each with
its own `dockpulse-exporter`, one Prometheus scraping both from a file_sd targets file. A
container of the same name runs on both; killing it on one host alerts for that host only, and
the mail names that host."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests

from tests.grafana import dashboards as model
from tests.helpers import wait_until
from tests.scale.conftest import TwoHosts
from tests.support.local_stack import query
from tests.support.mail import wait_for_mail

pytestmark = pytest.mark.docker

LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def firing(prometheus_url: str, alertname: str, name: str) -> list[dict[str, Any]]:
    """The alerts called `alertname` about container `name` that fire now (alerts API)."""
    answer = requests.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()
    return [
        alert
        for alert in answer["data"]["alerts"]
        if alert["labels"]["alertname"] == alertname
        and alert["labels"].get("name") == name
        and alert["state"] == "firing"
    ]


def up_on(prometheus_url: str, name: str) -> dict[str, float]:
    """container_up of `name` per host (instance)."""
    found = query(prometheus_url, f'container_up{{name="{name}"}}')
    return {series["metric"]["instance"]: float(series["value"][1]) for series in found}


def test_container_killed_on_second_host_alerts_and_mails_for_that_host_only(
    two_hosts: TwoHosts,
) -> None:
    first, second = two_hosts.hosts
    prometheus = two_hosts.prometheus.url
    name = f"scale-test-web-{uuid.uuid4().hex[:8]}"
    containers = [host.run(name) for host in two_hosts.hosts]
    try:
        both_up = {first.instance: 1.0, second.instance: 1.0}
        wait_until(lambda: up_on(prometheus, name) == both_up, timeout=30)

        containers[1].kill()
        killed_at = time.time()
        alerts = wait_until(lambda: firing(prometheus, "ContainerDown", name), timeout=30)
        mail = wait_for_mail(two_hosts.relay.outbox, "ContainerDown", name)
        # A few more evaluations: the first host's container must not join it.
        wait_until(lambda: up_on(prometheus, name) == {**both_up, second.instance: 0.0})
        still = wait_until(lambda: firing(prometheus, "ContainerDown", name), timeout=10)
    finally:
        for container in containers:
            container.remove(force=True)

    for found in (alerts, still):
        assert [alert["labels"]["instance"] for alert in found] == [second.instance]
    (alert,) = still
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == f"Container {name} is down on {second.instance}"
    assert f"on {second.instance} is not running" in alert["annotations"]["description"]
    assert "last exit code 137" in alert["annotations"]["description"]  # the killed one's
    assert f"Container {name} is down on {second.instance}" in mail.text
    assert not re.search(rf"{re.escape(first.instance)}\b", mail.text), mail.text
    print(f"container killed on the second host -> mail {mail.arrived - killed_at:.1f} s later")


def render(legend: str, labels: dict[str, str]) -> str:
    """A legend as Grafana shows it for a series with `labels`."""
    return LEGEND_LABEL.sub(lambda match: labels.get(match[1], ""), legend)


def test_overview_dashboard_shows_each_host_apart(two_hosts: TwoHosts) -> None:
    """Every per-container overview panel, queried as Grafana would with all hosts selected,
    gives the same-named container of each host its own series and its own legend."""
    prometheus = two_hosts.prometheus.url
    name = f"scale-test-db-{uuid.uuid4().hex[:8]}"
    board = model.load(model.GRAFANA_DIR / "dashboards" / "containers-overview.json")
    per_container = [
        (panel["title"], target["legendFormat"], model.substitute(target["expr"], values))
        for values in [{"instance": ".*", "container": name}]
        for panel in model.panels(board)
        for target in panel["targets"]
        if "{{name}}" in target.get("legendFormat", "")
    ]
    containers = [host.run(name) for host in two_hosts.hosts]
    try:
        for title, legend, expr in per_container:
            result = wait_until(
                lambda expr=expr: len(found := query(prometheus, expr)) >= 2 and found
            )
            shown = sorted(render(legend, series["metric"]) for series in result)
            expected = sorted(
                render(legend, {"name": name, "instance": host.instance})
                for host in two_hosts.hosts
            )
            assert shown == expected, title
    finally:
        for container in containers:
            container.remove(force=True)
    assert len(per_container) >= 5
