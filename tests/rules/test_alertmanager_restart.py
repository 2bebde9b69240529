"""A new incident after Alertmanager and Prometheus restarted is mailed within a minute.

Alertmanager's notification log (in its storage) records which alerts' labels a receiver was
sent; when an alert of the same labels fires again and Alertmanager never heard it resolve, it
is held until the route's repeat_interval has passed since that send. Real Alertmanager on the
repository's alertmanager.yml (timings as shipped), the real relay.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from testkit.helpers import free_port, wait_until
from testkit.local_stack import TEST_RELAY_TIMINGS, LocalStack
from testkit.mail import outbox_messages

pytestmark = pytest.mark.slow

LABELS = {
    "alertname": "ContainerDown",
    "severity": "critical",
    "instance": "127.0.0.1:9487",
    "name": "web",
}


def fire(alertmanager_url: str) -> None:
    """The alert as Prometheus posts it, starting now (a new incident: a new start)."""
    alert = {"labels": LABELS, "startsAt": datetime.now(UTC).isoformat()}
    requests.post(f"{alertmanager_url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


def test_the_same_alert_after_a_restart_is_mailed_again(tmp_path: Path) -> None:
    with LocalStack(tmp_path) as stack:
        relay = stack.relay(**TEST_RELAY_TIMINGS)
        port = free_port()
        alertmanager = stack.alertmanager(relay.url, port=port)
        fire(alertmanager.url)
        wait_until(lambda: len(outbox_messages(relay.outbox)) == 1, timeout=30)
        sent = time.monotonic()
        # Both stop before the alert resolves; the container recovers and fails again while
        # they are down. Alertmanager comes back on its storage (the notification log).
        alertmanager.stop()
        stack.services.remove(alertmanager)
        alertmanager = stack.alertmanager(relay.url, port=port)
        fire(alertmanager.url)
        # repeat_interval (1m) after the first send, at the next group flush (15 s) at most.
        wait_until(lambda: len(outbox_messages(relay.outbox)) == 2, timeout=100)
        print(f"mailed again {time.monotonic() - sent:.0f} s after the first mail")
