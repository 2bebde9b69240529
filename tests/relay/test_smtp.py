"""Delivery through SMTP against a real aiosmtpd server: STARTTLS, login, 4xx retried, 5xx dead."""

from __future__ import annotations

from testkit.helpers import value, wait_until
from testkit.smtp import smtp_env
from tests.relay.payloads import alert, notification


def test_mail_goes_over_starttls_with_login(start_relay, smtp, certificate) -> None:
    mailbox, controller = smtp()
    relay = start_relay(**smtp_env(controller, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    sender, recipients, message = wait_until(lambda: mailbox.received)[0]
    assert sender == "alerts@dockpulse.example"
    assert recipients == ["ops@dockpulse.example"]
    assert message["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    assert message.get_content_type() == "multipart/alternative"
    # Counted once the server has answered, a moment after the mailbox has the message.
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mails_sent_total", backend="smtp") == 1
    )


def test_4xx_is_retried_and_5xx_dead_lettered(start_relay, smtp, certificate) -> None:
    busy_box, busy = smtp(["451 4.3.0 mailbox busy, try later"])
    relay = start_relay(**smtp_env(busy, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    wait_until(lambda: busy_box.received, timeout=15)
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mail_failures_total", backend="smtp") == 1
    )

    refusing_box, refusing = smtp(["554 5.7.1 message refused"] * 5)
    relay = start_relay(**smtp_env(refusing, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mails_dead_lettered_total", backend="smtp")
    )
    assert refusing_box.received == []
    assert len(refusing_box.replies) == 4  # tried once, not again
