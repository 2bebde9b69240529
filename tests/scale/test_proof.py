"""Past one machine, proved on real components in one running stack (see conftest.py): two
Docker hosts with an exporter each, one Prometheus reading both from a file_sd targets file, two
Alertmanager peers, two relay replicas on one PostgreSQL, mail counted at an SMTP sink.

While a Locust master and 2 workers load the webapp container on the first host (since
before Prometheus started):
- a container of one name runs on both hosts: the overview dashboard's queries give each its
  own series and legend; killed on the second host, ContainerDown fires for that host only, and
  its one mail names that host and not the other;
- a burst of 200 critical alerts across both hosts, one relay replica killed (kill -9) while it
  holds a mail, one Alertmanager peer stopped halfway (relay_replicas.py): every incident is
  mailed, the duplicates counted, the killed replica's mail taken over within 10 s. The burst's
  alerts are posted to the peers' API the way Prometheus posts alerts, labelled with both
  hosts' `instance`: 200 real containers would not start in this test's time;
- the load trips ContainerHighCpu and its mail arrives (through the surviving peer and replica);
  the master counted both workers, and its totals are what the webapp answered.
bench/relay_failover.py repeats the burst alone over several rounds.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import pytest
import requests

from testkit.helpers import scrape, value, wait_until
from testkit.local_stack import query
from testkit.relay_replicas import burst
from tests.e2e.conftest import TEST_CPU_THRESHOLD_PERCENT
from tests.grafana import dashboards as model
from tests.loadtest.conftest import webapp_requests
from tests.scale.conftest import Host, ScaleStack

pytestmark = pytest.mark.docker

LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LOCUST_ENDPOINTS = ("/", "/stress/cpu")  # what the cpu-intensive profile asks (/health: Docker too)


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


def render(legend: str, labels: dict[str, str]) -> str:
    """A legend as Grafana shows it for a series with `labels`."""
    return LEGEND_LABEL.sub(lambda match: labels.get(match[1], ""), legend)


def overview_keeps_hosts_apart(prometheus_url: str, name: str, hosts: Sequence[Host]) -> int:
    """Every per-container panel of the overview, queried as Grafana would with all hosts
    selected, gives the container `name` of each host its own series and legend; the panels."""
    board = model.load(model.GRAFANA_DIR / "dashboards" / "containers-overview.json")
    per_container = [
        (panel["title"], target["legendFormat"], model.substitute(target["expr"], values))
        for values in [{"instance": ".*", "container": name}]
        for panel in model.panels(board)
        for target in panel["targets"]
        if "{{name}}" in target.get("legendFormat", "")
    ]
    for title, legend, expr in per_container:
        result = wait_until(
            lambda expr=expr: len(found := query(prometheus_url, expr)) >= 2 and found
        )
        shown = sorted(render(legend, series["metric"]) for series in result)
        expected = sorted(render(legend, {"name": name, "instance": h.instance}) for h in hosts)
        assert shown == expected, title
    return len(per_container)


def test_failover_burst_second_host_and_distributed_load_in_one_stack(
    scale_stack: ScaleStack,
) -> None:
    first, second = scale_stack.hosts
    prometheus = scale_stack.prometheus.url
    mailbox = scale_stack.mailbox
    webapp = scale_stack.webapp
    locust = scale_stack.load
    started = time.time()
    name = f"scale-test-web-{uuid.uuid4().hex[:8]}"
    containers = [host.run(name) for host in scale_stack.hosts]
    try:
        both_up = {first.instance: 1.0, second.instance: 1.0}
        wait_until(lambda: up_on(prometheus, name) == both_up, timeout=30)
        panels = overview_keeps_hosts_apart(prometheus, name, scale_stack.hosts)

        # The container on the second host dies; its alert and mail go on during the burst.
        containers[1].kill()
        killed_at = time.time()
        failover = burst(
            scale_stack.relay_store,
            scale_stack.replicas,
            scale_stack.peers,
            mailbox,
            [host.instance for host in scale_stack.hosts],
        )
        print(" | ".join(failover.cells()))
        alerts = wait_until(lambda: firing(prometheus, "ContainerDown", name), timeout=30)
        down_mails = wait_until(lambda: mailbox.about("ContainerDown", name), timeout=30)
        # A few more evaluations: the first host's container must not join it.
        wait_until(lambda: up_on(prometheus, name) == {**both_up, second.instance: 0.0})
        still = wait_until(lambda: firing(prometheus, "ContainerDown", name), timeout=10)

        cpu_mails = wait_until(
            lambda: mailbox.about("ContainerHighCpu", webapp.name), timeout=120, interval=1
        )
        load = scrape(locust.metrics_url)
        locust.stop_users()
        # Users finish their requests, workers report every 3 s: the counts settle in seconds.
        totals: dict[str, int] = {}
        answered: dict[str, int] = {}

        def caught_up() -> bool:
            made = locust.requests_made()
            after = webapp_requests(webapp.url)
            totals.update({e: made[e] for e in LOCUST_ENDPOINTS})
            before = scale_stack.answered_before
            answered.update({e: after[e] - before[e] for e in LOCUST_ENDPOINTS})
            return totals == answered

        with suppress(AssertionError):  # reported below, with both counts
            wait_until(caught_up, timeout=30, interval=1)
        down_mails = mailbox.about("ContainerDown", name)  # late copies count too
    finally:
        output = locust.quit()  # the master quits, and its workers with it
        for container in containers:
            container.remove(force=True)

    assert panels >= 5
    # The burst: every incident mailed, the killed replica's mail taken over within 10 s.
    assert failover.lost == 0, failover
    assert failover.mailed == failover.incidents
    assert failover.claimed_at_kill >= 1  # it died holding work...
    assert failover.takeover_seconds is not None, failover  # ...which the other replica sent
    assert failover.takeover_seconds <= 10, failover
    # At least once: a mail the killed replica handed to the SMTP server but could not mark
    # sent goes again (with every alert it carries); nothing else may be mailed twice.
    assert failover.duplicates_not_held == 0, failover
    assert failover.duplicates <= failover.held_incidents, failover

    # The second host's container: its alert and its one mail name that host only.
    for found in (alerts, still):
        assert [alert["labels"]["instance"] for alert in found] == [second.instance]
    (alert,) = still
    assert alert["annotations"]["summary"] == f"Container {name} is down on {second.instance}"
    assert "last exit code 137" in alert["annotations"]["description"]  # the killed one's
    # Two peers, two replicas: one mail (two if it was in the killed replica's hands).
    assert len(down_mails) == 1 or (len(down_mails) == 2 and name in failover.held), down_mails
    down_mail = down_mails[0]
    assert down_mail.text.startswith("[CRITICAL] "), down_mail.text
    # It may carry burst alerts too (critical alerts planned together share a mail).
    section = down_mail.section(name)
    assert f"Summary:     Container {name} is down on {second.instance}" in section, section
    assert f"on {second.instance} is not running" in section
    assert not re.search(rf"{re.escape(first.instance)}\b", section), section

    # The distributed load: the CPU alert mailed, both workers counted in the master's totals.
    cpu_mail = cpu_mails[0]
    assert cpu_mail.text.startswith("[WARNING] "), cpu_mail.text
    assert f"Container {webapp.name} uses much CPU on {first.instance}" in cpu_mail.text
    assert f"(threshold {TEST_CPU_THRESHOLD_PERCENT} %)" in cpu_mail.text  # the label's own
    assert value(load, "dockpulse_loadtest_workers") == 2
    assert value(load, "dockpulse_loadtest_active", profile="cpu-intensive") == 1
    assert "Traceback" not in output, output[-3000:]
    assert totals["/"] > 0 and totals["/stress/cpu"] > 0
    assert totals == answered, output[-3000:]  # the master's totals: both workers' requests
    print(
        f"container killed on the second host -> its mail {down_mail.arrived - killed_at:.1f} s "
        f"later; CPU mail {cpu_mail.arrived - started:.1f} s into the test (loaded since "
        "before Prometheus started); "
        f"master + 2 workers: {sum(totals.values())} requests, webapp answered {answered}"
    )
