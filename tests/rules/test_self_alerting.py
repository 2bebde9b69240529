"""The alert path watching itself, on the real binaries: the dead man's switch (Prometheus'
Watchdog -> Alertmanager -> the relay's /heartbeat; Prometheus killed -> "monitoring is blind"),
and alerts about the relay going out by Alertmanager's own e-mail, not through the relay.

Timings are shortened in the test copies: Prometheus evaluates every second and re-sends its
alerts every second, Alertmanager repeats the heartbeat every second, HEARTBEAT_TIMEOUT is 5 s.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator

import pytest
import requests
from aiosmtpd.controller import Controller

from testkit.helpers import free_port, scrape, value, wait_until
from testkit.local_stack import PROMETHEUS_DIR, TEST_RELAY_TIMINGS, LocalStack
from testkit.mail import parse, read_outbox

HEARTBEAT_TIMEOUT = 5.0
FAST_ALERTMANAGER = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1s"}


class Inbox:
    """A plain SMTP server on loopback standing in for the mail provider."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        self.messages.append(parse(envelope.content))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def self_monitoring_prometheus(alertmanager_port: int, relay_port: int) -> dict:
    """Only the alert path's own rules and targets, evaluated every second."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "rules" / "alerting.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": "relay", "static_configs": [{"targets": [f"127.0.0.1:{relay_port}"]}]},
        ],
    }


def start_prometheus(stack: LocalStack, alertmanager_port: int, relay_port: int, name: str):
    return stack.prometheus(
        self_monitoring_prometheus(alertmanager_port, relay_port),
        name=name,
        flags=("--rules.alert.resend-delay=1s",),
    )


def heartbeat_mails(outbox) -> list[str]:
    return [mail.subject for mail in read_outbox(outbox) if "Monitoring is" in mail.subject]


def test_prometheus_killed_is_mailed_as_monitoring_blind_and_back(local_stack) -> None:
    relay = local_stack.relay(**TEST_RELAY_TIMINGS, HEARTBEAT_TIMEOUT=f"{HEARTBEAT_TIMEOUT}s")
    alertmanager = local_stack.alertmanager(relay.url, **FAST_ALERTMANAGER)
    prometheus = start_prometheus(local_stack, alertmanager.port, relay.port, "prometheus")
    wait_until(  # the heartbeat arrives: the switch is armed
        lambda: (
            value(scrape(f"{relay.url}/metrics"), "dockpulse_relay_heartbeat_age_seconds")
            is not None
        ),
        timeout=30,
    )
    time.sleep(HEARTBEAT_TIMEOUT + 2)  # a healthy path says nothing
    assert heartbeat_mails(relay.outbox) == []
    assert read_outbox(relay.outbox) == [], "the Watchdog itself is never mailed"

    prometheus.process.kill()  # kill -9
    killed = time.monotonic()
    blind = wait_until(lambda: heartbeat_mails(relay.outbox), timeout=60, interval=0.1)
    print(f"Prometheus killed -> 'monitoring is blind' in {time.monotonic() - killed:.1f}s")
    assert blind[0].startswith("[CRITICAL] Monitoring is blind")

    start_prometheus(local_stack, alertmanager.port, relay.port, "prometheus-again")
    back = wait_until(lambda: len(heartbeat_mails(relay.outbox)) == 2, timeout=60)
    assert back and heartbeat_mails(relay.outbox)[1].startswith("[RESOLVED] Monitoring is back")


def test_relay_alerts_go_by_alertmanager_email_not_through_the_relay(local_stack, inbox) -> None:
    handler, smtp_port = inbox
    relay = local_stack.relay(**TEST_RELAY_TIMINGS)
    alertmanager = local_stack.alertmanager(relay.url, smtp_port=smtp_port, **FAST_ALERTMANAGER)
    relay.stop()  # the relay is down: only the direct path can tell
    alert = {
        "labels": {
            "alertname": "RelayDown",
            "severity": "critical",
            "job": "relay",
            "instance": "127.0.0.1:9095",
        },
        "annotations": {"summary": "dockpulse-relay 127.0.0.1:9095 is down"},
    }
    reply = requests.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=5)
    assert reply.status_code == 200
    message = wait_until(lambda: handler.messages, timeout=30)[0]
    assert "RelayDown" in str(message["Subject"])
    assert message["To"] == "ops@localhost"
    assert read_outbox(relay.outbox) == []
