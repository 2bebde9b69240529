"""The relay's mails about the monitoring itself (the heartbeat's "monitoring is blind" and
"is back", the silences' warnings): no alert behind them."""

from __future__ import annotations

import html

from dockpulse_relay.compose.message import build_message
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.model import NewMail
from dockpulse_relay.times import clock_text, duration_text


def heartbeat_mail(since: float, blind: bool, now: float, config: RelayConfig) -> NewMail:
    """The mail saying monitoring went blind (`blind`: no sign of life `since`) or is back."""
    if blind:
        title = (
            "[CRITICAL] Monitoring is blind: no heartbeat from Prometheus/Alertmanager for "
            f"{duration_text(now - since)}"
        )
        text = (
            f"The relay has had no Watchdog heartbeat since {clock_text(since)} (HEARTBEAT_TIMEOUT "
            f"{duration_text(config.heartbeat_timeout)}).\n\nUntil it returns, no alert can reach "
            "you. Check that Prometheus and Alertmanager run, that Prometheus can reach "
            "Alertmanager, and that Alertmanager can reach the relay (route relay-heartbeat).\n"
            f"This mail is repeated every {duration_text(config.blind_repeat)} (BLIND_REPEAT) "
            "until the heartbeat is back; then you get one saying so.\n"
        )
    else:
        title = "[RESOLVED] Monitoring is back: the Watchdog heartbeat arrives again"
        text = f"Heartbeat received again at {clock_text(now)}; alerts reach you again.\n"
    return notice_mail(
        "heartbeat", title, f"{title}\n\n{text}\n-- dockpulse-relay\n", config, now, 0
    )


def notice_mail(
    kind: str, title: str, text: str, config: RelayConfig, now: float, priority: int
) -> NewMail:
    """A mail about the monitoring itself (heartbeat, silences): `text` as the plain part and,
    preformatted and escaped, as the HTML one; no alert behind it."""
    body = f"<html><body><pre>{html.escape(text)}</pre></body></html>\n"
    token, message = build_message(title, kind, text, body, config.sender, config.recipients, now)
    return NewMail(
        message_id=token,
        kind=kind,
        subject=title,
        message=message,
        alert_ids=[],
        first_received_at=now,
        cooldown=[],
        priority=priority,
    )
