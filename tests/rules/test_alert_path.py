"""The whole alert path with real processes: a container stops, a rule fires on the exporter's
data, Alertmanager routes it to the relay with the bearer token, and a mail lands in the outbox.
"""

from __future__ import annotations

import time
import uuid
from contextlib import closing

import pytest

from dockpulse_stack.engine import Engine
from testkit.helpers import wait_until
from testkit.local_stack import query
from testkit.mail import wait_for_mail

pytestmark = pytest.mark.docker


RECORDED = [
    "dockpulse:container_cpu_percent",
    "dockpulse:container_memory_percent",
    "dockpulse:container_cpu_threshold_percent",
    "dockpulse:container_memory_threshold_percent",
    "dockpulse:container_memory_forecast_horizon_seconds",
]


def test_stopped_container_is_mailed_through_alertmanager(
    engine: Engine,
    busybox: str,
    start_relay,
    start_alertmanager,
    start_prometheus,
    start_exporter,
) -> None:
    name = f"rules-test-{uuid.uuid4().hex[:10]}"
    with closing(engine.client()) as client:
        container = client.containers.run(
            busybox,
            ["sleep", "600"],
            name=name,
            detach=True,
            network_mode="none",
            labels={"dockpulse.cpu_threshold": "75", "dockpulse.memory_forecast_horizon": "2h"},
        )
        try:
            relay = start_relay()
            alertmanager = start_alertmanager(relay.url)
            exporter = start_exporter()
            prometheus = start_prometheus(exporter.port, alertmanager.port, name)
            wait_until(lambda: query(prometheus.url, f'container_up{{name="{name}"}} == 1'))
            # The recording rules join the real exporter's series: usage and thresholds.
            recorded = {
                rule: wait_until(
                    lambda rule=rule: query(prometheus.url, f'{rule}{{name="{name}"}}')
                )
                for rule in RECORDED
            }

            container.kill()
            killed_at = time.monotonic()
            mail = wait_for_mail(relay.outbox, name)
            latency = time.monotonic() - killed_at
            alerts = query(prometheus.url, f'ALERTS{{alertname="ContainerDown",name="{name}"}}')
        finally:
            container.remove(force=True)

    value = {rule: float(found[0]["value"][1]) for rule, found in recorded.items()}
    assert value["dockpulse:container_cpu_threshold_percent"] == 75  # the label's override
    assert value["dockpulse:container_memory_threshold_percent"] == 50  # the default
    assert value["dockpulse:container_memory_forecast_horizon_seconds"] == 7200  # the label's
    assert 0 <= value["dockpulse:container_cpu_percent"] < 5  # sleep uses no CPU
    assert 0 <= value["dockpulse:container_memory_percent"] < 5  # nor much of the host memory
    assert "ContainerDown" in mail.text
    assert "critical" in mail.text.lower()
    assert alerts and alerts[0]["metric"]["severity"] == "critical"
    print(f"container killed -> mail in the outbox: {latency:.1f} s (1 s scrape and evaluation)")
