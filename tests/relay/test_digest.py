"""Buffering, digest, critical bypass, cooldown and resolved mails, with short test settings.

BUFFER_TIMEOUT=1 s, CHECK_INTERVAL=0.2 s: the assertions are about order and grouping (what
goes out together, what waits), with the timings loose enough for a busy CI machine.
"""

from __future__ import annotations

import time

from testkit.helpers import value, wait_for_samples, wait_until
from testkit.mail import text_of
from tests.relay.payloads import alert, notification


def test_critical_goes_at_once_and_warnings_wait_for_one_digest(start_relay) -> None:
    relay = start_relay(BUFFER_TIMEOUT="1.5s")
    first_warning = time.monotonic()
    relay.post(notification(alert("HighCpu", "db", "warning", value="93%")))
    relay.post(notification(alert("HighMemory", "cache", "warning")))
    relay.post(notification(alert("HighCpu", "worker", "warning")))
    relay.post(notification(alert("ContainerDown", "webapp", "critical")))

    mails = wait_until(relay.mails, interval=0.05)
    assert time.monotonic() - first_warning < 1.5, "the warnings' buffer is still open"
    assert [mail["Subject"] for mail in mails] == ["[CRITICAL] 1 alert: ContainerDown (webapp)"]

    mails = wait_until(lambda: len(relay.mails()) == 2 and relay.mails(), interval=0.05)
    assert time.monotonic() - first_warning >= 1.5
    digest = mails[1]
    assert digest["Subject"] == "[WARNING] 3 alerts: HighCpu (db, worker), HighMemory (cache)"
    assert digest["X-Dockpulse-Kind"] == "digest"
    assert text_of(digest).count("Alert:") == 3
    assert "93%" in text_of(digest)
    # Counted right after the .eml is written.
    samples = wait_for_samples(
        relay.metrics, lambda s: value(s, "dockpulse_relay_mails_sent_total", kind="digest") == 1
    )
    assert value(samples, "dockpulse_relay_delivery_latency_seconds_count", kind="digest") == 1


def test_resolved_notifications_are_mailed_unless_switched_off(start_relay) -> None:
    relay = start_relay()
    relay.post(notification(alert(status="resolved")))
    mail = wait_until(relay.mails)[0]
    assert mail["Subject"] == "[RESOLVED] [CRITICAL] 1 alert: ContainerDown (webapp)"
    assert "2024-05-01T11:00:00" in text_of(mail)  # when it ended

    quiet = start_relay(SEND_RESOLVED="false")
    quiet.post(notification(alert(status="resolved")))
    quiet.post(notification(alert(status="resolved", severity="warning", container="db")))
    wait_until(
        lambda: (
            value(
                quiet.metrics(),
                "dockpulse_relay_alerts_suppressed_total",
                reason="resolved_disabled",
            )
            == 2
        ),
        timeout=10,
    )
    assert quiet.mails() == []
