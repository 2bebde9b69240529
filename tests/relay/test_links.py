"""The mail's links: silence forms followed against a real Alertmanager, graph and dashboard.

Debian's Alertmanager ships without its web UI, so the form itself cannot be opened here: the
tests read the matchers back out of the link (the `filter` syntax of the UI's
Utils/Filter.stringifyFilter: `{key="json-quoted value", ...}`) and create the silence through
API v2 with them, then check which alerts Alertmanager silences.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from dockpulse_relay.compose.links import (
    DASHBOARD_CONTAINER_VARIABLE,
    DASHBOARD_INSTANCE_VARIABLE,
    DASHBOARD_SLUG,
    DASHBOARD_UID,
    alert_links,
    filter_text,
    silence_form_url,
)
from dockpulse_relay.model import Alert
from testkit.helpers import free_port, wait_until
from testkit.local_stack import LocalStack, Service
from testkit.silences import SilenceError, create_silence, matchers_from_silence_url

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 5, 1, 10, 30, tzinfo=UTC).timestamp()
EXPR = (
    "dockpulse:container_memory_percent"
    " > on (instance, name) dockpulse:container_memory_threshold_percent"
)


def make_alert(alertname: str, container: str, instance: str = "host1:9487") -> Alert:
    labels = {
        "alertname": alertname,
        "severity": "warning",
        "instance": instance,
        "job": "exporter",
        "name": container,
    }
    return Alert(
        fingerprint=f"{alertname}-{container}",
        status="firing",
        starts_at="2024-05-01T10:00:00+00:00",
        ends_at="",
        alertname=alertname,
        severity="warning",
        container=container,
        labels=labels,
        annotations={"runbook": "docker stats web"},
        generator_url="http://prometheus-1:9090/graph?g0.expr="
        + requests.utils.quote(EXPR, safe="")
        + "&g0.tab=1",
    )


WEB_MEMORY = make_alert("ContainerHighMemory", "web")
WEB_CPU = make_alert("ContainerHighCpu", "web")
DB_CPU = make_alert("ContainerHighCpu", "db")
WEB_ELSEWHERE = make_alert("ContainerHighCpu", "web", instance="host2:9487")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Service]:
    """The real Alertmanager with the repository's config, holding four firing alerts."""
    with LocalStack(tmp_path) as stack:
        service = stack.alertmanager(f"http://127.0.0.1:{free_port()}")
        ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        posted = [
            {"labels": alert.labels, "annotations": alert.annotations, "endsAt": ends}
            for alert in (WEB_MEMORY, WEB_CPU, DB_CPU, WEB_ELSEWHERE)
        ]
        answer = requests.post(f"{service.url}/api/v2/alerts", json=posted, timeout=5)
        assert answer.status_code == 200, answer.text
        yield service


def alert_states(alertmanager: Service) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """(alertname, name, instance) -> (state, silencedBy) as Alertmanager reports them."""
    answer = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=5)
    return {
        (item["labels"]["alertname"], item["labels"]["name"], item["labels"]["instance"]): (
            item["status"]["state"],
            item["status"]["silencedBy"],
        )
        for item in answer.json()
    }


def test_container_silence_link_silences_every_alert_of_that_container(
    alertmanager: Service,
) -> None:
    links = alert_links(WEB_MEMORY, alertmanager.url + "/", "http://prometheus:9090")
    assert links.silence_container is not None
    assert links.silence_container.startswith(f"{alertmanager.url}/#/silences/new?filter=")
    matchers = matchers_from_silence_url(links.silence_container)
    assert matchers == {"instance": "host1:9487", "name": "web"}

    silence_id = create_silence(alertmanager.url, matchers, duration=3600)

    silence = requests.get(f"{alertmanager.url}/api/v2/silence/{silence_id}", timeout=5).json()
    assert silence["status"]["state"] == "active"
    lasts = datetime.fromisoformat(silence["endsAt"]) - datetime.fromisoformat(silence["startsAt"])
    assert abs(lasts.total_seconds() - 3600) < 5
    states = wait_until(
        lambda: (
            (s := alert_states(alertmanager))
            and s[("ContainerHighCpu", "web", "host1:9487")][0] == "suppressed"
            and s
        )
    )
    assert states[("ContainerHighMemory", "web", "host1:9487")] == ("suppressed", [silence_id])
    assert states[("ContainerHighCpu", "web", "host1:9487")] == ("suppressed", [silence_id])
    assert states[("ContainerHighCpu", "db", "host1:9487")] == ("active", [])
    assert states[("ContainerHighCpu", "web", "host2:9487")] == ("active", [])  # other host


def test_alert_silence_link_silences_only_that_alert(alertmanager: Service) -> None:
    links = alert_links(WEB_MEMORY, alertmanager.url, "http://prometheus:9090")
    matchers = matchers_from_silence_url(links.silence_alert)
    assert matchers == dict(sorted(WEB_MEMORY.labels.items()))

    silence_id = create_silence(alertmanager.url, matchers, duration=600, comment="test")

    states = wait_until(
        lambda: (
            (s := alert_states(alertmanager))
            and s[("ContainerHighMemory", "web", "host1:9487")][0] == "suppressed"
            and s
        )
    )
    assert states[("ContainerHighMemory", "web", "host1:9487")] == ("suppressed", [silence_id])
    assert states[("ContainerHighCpu", "web", "host1:9487")] == ("active", [])


def test_create_silence_says_why_alertmanager_refused(alertmanager: Service) -> None:
    with pytest.raises(SilenceError, match=r"refused the silence: HTTP 422 .*at least 1 items"):
        create_silence(alertmanager.url, {}, duration=60)


def test_create_silence_against_no_alertmanager_fails_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SilenceError, match=f"Alertmanager at {url} unreachable"):
        create_silence(url, {"name": "web"}, timeout=1)


def test_filter_quotes_values_as_alertmanager_ui_does() -> None:
    matchers = {"name": 'we"b', "path": "a\\b, c}"}
    assert filter_text(matchers) == '{name="we\\"b", path="a\\\\b, c}"}'
    url = silence_form_url("http://am:9093/", matchers, comment="for 1 h")
    assert url.startswith("http://am:9093/#/silences/new?filter=%7Bname%3D%22we%5C%22b%22%2C%20")
    assert url.endswith("&comment=for%201%20h")
    assert matchers_from_silence_url(url) == matchers


def test_a_container_silence_link_only_for_alerts_naming_a_container() -> None:
    labels = {"alertname": "ExporterDown", "severity": "critical", "instance": "h:1", "job": "e"}
    alert = Alert("f", "firing", "", "", "ExporterDown", "critical", "e", labels, {}, "")
    links = alert_links(alert, "http://am:9093", "http://prom:9090", "http://grafana:3000")
    assert links.silence_container is None
    assert links.dashboard is None
    assert links.prometheus_graph == "http://prom:9090/alerts"


def test_prometheus_graph_link_shows_the_expression_over_the_window() -> None:
    links = alert_links(WEB_MEMORY, "http://am:9093", "http://prom:9090/", window=1800)
    parts = urlsplit(links.prometheus_graph)
    assert (parts.netloc, parts.path) == ("prom:9090", "/graph")
    query = parse_qs(parts.query)
    assert query == {"g0.expr": [EXPR], "g0.tab": ["0"], "g0.range_input": ["30m"]}


def test_dashboard_link_opens_container_detail_for_that_container_and_time() -> None:
    links = alert_links(
        WEB_MEMORY, "http://am:9093", "http://prom:9090", "http://grafana:3000/", 1800, NOW
    )
    assert links.dashboard is not None
    parts = urlsplit(links.dashboard)
    assert parts.path == f"/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    fired = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
    assert query == {
        "orgId": "1",
        "var-instance": "host1:9487",
        "var-container": "web",
        "from": str(int((fired - 450) * 1000)),  # the window ends at 10:00: start before it fired
        "to": str(int(NOW * 1000)),
    }


def test_dashboard_constants_match_the_dashboard_file() -> None:
    dashboard = json.loads((REPO / "grafana" / "dashboards" / "container-detail.json").read_text())
    assert dashboard["uid"] == DASHBOARD_UID
    variables = {item["name"] for item in dashboard["templating"]["list"]}
    assert {DASHBOARD_INSTANCE_VARIABLE, DASHBOARD_CONTAINER_VARIABLE} <= variables
    container = next(
        item
        for item in dashboard["templating"]["list"]
        if item["name"] == DASHBOARD_CONTAINER_VARIABLE
    )
    assert container["query"].endswith(", name)")  # the variable holds the `name` label
