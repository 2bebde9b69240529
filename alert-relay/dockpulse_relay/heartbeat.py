"""The dead man's switch: Prometheus' always-firing `Watchdog`, routed by Alertmanager to
`POST /heartbeat`, proves the whole alert path works. When it stops, the relay itself mails
"monitoring is blind", again every BLIND_REPEAT while it lasts (a blind alert path cannot stay
quiet for good), and "monitoring is back" when it returns.

Two clocks tell a heartbeat is stale: when the relay last received one (Alertmanager dead or
cut off), and the Prometheus evaluation time the Watchdog carries in its `evaluated_at`
annotation (Prometheus dead: Alertmanager keeps repeating the alert it knows for up to
4 x resend delay, so arrivals alone would hide it). Watching starts with the first heartbeat.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from dockpulse_relay.alerts import Alert
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.message import build_message
from dockpulse_relay.store import Heartbeat, NewMail

EVALUATED_AT = "evaluated_at"


def evaluated_at(alerts: list[Alert]) -> float | None:
    """The newest Prometheus evaluation time among the firing Watchdogs, when they carry one."""
    times = []
    for alert in alerts:
        try:
            times.append(float(alert.annotations.get(EVALUATED_AT, "")))
        except ValueError:
            continue
    finite = [t for t in times if t == t and abs(t) != float("inf")]
    return max(finite) if finite else None


def last_sign_of_life(heartbeat: Heartbeat) -> float:
    """The older of the two clocks: both Alertmanager and Prometheus must be alive."""
    if heartbeat.evaluated_at is None:
        return heartbeat.received_at
    return min(heartbeat.received_at, heartbeat.evaluated_at)


def is_stale(heartbeat: Heartbeat, now: float, started_at: float, timeout: float) -> bool:
    """Blind after `timeout` without a sign of life; a relay restart gives the heartbeat a new
    `timeout` to arrive (no outage of its own), but "back" needs a fresh heartbeat."""
    last = last_sign_of_life(heartbeat)
    if not heartbeat.blind:
        last = max(last, started_at)
    return now - last > timeout


def clock_text(moment: float) -> str:
    """A moment as the mails write it: 2026-01-31 12:00:00 UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def heartbeat_mail(heartbeat: Heartbeat, blind: bool, now: float, config: RelayConfig) -> NewMail:
    """The mail saying monitoring went blind (`blind`) or is back."""
    since = last_sign_of_life(heartbeat)
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
